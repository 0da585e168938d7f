"""Error answers of the HTTP service: one JSON shape for every status that is not 200.

Every error the service sends reads ``{"error": "<what is wrong and what to do>", "code": <status>}``,
whether it comes from request validation, authentication, a limit, the router (404, 405), the
engine (503, 504) or an unexpected failure (500, whose details go to the log only).

:class:`APIError` is what the service's own code raises; :func:`error_response` builds the
Starlette response; :func:`send_error` answers straight from a pure ASGI middleware, before any
route runs. :func:`describe_regex_error` turns the library's typed pattern errors into messages a
user can act on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.responses import Response
from starlette.types import Send

from regexlm.errors import (
    EmptyLanguageError,
    PatternTooComplexError,
    RegexError,
    RegexSyntaxError,
    UnsupportedRegexError,
)

INVALID_API_KEY = "Invalid API Key provided."
TIMEOUT_MESSAGE = (
    "The request took longer than this server's time limit of {:g} s; try again "
    "later or ask for fewer tokens."
)


class APIError(Exception):
    """An answer other than 200, with the message the user sees."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def error_body(status: int, message: str) -> bytes:
    """The JSON body shared by every error answer."""
    return json.dumps({"error": message, "code": status}, ensure_ascii=False).encode("utf-8")


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        error_body(status, message),
        status_code=status,
        headers=dict(headers or {}),
        media_type="application/json",
    )


async def send_error(
    send: Send, status: int, message: str, headers: Mapping[str, str] | None = None
) -> None:
    """Send a complete JSON error answer over a raw ASGI ``send``."""
    body = error_body(status, message)
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
    ]
    raw_headers += [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _which(pattern_index: int | None) -> str:
    return "pattern" if pattern_index is None else f"pattern[{pattern_index}]"


def describe_regex_error(exc: RegexError, pattern_index: int | None = None) -> str:
    """A user-facing message for a pattern the service cannot use.

    ``pattern_index`` names the offending entry when the request sent a list of patterns.
    """
    where = _which(pattern_index)
    if isinstance(exc, RegexSyntaxError):
        at = f" at position {exc.position}" if exc.position is not None else ""
        return (
            f"{where} is not a valid regular expression{at}: {exc.msg}. "
            "Fix the pattern; it uses Python `re` syntax."
        )
    if isinstance(exc, UnsupportedRegexError):
        at = f" at position {exc.position}" if exc.position is not None else ""
        return (
            f"{where} uses an unsupported construct{at}: {exc.construct}. A finite automaton "
            "cannot express it (backreferences, lookaround, conditionals, atomic groups and "
            "possessive quantifiers are not supported); rewrite the pattern without it."
        )
    if isinstance(exc, PatternTooComplexError):
        return f"{where} is too complex for this server: {exc}."
    if isinstance(exc, EmptyLanguageError):
        return (
            f"{where} cannot be satisfied: {exc}. Check the pattern for contradictions "
            "(for example an empty class or a required character the model cannot produce)."
        )
    return f"{where} cannot be used: {exc}."
