"""Which requests the server takes at all, decided before a route reads them (ASGI middleware).

`HostCheck`: DNS rebinding. A hostile page whose name is made to resolve to 127.0.0.1 is, to the
browser, of the same origin as the server, so the Origin check passes; but its requests carry
the page's name in `Host`. Only the names the server answers to are served: loopback, the address
it is bound to, and `--allow-host` names (`host_names`), as Starlette's `TrustedHostMiddleware`
matches them (any port).

`OriginCheck`: a web page of another site must not drive a server on this machine (a browser
sends any page's requests to 127.0.0.1 and opens WebSockets there without CORS). Requests that
can act (WebSocket handshakes, POST and other non-GET methods) are refused when they carry an
`Origin` that is neither the server's own (the host:port the request was sent to) nor allowed
by `--allow-origin`; requests without an Origin come from non-browser clients and are served.

`OpenLimit`: at most so many WebSocket sessions (`--max-sessions`) and translate POSTs
(`--max-requests`) at once, each kind a `Limit`; one more is refused as busy before the route
runs, so an upload beyond the limit is never read.

`BodyLimit`: a request body is counted while it streams in and refused with 413 at the limit
(at once when its Content-Length says it is over), so an upload is never stored whole first.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.middleware.trustedhost import TrustedHostMiddleware

from ..errors import SettingsError

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
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


def host_name(name: str, flag: str = "--allow-host") -> str:
    """`name` as `TrustedHostMiddleware` matches a Host: lower case, an IPv6 address in brackets;
    '*' (any name) and '*.example.com' (its subdomains) as they are. SettingsError for anything
    with a scheme, a port or a path (every port of an allowed name is served)."""
    plain = name.strip().lower()
    try:
        return f"[{ipaddress.IPv6Address(plain.removeprefix('[').removesuffix(']')).compressed}]"
    except ValueError:
        pass
    rest = plain[2:] if plain.startswith("*.") else plain
    if plain != "*" and (not rest or any(c in rest for c in ":/@[]* ")):
        raise SettingsError(f"{flag} {name!r}: give a host name or address without scheme or port, e.g. "
                            "translate.example.com, 192.168.1.5, '*.example.com' or '*' (any)")
    return plain


def host_names(bound: str, allowed: Iterable[str] = ()) -> tuple[str, ...]:
    """The Host names a server bound to `bound` answers to: loopback, `bound`, and `allowed`."""
    names = [*LOOPBACK_HOSTS, *([host_name(bound, "--host")] if bound else []), *map(host_name, allowed)]
    return tuple(dict.fromkeys(names))


class HostCheck:
    """Serve a request only if its Host is one of `names` (`host_names`), as decided by Starlette's
    `TrustedHostMiddleware`; its refusal (plain text) is replaced by the protocol's error: 421
    `host`, naming the Host and the flag that allows it. A WebSocket handshake is closed before it
    completes (the client sees 403)."""

    def __init__(self, app, names: tuple[str, ...], on_refused: Callable[[str], None] | None = None):
        self.app, self.names, self.on_refused = app, tuple(names), on_refused

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        admitted = False

        async def admit(scope, receive, _library_send):
            nonlocal admitted
            admitted = True
            await self.app(scope, receive, send)

        async def drop(_message):  # the library's own answer to a refused host: ours follows
            pass

        await TrustedHostMiddleware(admit, self.names, www_redirect=False)(scope, receive, drop)
        if admitted:
            return
        if self.on_refused:
            self.on_refused("host")
        host = _header(scope, b"host")
        name = (_host_port(host, "http") or ("NAME",))[0] if host else "NAME"
        message = (f"requests for host {host!r} are refused (DNS rebinding guard; served: {', '.join(self.names)}); "
                   f"start the server with --allow-host {name} to serve it")
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "host not allowed"})
        else:
            await _send_error(send, 421, "host", message)


@dataclass
class Limit:
    """At most `most` requests of one kind open at once; `what` and `flag` name them in the refusal."""

    what: str
    flag: str
    most: int
    open: int = 0


class OpenLimit:
    """`limits`: (scope type, path) -> its `Limit`; a request to a path without one passes. Over
    its limit a request is refused as `busy` before the route runs: HTTP 503; a WebSocket is
    accepted, told, and closed with 1013 (try again later)."""

    def __init__(self, app, limits: dict[tuple[str, str], Limit], on_refused: Callable[[str], None] | None = None):
        self.app, self.limits, self.on_refused = app, limits, on_refused

    async def __call__(self, scope, receive, send):
        limit = self.limits.get((scope["type"], scope.get("path", "")))
        if limit is None:
            return await self.app(scope, receive, send)
        if limit.open >= limit.most:
            if self.on_refused:
                self.on_refused("busy")
            message = f"server busy: {limit.open} {limit.what} open (limit {limit.most}, {limit.flag}); try again later"
            if scope["type"] == "http":
                return await _send_error(send, 503, "busy", message)
            if (await receive())["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
                await send({"type": "websocket.send", "text": json.dumps({"type": "error", "code": "busy",
                                                                           "message": message})})
                await send({"type": "websocket.close", "code": 1013, "reason": "try again later"})
            return
        limit.open += 1
        try:
            await self.app(scope, receive, send)
        finally:
            limit.open -= 1


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
