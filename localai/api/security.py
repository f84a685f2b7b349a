"""Who may use the server, and from where: API keys, Host and Origin checks, CORS.

- API keys come from --api-keys / API_KEY and --api-keys-file (one per line, re-read on SIGHUP),
  presented as ``Authorization: Bearer KEY`` or ``x-api-key: KEY``. A presented key is hashed
  and compared with every configured key's hash with ``hmac.compare_digest``, without stopping
  at a match: the time taken says nothing about how much of a key was right, nor which.
- A web page the user happens to open must not drive the server: bodies must be JSON (a
  cross-site "simple" request cannot send application/json without a preflight), a Host that
  is not ours is refused (DNS rebinding), and a state-changing request from a foreign Origin
  is refused. CORS is off unless --cors / --cors-allow-origins say which origins may call.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from pathlib import Path
from urllib.parse import urlsplit

from werkzeug.wrappers import Request, Response

from localai.errors import ConfigError, Forbidden, Unauthorized
from localai.settings import Settings, is_loopback_host

log = logging.getLogger("localai")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CORS_METHODS = "GET, POST, DELETE, OPTIONS"
CORS_HEADERS = ("authorization", "content-type", "x-api-key", "openai-beta", "anthropic-version",
                "x-stainless-arch", "x-stainless-lang", "x-stainless-os", "x-stainless-package-version",
                "x-stainless-retry-count", "x-stainless-runtime", "x-stainless-runtime-version",
                "x-stainless-timeout", "x-stainless-async", "x-stainless-helper-method")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", errors="surrogatepass")).digest()


class KeyRing:
    """The accepted API keys (stored as digests)."""

    def __init__(self, keys: list[str], path: Path | None = None) -> None:
        self._inline = list(keys)
        self._path = path
        self._lock = threading.Lock()
        self._digests: tuple[bytes, ...] = ()
        self.reload()

    def reload(self) -> None:
        """Read the keys again (the file may have changed: SIGHUP)."""
        keys = list(self._inline)
        if self._path is not None:
            try:
                lines = self._path.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ConfigError(f"cannot read the API keys file {self._path}: {exc.strerror or exc}") from None
            keys += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        with self._lock:
            self._digests = tuple(_digest(k) for k in keys)
        log.info("API keys: %d accepted", len(self._digests))

    @property
    def configured(self) -> bool:
        return bool(self._digests) or self._path is not None

    def scope(self, presented: str | None) -> str | None:
        """The key's scope (a digest prefix, for per-key state) if it is one of ours, else None."""
        if presented is None:
            return None
        digest = _digest(presented)
        found = None
        for known in self._digests:  # every key compared, whatever matched: constant in the keys
            if hmac.compare_digest(digest, known):
                found = known
        return None if found is None else found.hex()[:16]


def presented_key(request: Request) -> str | None:
    """The key a request carries: ``Authorization: Bearer KEY`` (OpenAI) or ``x-api-key: KEY`` (Anthropic)."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.headers.get("x-api-key", "").strip() or None


class Guard:
    """The checks every request passes before its route runs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = KeyRing(settings.api_keys, settings.api_keys_file)
        self.allowed_hosts = {h.lower() for h in settings.allowed_hosts}
        self.cors_origins = [o.rstrip("/") for o in settings.cors_allow_origins]

    # ---- keys ----
    def authenticate(self, request: Request) -> str | None:
        """The caller's key scope; raises Unauthorized when keys are configured and none matches."""
        if not self.keys.configured:
            return None
        scope = self.keys.scope(presented_key(request))
        if scope is None:
            raise Unauthorized("Incorrect API key provided. Send it as `Authorization: Bearer KEY` or `x-api-key`.")
        return scope

    # ---- where a request comes from ----
    def host_allowed(self, host_header: str | None) -> bool:
        """A Host we serve: one of --allowed-hosts; without that list, a loopback name when we
        listen on loopback (a rebinding page arrives with its own name), anything otherwise."""
        if not host_header:
            return True  # HTTP/1.0 clients; browsers always send one
        host = urlsplit(f"//{host_header}").hostname or ""
        if self.allowed_hosts:
            return host in self.allowed_hosts or host_header.lower() in self.allowed_hosts
        return is_loopback_host(host) if self.settings.is_loopback else True

    def origin_allowed(self, origin: str, host_header: str | None) -> bool:
        """Our own pages (same origin) and the CORS origins; "null" (sandboxed frames, files) never."""
        if origin == "null":
            return False
        if self.cors_origins and ("*" in self.cors_origins or origin.rstrip("/") in self.cors_origins):
            return True
        return bool(host_header) and urlsplit(origin).netloc.lower() == host_header.lower()

    def check_source(self, request: Request) -> None:
        if not self.host_allowed(request.headers.get("Host")):
            raise Forbidden(f"Requests for the host {request.headers.get('Host')!r} are not served here "
                            "(--allowed-hosts).", code="host_not_allowed")
        origin = request.headers.get("Origin")
        if origin is not None and request.method not in SAFE_METHODS \
                and not self.origin_allowed(origin, request.headers.get("Host")):
            raise Forbidden(f"Requests from the origin {origin!r} are not allowed (--cors-allow-origins).",
                            code="origin_not_allowed")

    # ---- CORS ----
    def cors_origin(self, request: Request) -> str | None:
        """The Access-Control-Allow-Origin value for a request, if CORS allows its origin."""
        origin = request.headers.get("Origin")
        if not origin or not self.cors_origins or origin == "null":
            return None
        if "*" in self.cors_origins:
            return "*"  # never with credentials: we send no Access-Control-Allow-Credentials
        return origin if origin.rstrip("/") in self.cors_origins else None

    def preflight(self, request: Request) -> Response:
        """The answer to a browser's CORS preflight (no key needed: browsers send none with it)."""
        allow = self.cors_origin(request)
        if allow is None:
            raise Forbidden("CORS requests from this origin are not allowed (--cors / --cors-allow-origins).",
                            code="origin_not_allowed")
        asked = [h.strip().lower() for h in request.headers.get("Access-Control-Request-Headers", "").split(",")
                 if h.strip()]
        headers = sorted(set(CORS_HEADERS) | {h for h in asked if h.startswith("x-stainless-")})
        response = Response(status=204)
        response.headers.update({
            "Access-Control-Allow-Origin": allow,
            "Access-Control-Allow-Methods": CORS_METHODS,
            "Access-Control-Allow-Headers": ", ".join(headers),
            "Access-Control-Max-Age": "600",
        })
        if allow != "*":
            response.headers["Vary"] = "Origin"
        return response

    def add_cors_headers(self, request: Request, response: Response) -> None:
        allow = self.cors_origin(request)
        if allow is not None:
            response.headers["Access-Control-Allow-Origin"] = allow
            response.headers["Access-Control-Expose-Headers"] = "Retry-After"
            if allow != "*":
                response.headers.add("Vary", "Origin")
