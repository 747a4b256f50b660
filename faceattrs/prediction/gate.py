"""What stands before the page of `faceattrs serve`: the Host names it answers to, its token, how much it takes on.

Three ASGI middlewares, outermost first. A request that names another host is refused,
so a site whose name an attacker rebinds to this machine's address reaches nothing (DNS
rebinding). Where the page has a token, a request without it is refused. A scoring
request beyond the few scored at a time, or a body announced over the upload limit, is
refused from its headers, before its body is read.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import re
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from faceattrs.core.errors import InputError

TOKEN_VARIABLE = "FACEATTRS_SERVE_TOKEN"
# The addresses only this machine reaches: a page bound to them needs no token.
LOOPBACK = ("127.0.0.1", "::1")
# The names a browser on this machine gives the page in its Host header.
LOCAL_NAMES = ("127.0.0.1", "localhost", "[::1]")
EVERY_ADDRESS = ("0.0.0.0", "::")
# secrets.token_hex(32) gives 64 characters; fewer than this are within reach of guessing.
MIN_TOKEN = 16
# Characters a token may hold: it travels in a URL, a cookie and a header unescaped.
_TOKEN = re.compile(r"[A-Za-z0-9_.~-]+")
# Hex, not token_urlsafe(): one urlsafe token in 64 begins with "-", which argparse reads as an option after --token.
_MAKE_ONE = "python -c 'import secrets; print(secrets.token_hex(32))'"


@dataclass(frozen=True)
class Limits:
    """How much the page takes on: upload size, scoring requests at a time, how long a body may take, faces shown."""

    upload: int = 20 * 2**20
    # Scoring requests in progress at once (uploads, test images, saliency maps); each holds a thread of
    # the pool that also serves the page, and beyond this they are refused (503), never queued.
    scoring: int = 4
    body_seconds: float = 120.0
    faces: int = 16


@dataclass(frozen=True)
class Access:
    """Who may use the page: the address it listens on, the Host names it answers to, the token (None: none asked)."""

    host: str = "127.0.0.1"
    names: tuple[str, ...] = LOCAL_NAMES
    token: str | None = None

    @classmethod
    def bound(cls, host: str, token: str | None, names: Sequence[str] = ()) -> Access:
        """The access of a page listening on ``host``: beyond the loopback, only with a token."""
        token = token or None
        if host not in LOOPBACK and token is None:
            raise InputError(
                f"--host {host}: a page other machines can reach needs a token; give one with --token or in "
                f"{TOKEN_VARIABLE} (not seen by other users, as a command line is), e.g. from {_MAKE_ONE}"
            )
        if token is not None and (len(token) < MIN_TOKEN or not _TOKEN.fullmatch(token)):
            raise InputError(
                f"--token: at least {MIN_TOKEN} characters, of letters, digits and - _ . ~ only; e.g. from {_MAKE_ONE}"
            )
        return cls(host, host_names(host, names), token)

    def url(self, port: int) -> str:
        """The address to open the page at, token included."""
        host = socket.gethostname() if self.host in EVERY_ADDRESS else _bracketed(self.host)
        return f"http://{host}:{port}/" + (f"?token={self.token}" if self.token else "")


def host_names(host: str, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """The Host names a page listening on ``host`` answers to: that address (on every address: this machine's
    names and addresses), localhost's names, and ``extra``."""
    names = [*LOCAL_NAMES, *extra]
    if host in EVERY_ADDRESS:
        names += [socket.gethostname(), socket.getfqdn()]
        # A name that does not resolve adds no address: the user names one with --allow-host.
        with contextlib.suppress(OSError):
            names += [_bracketed(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None)]
    else:
        names.append(_bracketed(host))
    return tuple(dict.fromkeys(name.lower() for name in names))


def _bracketed(host: str) -> str:
    """An address as a Host header names it: IPv6 in brackets."""
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:  # a name, not an address
        return host


def guard(app, access: Access, limits: Limits, scoring: Callable[[str, str], bool]) -> None:
    """Puts the three middlewares before ``app``'s routes (the last added runs first)."""
    app.add_middleware(ScoringLimit, limits=limits, scoring=scoring)
    if access.token:
        app.add_middleware(TokenCheck, token=access.token)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(access.names), www_redirect=False)


def _refusal(status: int, detail: str, headers: dict | None = None) -> Response:
    """A refusal as FastAPI words its errors, so the page shows it the same way."""
    return JSONResponse({"detail": detail}, status, headers)


class TokenCheck:
    """Every request carries the token: in the address (``?token=``, the printed address), in the cookie the
    page sets on that first visit, or as ``Authorization: Bearer TOKEN`` (a program)."""

    def __init__(self, app: ASGIApp, token: str):
        self.app, self.token = app, token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        # Cookies are not kept apart by port: two pages on one machine each have their own.
        cookie = f"faceattrs-{(scope.get('server') or ('', ''))[1]}"
        in_url = request.query_params.get("token")
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        given = in_url or (bearer if scheme.lower() == "bearer" else None) or request.cookies.get(cookie)
        if given is None:
            response = _refusal(401, "this page asks for its token: open the address `faceattrs serve` printed")
        elif not hmac.compare_digest(given.encode(), self.token):
            response = _refusal(403, "wrong token: open the address `faceattrs serve` printed")
        elif in_url is not None and scope["method"] == "GET" and scope["path"] == "/":
            # The page keeps the token in a cookie and out of the address bar, the history and any link shared on.
            response = RedirectResponse("/", 303)
            response.set_cookie(cookie, self.token.decode(), httponly=True, samesite="lax")
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)


class ScoringLimit:
    """No body announced over the upload limit, and at most ``limits.scoring`` scoring requests at a time:
    both told from the headers, so a refused request's body is never read."""

    def __init__(self, app: ASGIApp, limits: Limits, scoring: Callable[[str, str], bool]):
        self.app, self.limits, self.scoring = app, limits, scoring
        # A thread's semaphore, taken without waiting: the test client runs each request in an event loop of
        # its own, and a refusal must never wait.
        self.slots = threading.BoundedSemaphore(limits.scoring)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length", "0")
        if length.isdigit() and int(length) > self.limits.upload:
            await _refusal(413, f"uploads are limited to {self.limits.upload // 2**20} MB")(scope, receive, send)
            return
        if not self.scoring(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        if not self.slots.acquire(blocking=False):
            busy = f"the page is scoring {self.limits.scoring} pictures already; try again in a moment"
            await _refusal(503, busy, {"Retry-After": "5"})(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.slots.release()
