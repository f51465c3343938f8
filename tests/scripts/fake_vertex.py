"""A fake of the two Google APIs the scripts reach through gcloud, on a loopback port.

The real gcloud, pointed here with CLOUDSDK_API_ENDPOINT_OVERRIDES_AIPLATFORM/_STORAGE and a
dummy access token, sends exactly the requests it would send to Vertex AI and Cloud Storage;
this server records them and answers as the services do, enough for gcloud to finish:
- POST .../customJobs and .../hyperparameterTuningJobs: the created resource's name;
- Cloud Storage: a bucket that exists, no existing object, and multipart uploads (with the
  checksums gcloud verifies after an upload).
"""
import base64
import hashlib
import http.server
import json
import re
import threading

import google_crc32c


class FakeGoogleApis:
    def __init__(self):
        self.requests = []  # {"method", "path", "json"} for API calls; {"upload", "data"} for uploads
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _body(self):
                return self.rfile.read(int(self.headers.get("content-length") or 0))

            def _send(self, status, document):
                out = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def do_GET(self):
                fake.requests.append({"method": "GET", "path": self.path})
                if re.match(r"/storage/v1/b/[^/]+/o\?", self.path):
                    self._send(200, {"kind": "storage#objects"})
                elif "/o/" in self.path:
                    self._send(404, {"error": {"code": 404, "message": "No such object"}})
                else:
                    self._send(200, {"kind": "storage#bucket", "name": self.path.split("/")[4].split("?")[0]})

            def do_POST(self):
                body = self._body()
                if self.path.startswith("/upload/storage/v1/"):
                    self._upload(body)
                    return
                document = json.loads(body or b"{}")
                fake.requests.append({"method": "POST", "path": self.path, "json": document})
                collection = self.path.split("?")[0].rsplit("/", 1)[1]
                parent = self.path.split("?")[0].rsplit("/", 1)[0].lstrip("/").split("/", 1)[1]
                self._send(200, {**document, "name": f"{parent}/{collection}/1234", "state": "JOB_STATE_PENDING"})

            def _upload(self, body):
                boundary = re.search(r"boundary=['\"]?([^'\";]+)", self.headers["content-type"]).group(1)
                parts = [p for p in body.split(b"--" + boundary.encode()) if p.strip() not in (b"", b"--")]
                meta = json.loads(parts[0].split(b"\n\n", 1)[1].replace(b"\r", b""))
                data = parts[1].split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in parts[1] else parts[1].split(b"\n\n", 1)[1]
                data = data[:-2] if data.endswith(b"\r\n") else data[:-1] if data.endswith(b"\n") else data
                bucket = self.path.split("/")[5]
                fake.requests.append({"method": "POST", "path": self.path, "upload": f"gs://{bucket}/{meta['name']}",
                                      "data": data})
                self._send(200, {
                    "kind": "storage#object", "bucket": bucket, "name": meta["name"], "size": str(len(data)),
                    "generation": "1",
                    "md5Hash": base64.b64encode(hashlib.md5(data).digest()).decode(),
                    "crc32c": base64.b64encode(google_crc32c.Checksum(data).digest()).decode(),
                })

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def created(self, collection):
        return [r["json"] for r in self.requests if r["method"] == "POST" and "json" in r
                and r["path"].split("?")[0].endswith("/" + collection)]

    def uploads(self):
        return {r["upload"]: r["data"] for r in self.requests if "upload" in r}
