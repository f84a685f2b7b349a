"""A model host for the gallery tests: an HTTP server on 127.0.0.1 serving definitions and
files, with the behaviours a real host has (redirects, Range, broken and slow transfers)."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.support import get


@dataclass
class Resource:
    body: bytes = b""
    path: Path | None = None  # served from disk (large files)
    status: int = 200
    redirect: str | None = None
    break_after: int | None = None  # first GET: send this many bytes, then drop the connection
    delay: float = 0.0  # seconds between 64 KiB blocks
    ranges: bool = True  # honour Range requests

    def size(self) -> int:
        return self.path.stat().st_size if self.path else len(self.body)

    def read(self, start: int, end: int) -> bytes:
        if self.path is None:
            return self.body[start:end]
        with open(self.path, "rb") as fh:
            fh.seek(start)
            return fh.read(end - start)


@dataclass
class Seen:
    path: str
    headers: dict = field(default_factory=dict)


class ModelHost:
    """``host.add(path, ...)`` then ``host.url(path)``; ``host.seen`` lists the requests."""

    def __init__(self) -> None:
        self.resources: dict[str, Resource] = {}
        self.seen: list[Seen] = []
        self._broken: set[str] = set()
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - http.server's naming
                host.seen.append(Seen(self.path, dict(self.headers)))
                resource = host.resources.get(self.path.split("?")[0])
                if resource is None:
                    self._send(404, b"not here")
                    return
                if resource.redirect:
                    self.send_response(302)
                    self.send_header("Location", resource.redirect)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if resource.status != 200:
                    self._send(resource.status, resource.body)
                    return
                size = resource.size()
                start = 0
                match = re.match(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and resource.ranges:
                    start = int(match.group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(size - start))
                if resource.ranges:
                    self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                stop = size
                if resource.break_after is not None and self.path not in host._broken:
                    host._broken.add(self.path)
                    stop = min(size, start + resource.break_after)
                position = start
                try:
                    while position < stop:
                        block = resource.read(position, min(stop, position + 65536))
                        self.wfile.write(block)
                        position += len(block)
                        if resource.delay:
                            time.sleep(resource.delay)
                except (BrokenPipeError, ConnectionResetError):
                    return
                if stop < size:
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, route: str, body: bytes | str | dict | list | None = None, **options) -> str:
        if isinstance(body, (dict, list)):
            body = yaml.safe_dump(body)
        if isinstance(body, str):
            body = body.encode()
        self.resources[route] = Resource(body=body or b"", **options)
        return self.url(route)

    def url(self, route: str) -> str:
        return f"http://127.0.0.1:{self.port}{route}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def sha256(path_or_bytes: Path | bytes) -> str:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return hashlib.sha256(data).hexdigest()


def wait_job(server, job_id: str, timeout: float = 600) -> dict:
    """Poll a gallery job until it is processed; its last status."""
    deadline = time.monotonic() + timeout
    while True:
        status, _, raw = get(server, f"/models/jobs/{job_id}", getattr(server, "auth_headers", None))
        assert status == 200, raw
        job = json.loads(raw)
        if job["processed"] or time.monotonic() > deadline:
            return job
        time.sleep(0.05)
