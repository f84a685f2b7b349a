"""HTTP(S) fetches that a request cannot turn against this machine or its network (SSRF).

Every hop is checked the same way: the scheme must be http or https; the host name is
resolved once and each address checked; the connection goes to the checked address (the
name is kept for the Host header, SNI and the certificate check), so a DNS answer that
changes between the check and the connect (rebinding) cannot move it; redirects are
followed by hand, each a new hop. Loopback and private networks are refused unless the
policy allows them (``--allow-private-urls``); link-local addresses (cloud metadata
services live there), multicast, unspecified and reserved ones are refused always.

Errors name the URL's host and the reason, never what the server sent.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Callable

from localai.errors import GalleryError

MAX_REDIRECTS = 5
# Metadata services that sit in ranges a private-network allowance would otherwise admit.
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200"))

Resolver = Callable[[str, int], list[str]]


class UrlRefused(GalleryError):
    """A URL this server will not fetch (scheme, or where its host resolves)."""


@dataclass(frozen=True)
class UrlPolicy:
    """What a fetch may reach. ``allow_private``: loopback and private networks;
    ``allow_files``: local paths and ``file://`` (installs the operator asked for)."""

    allow_private: bool = False
    allow_files: bool = False
    timeout: float = 60.0


def address_refusal(address: str, policy: UrlPolicy) -> str | None:
    """Why ``address`` may not be connected to under ``policy``, or None if it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or (ip.sixtofour if ip.sixtofour else None) or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:  # an IPv4 address in IPv6 clothing is judged as itself
            return address_refusal(str(embedded), policy)
    if ip in METADATA_ADDRESSES or ip.is_link_local:
        return "a link-local or metadata address"
    private = "a loopback or private address (--allow-private-urls allows it)"
    if ip.is_multicast or ip.is_unspecified:
        return "not a unicast address"
    if ip.is_loopback:  # before the reserved check: ::1 sits in IPv6's reserved ::/8
        return None if policy.allow_private else private
    if ip.is_reserved:
        return "not a unicast address"
    if ip.is_global:
        return None
    if ip.is_private or ip in ipaddress.ip_network("100.64.0.0/10"):
        return None if policy.allow_private else private
    return "not a public address"


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise GalleryError(f"cannot resolve {host}: {exc}") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


def pinned_address(host: str, port: int, policy: UrlPolicy, resolver: Resolver = system_resolver) -> str:
    """The address to connect to for ``host``: the first answer the policy allows."""
    refusals = []
    for address in resolver(host, port):
        reason = address_refusal(address, policy)
        if reason is None:
            return address
        refusals.append(f"{address} is {reason}")
    raise UrlRefused(f"refusing to fetch from {host}: " + ("; ".join(refusals) or "it has no address"))


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def check_url(url: str, policy: UrlPolicy) -> urllib.parse.SplitResult:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UrlRefused(f"refusing to fetch a {parts.scheme or 'relative'}: URL over HTTP")
    if not parts.hostname:
        raise UrlRefused("refusing a URL without a host")
    if parts.username or parts.password:
        raise UrlRefused("refusing a URL with credentials in it")
    return parts


def open_url(url: str, policy: UrlPolicy, headers: dict[str, str] | None = None,
             resolver: Resolver = system_resolver) -> tuple[http.client.HTTPResponse, str]:
    """GET ``url`` (following redirects, each hop checked); (the open response, its final URL).
    Statuses other than 2xx are a GalleryError naming the status only."""
    for _ in range(MAX_REDIRECTS + 1):
        parts = check_url(url, policy)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = pinned_address(parts.hostname, port, policy, resolver)
        cls = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
        conn = cls(parts.hostname, port, address, policy.timeout)
        target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        try:
            conn.request("GET", target, headers={"User-Agent": "localai-gallery", "Accept-Encoding": "identity",
                                                 **(headers or {})})
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise GalleryError(f"cannot fetch from {parts.hostname}: {exc.__class__.__name__}: {exc}") from None
        if response.status in (301, 302, 303, 307, 308):
            location = response.getheader("Location")
            conn.close()
            if not location:
                raise GalleryError(f"{parts.hostname} answered a redirect without a location")
            url = urllib.parse.urljoin(url, location)
            continue
        if not 200 <= response.status < 300:
            conn.close()
            raise GalleryError(f"{parts.hostname} answered HTTP {response.status} for {parts.path or '/'}")
        return response, url
    raise GalleryError(f"more than {MAX_REDIRECTS} redirects from {urllib.parse.urlsplit(url).hostname}")
