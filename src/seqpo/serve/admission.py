"""Which requests the server takes at all, decided before a route reads them (ASGI middleware).

`OriginCheck`: a web page of another site must not drive a server on this machine (a browser
sends any page's requests to 127.0.0.1 and opens WebSockets there without CORS). Requests that
can act (WebSocket handshakes, POST and other non-GET methods) are refused when they carry an
`Origin` that is neither the server's own (the host:port the request was sent to) nor allowed
by `--allow-origin`; requests without an Origin come from non-browser clients and are served.

`BodyLimit`: a request body is counted while it streams in and refused with 413 at the limit
(at once when its Content-Length says it is over), so an upload is never stored whole first.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _host_port(netloc: str, scheme: str) -> tuple[str, int] | None:
    """(host, port) of a Host header or an origin's netloc, the port defaulted by scheme."""
    try:
        parts = urlsplit(f"//{netloc}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower(), port if port is not None else DEFAULT_PORTS.get(scheme, 80)


def origin_allowed(origin: str | None, host: str | None, scheme: str, allowed: tuple[str, ...] = ()) -> bool:
    """No Origin (not a browser), the server's own origin (same host and port as the Host header
    the request was sent to), or one of `allowed` ('*' allows any)."""
    if origin is None:
        return True
    if "*" in allowed or origin.rstrip("/").lower() in {a.rstrip("/").lower() for a in allowed}:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or host is None:
        return False  # "null" (sandboxed pages, files) and other schemes
    own = _host_port(host, scheme)
    return own is not None and _host_port(parts.netloc, parts.scheme) == own


async def _send_error(send, status: int, code: str, message: str) -> None:
    body = json.dumps({"type": "error", "code": code, "message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class OriginCheck:
    def __init__(self, app, allowed: tuple[str, ...] = (), on_refused: Callable[[str], None] | None = None):
        self.app, self.allowed, self.on_refused = app, tuple(allowed), on_refused

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        acts = kind == "websocket" or (kind == "http" and scope["method"] not in SAFE_METHODS)
        origin = _header(scope, b"origin") if acts else None
        if origin is None or origin_allowed(origin, _header(scope, b"host"), scope.get("scheme", "http"),
                                            self.allowed):
            return await self.app(scope, receive, send)
        if self.on_refused:
            self.on_refused("origin")
        message = f"requests from web pages of {origin} are refused (start the server with --allow-origin {origin})"
        if kind == "websocket":  # refused before the handshake completes: the browser sees 403
            await send({"type": "websocket.close", "code": 1008, "reason": "origin not allowed"})
        else:
            await _send_error(send, 403, "origin", message)


class BodyLimit:
    """`limit(path)`: the most bytes a request body to that path may have."""

    def __init__(self, app, limit: Callable[[str], int], on_refused: Callable[[str], None] | None = None):
        self.app, self.limit, self.on_refused = app, limit, on_refused

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit(scope["path"])
        message = f"request body over {limit} bytes; the limit for {scope['path']}"
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            if self.on_refused:
                self.on_refused("too_large")
            return await _send_error(send, 413, "too_large", message)
        received = 0
        refused = False
        started = False

        async def counted_receive():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > limit:
                    # answer now, and let the route see a client that left (its own answer is dropped)
                    refused = True
                    if self.on_refused:
                        self.on_refused("too_large")
                    if not started:
                        await _send_error(send, 413, "too_large", message)
                    return {"type": "http.disconnect"}
            return event

        async def guarded_send(event):
            nonlocal started
            if refused:
                return
            started = True
            await send(event)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not refused:  # what a route does with a body cut short is no error of the server
                raise
