"""Request ids and the access log: one line per answered request.

Each request gets an id: the client's ``X-Request-ID`` when it is a short token
(``[A-Za-z0-9._-]``, at most 64 characters), otherwise a fresh random one. The id is stored in the
ASGI scope (``scope["regexlm.request_id"]``) for the routes' own log lines, echoed in the
``X-Request-ID`` response header, and written in the access log line together with the method,
path, status and duration. Paths are logged in escaped, shortened form so a client cannot forge
log lines.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("regexlm.server.access")

REQUEST_ID_KEY = "regexlm.request_id"
_CLIENT_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")


def request_id(scope: Scope) -> str:
    """The id of the request this scope belongs to ('-' outside a request)."""
    return scope.get(REQUEST_ID_KEY, "-")


def _incoming_id(scope: Scope) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == b"x-request-id" and _CLIENT_ID.fullmatch(value):
            return value.decode("ascii")
    return uuid.uuid4().hex


def _printable_path(path: str) -> str:
    text = path.encode("unicode_escape", "backslashreplace").decode("ascii")
    return text if len(text) <= 200 else text[:197] + "..."


class RequestIdMiddleware:
    """Tag each request with an id, return it as ``X-Request-ID`` and log the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _incoming_id(scope)
        scope[REQUEST_ID_KEY] = rid
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", []),
                        (b"x-request-id", rid.encode("ascii")),
                    ],
                }
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            status = scope.get("regexlm.status", status)
            logger.info(
                "%s %s %s %d %.1fms",
                rid,
                scope["method"][:16],
                _printable_path(scope["path"]),
                status,
                (time.perf_counter() - started) * 1000.0,
            )
