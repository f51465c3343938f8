"""gcp-storage-emulator, in memory, fixed for TensorFlow's built-in GCS client. Tests only.

Run as a script: ``python gcs_emulator_server.py [--http10]``. It binds a free loopback port,
prints ``PORT <n>`` on stdout once it accepts connections, logs requests to stderr, and serves
until it is killed or its stdin reaches end of file (so it dies with the test process that
started it, even when that one is killed with SIGKILL).

Fixes over the stock server (gcp-storage-emulator==2026.7.19, pinned in requirements-dev.txt):

1. A body sent with ``Transfer-Encoding: chunked`` is de-chunked even when the request also
   carries ``Content-Length``. TensorFlow's resumable-upload PUT sends both; the stock server
   trusts Content-Length and stores the chunk framing as object data. RFC 9112 section 6.3:
   Transfer-Encoding overrides Content-Length.
2. A media upload (``uploadType=media``) with an empty body stores an empty object. TensorFlow
   writes such objects as directory markers (``makedirs``, checkpoint and log dirs); the stock
   handler calls ``len(None)`` and drops the connection without a response.
3. ``Expect: 100-continue`` is answered at once. The stock handler speaks HTTP/1.0, which never
   sends ``100 Continue``, so libcurl (inside TensorFlow) waits one second before every upload
   body. ``--http10`` keeps the stock behaviour, for measuring the difference.
4. ``ifGenerationMatch`` is honoured as GCS does (``412`` when the live object's generation
   differs; ``0`` means "does not exist"). The stock server ignores it, so a run's claim on
   its output dirs (trainer/claim.py) could not be tested.

Every response carries ``Connection: close``: the server handles one connection at a time, so a
kept-alive idle connection would block every other client. Responses go out with TCP_NODELAY
(small uploads waited about 40 ms on delayed ACKs without it).
"""
import argparse
import http.server
import logging
import os
import sys
import threading
from functools import partial
from http import HTTPStatus

from gcp_storage_emulator import server as emulator_server
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.storage import Storage


def _read_body(handler):
    """The request body, de-chunked when chunked, whatever Content-Length says; None if none."""
    encoding = (handler.headers.get("Transfer-Encoding") or "").strip().lower()
    if encoding != "chunked":
        return _stock_read_body(handler)
    parts = []
    while True:
        size_line = handler.rfile.readline()
        if not size_line:
            raise ConnectionError("connection closed inside a chunked body")
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            break
        parts.append(handler.rfile.read(size))
        handler.rfile.readline()  # the CRLF after each chunk
    while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
        pass  # trailer fields, unused
    return b"".join(parts)


def _read_data(handler, query):
    data = _stock_read_data(handler, query)
    if data is None and query.get("uploadType") == ["media"]:
        return b""  # an empty object, not a missing body
    return data


def _object_name(request):
    if request.params.get("object_id"):
        return request.params["object_id"]
    if request.query.get("name"):
        return request.query["name"][0]
    return request.data["meta"].get("name")  # a multipart upload names the object in its metadata


def _honour_generation_match(handler):
    """One request at a time is served, so checking before the handler runs is atomic."""

    def checked(request, response, storage, *args, **kwargs):
        expected = request.query.get("ifGenerationMatch")
        if expected:
            try:
                current = storage.get_file_obj(request.params["bucket_name"], _object_name(request))["generation"]
            except NotFound:
                current = "0"
            if current != expected[0]:
                response.status = HTTPStatus.PRECONDITION_FAILED
                response.json({"error": {"code": 412, "message": "At least one of the pre-conditions you "
                                                                 "specified did not hold."}})
                return None
        return handler(request, response, storage, *args, **kwargs)

    return checked


# The names patched below are module globals that the emulator looks up at call time.
_stock_read_body = emulator_server._read_raw_data
_stock_read_data = emulator_server._read_data
emulator_server._read_raw_data = _read_body
emulator_server._read_data = _read_data
emulator_server.HANDLERS = tuple(
    (route, {method: _honour_generation_match(handler) for method, handler in handlers.items()})
    for route, handlers in emulator_server.HANDLERS)
emulator_server.objects.insert = _honour_generation_match(emulator_server.objects.insert)  # the router's fallback


class _Http10Handler(emulator_server.RequestHandler):
    """The stock protocol: no 100 Continue, one request per connection."""

    timeout = 60  # seconds; one silent client must not stall this one-at-a-time server for ever


class _Handler(_Http10Handler):
    protocol_version = "HTTP/1.1"  # lets http.server answer "Expect: 100-continue"
    disable_nagle_algorithm = True  # headers and body go out as separate writes

    def send_response(self, code, message=None):
        super().send_response(code, message)
        self.send_header("Connection", "close")  # also sets self.close_connection


def _exit_when_stdin_closes():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http10", action="store_true", help="do not answer 100-continue")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
    handler = _Http10Handler if args.http10 else _Handler
    httpd = http.server.HTTPServer(("127.0.0.1", 0), partial(handler, Storage(use_memory_fs=True)))
    threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
    print(f"PORT {httpd.server_address[1]}", flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
