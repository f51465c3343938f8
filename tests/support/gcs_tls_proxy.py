"""A loopback HTTP proxy that sends Google API traffic to a local storage emulator. Tests only.

TensorFlow's GCS filesystem has its endpoints compiled in (https://www.googleapis.com/...,
https://storage.googleapis.com/...), but its libcurl honours ``https_proxy``/``http_proxy`` and
``CURL_CA_BUNDLE``. This proxy:

- answers ``CONNECT <host>.googleapis.com:443``, terminates TLS with a throw-away certificate
  (made by the caller for those names; the client trusts it through CURL_CA_BUNDLE) and relays
  the plain HTTP inside to the emulator;
- relays absolute-URI plain-HTTP proxy requests (``PUT http://www.googleapis.com/upload/...``)
  to the emulator, rewritten to origin form. The emulator builds the resumable-upload
  ``Location`` from the Host header, so that URL is http, not https.

Any other host is refused with 403: nothing leaves the machine through it. Sockets use
TCP_NODELAY: small requests otherwise wait about 40 ms on delayed ACKs. The emulator closes
every connection after one response, so one request per plain-HTTP connection is all this
has to rewrite.

Run as a script: ``python gcs_tls_proxy.py --upstream 127.0.0.1:PORT --cert C --key K``. It
prints ``PORT <n>`` on stdout once it listens, and exits when killed or when its stdin reaches
end of file.
"""
import argparse
import os
import selectors
import socket
import socketserver
import ssl
import sys
import threading
from urllib.parse import urlsplit

HEAD_LIMIT = 64 * 1024
IO_TIMEOUT_S = 60  # a peer silent for this long ends its connection


def _served_host(host):
    host = host.lower()
    return host == "googleapis.com" or host.endswith(".googleapis.com")


class _ProxyHandler(socketserver.BaseRequestHandler):
    # set on the class by main()
    upstream = ("127.0.0.1", 0)
    tls_context = None

    def handle(self):
        client = self.request
        client.settimeout(IO_TIMEOUT_S)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            head = self._read_head(client)
            if head is None:
                return
            request_line, _, rest = head.partition(b"\r\n")  # rest: headers, then any body bytes
            try:
                method, target, version = request_line.decode("latin-1").split(" ")
            except ValueError:
                return self._refuse(client, "400 Bad Request", "malformed request line")
            if method == "CONNECT":
                self._tunnel(client, target, rest)
            else:
                self._forward(client, method, target, version, rest)
        except (OSError, ssl.SSLError) as exc:
            print(f"proxy: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    @staticmethod
    def _read_head(sock):
        data = b""
        while b"\r\n\r\n" not in data:
            if len(data) > HEAD_LIMIT:
                return None
            chunk = sock.recv(4096)
            if not chunk:
                return None
            data += chunk
        return data

    @staticmethod
    def _refuse(sock, status, reason):
        body = f"gcs test proxy: {reason}\n".encode()
        sock.sendall(
            f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            .encode() + body
        )

    def _tunnel(self, client, target, rest):
        host, _, port = target.rpartition(":")
        if not _served_host(host) or port != "443":
            return self._refuse(client, "403 Forbidden", f"will not connect to {target}")
        if (b"\r\n" + rest).split(b"\r\n\r\n", 1)[1]:  # TLS may only start after our 200
            return self._refuse(client, "400 Bad Request", "data before the tunnel opened")
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        with self.tls_context.wrap_socket(client, server_side=True) as tls, \
                _connect(self.upstream) as upstream:
            _relay(tls, upstream)

    def _forward(self, client, method, target, version, rest):
        url = urlsplit(target)
        if url.scheme != "http" or not _served_host(url.hostname or ""):
            return self._refuse(client, "403 Forbidden", f"will not forward {target}")
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        with _connect(self.upstream) as upstream:
            upstream.sendall(f"{method} {path} {version}\r\n".encode("latin-1") + rest)
            _relay(client, upstream)


def _connect(address):
    sock = socket.create_connection(address, timeout=IO_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _relay(a, b):
    """Copies bytes both ways until either side closes or stays silent too long.

    One thread serves both directions, so a TLS socket is never used by two threads at once.
    """
    peer = {a: b, b: a}
    with selectors.DefaultSelector() as selector:
        for sock in peer:
            selector.register(sock, selectors.EVENT_READ)
        while True:
            ready = [key.fileobj for key, _ in selector.select(IO_TIMEOUT_S)]
            # bytes already decrypted inside the TLS object do not make its socket readable
            ready += [s for s in peer if isinstance(s, ssl.SSLSocket) and s.pending() and s not in ready]
            if not ready:
                return
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                peer[sock].sendall(data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


def _exit_when_stdin_closes():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the storage emulator")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    context.set_alpn_protocols(["http/1.1"])  # the emulator speaks nothing else
    _ProxyHandler.upstream = (host, int(port))
    _ProxyHandler.tls_context = context
    server = _Server(("127.0.0.1", 0), _ProxyHandler)
    threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
