"""The web playground: ``GET /`` (the page), ``GET /static/<name>`` (its script, style sheet and
icon, packaged in ``localai.webui``) and ``GET /webui/models`` (each model with what it can do,
so the page can group them; /v1/models keeps OpenAI's shape).

The page and its files are public (they hold nothing secret; the API calls the page makes carry
the key the user typed). Every answer has a strict Content-Security-Policy: scripts, styles and
connections from this origin only, no inline script, no framing. The files are read once; the
page links each asset as ``/static/NAME?v=HASH``, and an asset asked for with its current hash is
cacheable for a year, anything else is revalidated (ETag, 304). ``--disable-webui`` turns the
three routes into the 404 of an unknown route.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from importlib import resources

from werkzeug.wrappers import Response

from localai.api.http import ApiRequest, Server, json_response
from localai.capabilities import Capability
from localai.errors import LocalAIError, NotFound

CSP = "; ".join((
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data: blob:",
    "media-src 'self' blob:", "connect-src 'self'", "object-src 'none'", "frame-ancestors 'none'",
    "base-uri 'none'", "form-action 'none'"))
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # fetch() still sends the page's Origin with its POSTs under this policy (Chromium checked),
    # so the Guard's same-origin check passes; no Referer goes anywhere, this server included.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate CSP 2
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
ASSETS = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8",
          "icon.svg": "image/svg+xml"}
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"  # may be stored, but asked about (If-None-Match) before each use


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str  # the first 16 hex digits of the body's sha256


def _static(body: bytes, content_type: str) -> StaticFile:
    return StaticFile(body, content_type, hashlib.sha256(body).hexdigest()[:16])


class _Files:
    """The packaged files, read on first use (they do not change while the server runs)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, StaticFile] | None = None

    def get(self) -> dict[str, StaticFile]:
        with self._lock:
            if self._files is None:
                folder = resources.files("localai.webui")
                files = {name: _static(folder.joinpath(name).read_bytes(), kind) for name, kind in ASSETS.items()}
                page = folder.joinpath("index.html").read_text(encoding="utf-8")
                for name, file in files.items():  # versioned links: a new build is never served stale
                    page = page.replace(f'"/static/{name}"', f'"/static/{name}?v={file.etag}"')
                files["index.html"] = _static(page.encode("utf-8"), "text/html; charset=utf-8")
                self._files = files
            return self._files


FILES = _Files()


def _check_enabled(app: Server, request: ApiRequest) -> None:
    if app.settings.disable_webui:
        raise NotFound(f"No route {request.path}.")


def _serve(request: ApiRequest, file: StaticFile, cache_control: str) -> Response:
    response = Response(file.body, status=200, content_type=file.content_type, headers=SECURITY_HEADERS)
    response.headers["Cache-Control"] = cache_control
    response.set_etag(file.etag)
    return response.make_conditional(request)  # 304 for a matching If-None-Match


def on_index(app: Server, request: ApiRequest) -> Response:
    _check_enabled(app, request)
    return _serve(request, FILES.get()["index.html"], REVALIDATE)


def on_static(app: Server, request: ApiRequest, name: str) -> Response:
    _check_enabled(app, request)
    if name not in ASSETS:  # only the packaged assets, by exact name: no paths, no directory listing
        raise NotFound(f"No file {name!r} in the playground's static files.")
    file = FILES.get()[name]
    return _serve(request, file, IMMUTABLE if request.args.get("v") == file.etag else REVALIDATE)


def on_models(app: Server, request: ApiRequest) -> Response:
    """Every configured model with its backend and what it can do (capability names, lower case)."""
    _check_enabled(app, request)
    data = []
    for name in app.manager.names():
        config = app.manager.configs[name]
        try:
            capabilities = app.manager.capabilities(config)
        except LocalAIError:  # an unknown backend: listed, able to do nothing
            capabilities = frozenset()
        data.append({"id": name, "backend": config.backend, "description": config.description,
                     "capabilities": [c.name.lower() for c in Capability if c in capabilities]})
    return json_response({"object": "list", "data": data})
