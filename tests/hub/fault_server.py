#!/usr/bin/env python3
"""A small Hub look-alike that misbehaves on request, for smelt's hub tests.

  fault_server.py PORTFILE LOGFILE

Binds 127.0.0.1 on a free port (written to PORTFILE once listening) and
serves one repository, fault/model (config.json and a 4 MiB LFS file
model.safetensors, whose resolve URL redirects to /blob/<sha256> on the same
server), plus fault/renamed, whose resolve URLs answer a relative redirect to
fault/model (a renamed repo), and fault/evil, whose file list names a path
outside the repo. GET /_ctl?mode=M[&k=BYTES][&n=COUNT] switches
the behaviour for later requests:

  normal   serve correctly, honouring Range
  cut      the next blob GET sends k bytes of its answer and drops the
           connection; later requests are normal
  cutfail  like cut, and every later blob GET answers 500 (Retry-After: 0)
           until the mode changes
  busy     the next n requests answer 503 with Retry-After: 1
  norange  blob GETs ignore Range and answer 200 with the whole file
  badsum   blob GETs send wrong bytes of the right length
  slow     blob GETs trickle (32 KiB every 50 ms)

Every request is logged to LOGFILE as one line:
  METHOD PATH RANGE STATUS BODY_BYTES_SENT
"""
import hashlib
import http.server
import json
import random
import socket
import sys
import threading
import time
import urllib.parse

REPO = "fault/model"
COMMIT = hashlib.sha1(b"fault/model@main").hexdigest()
CONFIG = b'{"model_type": "fault", "num_hidden_layers": 1}'
CONFIG_SHA1 = hashlib.sha1(b"blob %d\0" % len(CONFIG) + CONFIG).hexdigest()
BLOB = random.Random(42).randbytes(4 << 20)
BLOB_SHA = hashlib.sha256(BLOB).hexdigest()

state = {"mode": "normal", "k": 0, "n": 0}
lock = threading.Lock()
log_lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet stderr
        pass

    def record(self, status, sent):
        rng = self.headers.get("Range") or "-"
        with log_lock, open(self.server.logfile, "a") as f:
            f.write(f"{self.command} {self.path} {rng} {status} {sent}\n")

    def reply(self, status, body=b"", headers=None, head=False):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)
        self.record(status, 0 if head else len(body))

    def do_HEAD(self):
        self.route(head=True)

    def do_GET(self):
        self.route(head=False)

    def route(self, head):
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        if path == "/_ctl":
            q = urllib.parse.parse_qs(url.query)
            with lock:
                state["mode"] = q.get("mode", ["normal"])[0]
                state["k"] = int(q.get("k", ["0"])[0])
                state["n"] = int(q.get("n", ["0"])[0])
            return self.reply(200, b"ok")
        with lock:
            if state["mode"] == "busy" and state["n"] > 0:
                state["n"] -= 1
                return self.reply(503, b"busy", {"Retry-After": "1"}, head)
        base = f"http://127.0.0.1:{self.server.server_port}"
        if path == "/api/models/fault/renamed/revision/main":
            return self.reply(307, b"", {"Location": f"/api/models/{REPO}/revision/main?{url.query}"},
                              head)
        if path == "/api/models/fault/evil/revision/main":
            info = {"id": "fault/evil", "sha": COMMIT, "siblings": [
                {"rfilename": "config.json"}, {"rfilename": "../../../escaped.safetensors"}]}
            return self.reply(200, json.dumps(info).encode(),
                              {"Content-Type": "application/json"}, head)
        if path == f"/api/models/{REPO}/revision/main":
            info = {"id": REPO, "sha": COMMIT, "siblings": [
                {"rfilename": "config.json", "size": len(CONFIG), "blobId": CONFIG_SHA1},
                {"rfilename": "model.safetensors", "size": len(BLOB), "blobId": "0" * 40,
                 "lfs": {"sha256": BLOB_SHA, "size": len(BLOB), "pointerSize": 134}}]}
            return self.reply(200, json.dumps(info).encode(),
                              {"Content-Type": "application/json"}, head)
        if path.startswith("/fault/renamed/resolve/"):
            return self.reply(307, b"", {"Location": path.replace("/fault/renamed/", "/fault/model/"),
                                         "X-Repo-Commit": COMMIT}, head)
        if path == f"/{REPO}/resolve/{COMMIT}/config.json":
            return self.reply(200, CONFIG, {"X-Repo-Commit": COMMIT, "ETag": f'"{CONFIG_SHA1}"'},
                              head)
        if path == f"/{REPO}/resolve/{COMMIT}/model.safetensors":
            return self.reply(302, b"", {"Location": f"{base}/blob/{BLOB_SHA}",
                                         "X-Repo-Commit": COMMIT,
                                         "X-Linked-Etag": f'"{BLOB_SHA}"',
                                         "X-Linked-Size": len(BLOB)}, head)
        if path == f"/blob/{BLOB_SHA}":
            return self.blob(head)
        if path.startswith("/api/models/"):
            return self.reply(401, b"", {"X-Error-Code": "RepoNotFound"}, head)
        return self.reply(404, b"", {}, head)

    def blob(self, head):
        with lock:
            mode, k = state["mode"], state["k"]
            if mode == "cut":
                state["mode"] = "normal"
            elif mode == "cutfail":
                state["mode"] = "fail"
        if mode == "fail":
            return self.reply(500, b"", {"Retry-After": "0"}, head)
        data = BLOB
        if mode == "badsum":
            data = bytes(b ^ 0x5A for b in BLOB)
        start, end, status = 0, len(data), 200
        rng = self.headers.get("Range")
        if rng and mode != "norange":
            a, _, b = rng.removeprefix("bytes=").partition("-")
            start, end = int(a), (int(b) + 1 if b else len(data))
            status = 206
        body = data[start:end]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        self.end_headers()
        if head:
            return self.record(status, 0)
        if mode in ("cut", "cutfail"):
            self.wfile.write(body[:k])
            self.wfile.flush()
            self.record(status, min(k, len(body)))
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if mode == "slow":
            sent = 0
            try:
                for off in range(0, len(body), 32768):
                    self.wfile.write(body[off:off + 32768])
                    self.wfile.flush()
                    sent += len(body[off:off + 32768])
                    time.sleep(0.05)
            except OSError:
                self.close_connection = True
            return self.record(status, sent)
        try:
            self.wfile.write(body)
            self.record(status, len(body))
        except OSError:
            # The client hung up (e.g. it refused a 200 to its Range).
            self.record(status, "aborted")
            self.close_connection = True


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    portfile, logfile = sys.argv[1], sys.argv[2]
    srv = Server(("127.0.0.1", 0), Handler)
    srv.logfile = logfile
    open(logfile, "w").close()
    with open(portfile + ".tmp", "w") as f:
        f.write(str(srv.server_port))
    import os
    os.rename(portfile + ".tmp", portfile)
    srv.serve_forever()


if __name__ == "__main__":
    main()
