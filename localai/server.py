"""Serving the app with Waitress: connection limits, and a clean stop on SIGTERM.

- Bodies larger than the largest route limit are refused by Waitress before they are
  buffered (the routes' own limits are tighter: --json-limit, --upload-limit).
- An idle connection, and one that sends a request too slowly (a slow-loris), is closed after
  --idle-timeout seconds; up to --max-connections may be open, so idle sockets cannot lock
  new clients out.
- Waitress is told to keep reading a connection while its request runs, so a client that
  disconnects is noticed and its work cancelled.
- SIGTERM (and SIGINT): stop accepting connections, give the requests in flight up to
  --shutdown-grace seconds, cancel what is left, send the last bytes, exit 0.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import types
from typing import Callable

import waitress.server
from waitress import wasyncore

from localai.api.app import App
from localai.settings import Settings

log = logging.getLogger("localai")


def create_server(app: App, settings: Settings):
    host, port = settings.host_port
    server = waitress.server.create_server(
        app, host=host, port=port, threads=settings.server_threads, ident="localai",
        channel_timeout=settings.idle_timeout, cleanup_interval=max(1, min(10, int(settings.idle_timeout))),
        connection_limit=settings.max_connections,
        max_request_body_size=max(settings.upload_limit_bytes, settings.json_limit_bytes),
        channel_request_lookahead=1, clear_untrusted_proxy_headers=True)
    _close_slow_requests(server, settings.idle_timeout)
    return server


def _close_slow_requests(server, timeout: float) -> None:
    """Also close connections whose request has been arriving for longer than ``timeout``
    (Waitress's own timeout only covers connections with no traffic at all)."""
    maintenance = server.maintenance
    first_seen: dict[int, tuple[object, float]] = {}

    def check(self, now: float) -> None:
        maintenance(now)
        live = set()
        for fd, channel in list(self.active_channels.items()):
            live.add(fd)
            partial = getattr(channel, "request", None)
            if partial is None or getattr(partial, "completed", False):
                first_seen.pop(fd, None)
                continue
            seen = first_seen.get(fd)
            if seen is None or seen[0] is not partial:
                first_seen[fd] = (partial, now)
            elif now - seen[1] > timeout:
                log.warning("closing a connection whose request has been arriving for %.0f s", now - seen[1])
                channel.will_close = True
        for fd in set(first_seen) - live:
            del first_seen[fd]

    server.maintenance = types.MethodType(check, server)


def serve(app: App, settings: Settings, announce: Callable[[int], None],
          start_up: Callable[[], None] | None = None) -> int:
    """Run until SIGTERM/SIGINT, then stop gracefully; returns the exit status. ``start_up`` runs
    in the background once the server listens (/readyz answers 503 until it is done); SIGHUP
    re-reads the API keys file."""
    server = create_server(app, settings)
    announce(server.effective_port)
    stopping = threading.Event()
    if start_up is not None:
        app.ready = False
        threading.Thread(target=start_up, name="start-up", daemon=True).start()

    def stop_accepting() -> None:  # in Waitress's loop
        server.accepting = False
        wasyncore.dispatcher.close(server)  # the listening socket only; the connections go on

    def end_loop() -> None:  # in Waitress's loop: with nothing left in its map, the loop returns
        wasyncore.close_all(server._map)

    def wind_down() -> None:
        started = time.monotonic()
        if not app.wait_idle(settings.shutdown_grace):
            log.warning("shutting down: requests still running after %.0f s are cancelled", settings.shutdown_grace)
        app.close()  # what is left fails with "the server is shutting down"
        app.wait_idle(5)
        deadline = time.monotonic() + 2  # the last bytes of each response leave Waitress's buffers
        while time.monotonic() < deadline and any(getattr(c, "total_outbufs_len", 0)
                                                  for c in list(server.active_channels.values())):
            time.sleep(0.02)
        log.info("stopped in %.1f s", time.monotonic() - started)
        server.trigger.pull_trigger(end_loop)

    def on_signal(signum, frame) -> None:  # noqa: ARG001
        if stopping.is_set():
            return
        stopping.set()
        log.info("shutting down (signal %d): no new connections, %.0f s for the requests in flight",
                 signum, settings.shutdown_grace)
        server.trigger.pull_trigger(stop_accepting)
        threading.Thread(target=wind_down, name="shutdown", daemon=True).start()

    def on_hangup(signum, frame) -> None:  # noqa: ARG001
        try:
            app.guard.keys.reload()
        except Exception as exc:  # the old keys stay in force
            log.error("could not re-read the API keys: %s", exc)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
    try:
        server.run()
    finally:
        try:
            server.close()
        except OSError:
            pass
        app.close()
    return 0
