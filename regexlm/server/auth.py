"""API keys: where they come from, how a request proves it has one, and the 401 otherwise.

Keys are configured from ``REGEXLM_API_KEYS`` (comma-separated) and/or a key file (one key per
line; blank lines and lines starting with ``#`` are ignored); both sources add up. A request sends
``Authorization: Bearer <key>``. The check hashes the offered token and every configured key with
SHA-256 and compares the digests with :func:`hmac.compare_digest`, visiting every key whatever the
outcome, so neither the position of a matching key nor the length of a near miss shows in the
response time.

:class:`APIKeyMiddleware` guards the API routes (``/v1/...``); ``/health`` and ``/metrics`` stay
open for probes and scrapers. A missing or wrong key gets exactly
``{"error": "Invalid API Key provided.", "code": 401}`` with ``WWW-Authenticate: Bearer``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from regexlm.server.errors import INVALID_API_KEY, send_error

ENV_VAR = "REGEXLM_API_KEYS"
PROTECTED_PREFIX = "/v1/"


class KeyConfigError(ValueError):
    """The configured keys are unusable (an unreadable or empty key file, a bad key)."""


def _clean(key: str, source: str) -> str:
    key = key.strip()
    if any(ch.isspace() for ch in key) or not key.isprintable():
        raise KeyConfigError(f"an API key from {source} contains spaces or control characters")
    return key


def keys_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """Keys listed in ``REGEXLM_API_KEYS``, comma-separated; empty entries are skipped."""
    raw = (os.environ if environ is None else environ).get(ENV_VAR, "")
    return [_clean(part, ENV_VAR) for part in raw.split(",") if part.strip()]


def keys_from_file(path: str | os.PathLike) -> list[str]:
    """Keys in a file, one a line; blank lines and ``#`` comments are ignored."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyConfigError(f"cannot read the API key file {path}: {exc}") from exc
    keys = [
        _clean(line, str(path))
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    if not keys:
        raise KeyConfigError(
            f"the API key file {path} holds no key (one key per line; "
            "blank lines and lines starting with # are ignored)"
        )
    return keys


def generate_api_key() -> str:
    """A fresh random key (256 bits, URL-safe)."""
    return "rlm-" + secrets.token_urlsafe(32)


class APIKeyChecker:
    """Constant-time membership test of a token in a fixed set of keys."""

    def __init__(self, keys: Iterable[str]):
        self._digests = [hashlib.sha256(key.encode("utf-8")).digest() for key in keys if key]
        if not self._digests:
            raise KeyConfigError("at least one API key is required")

    def __len__(self) -> int:
        return len(self._digests)

    def check(self, token: str | bytes) -> bool:
        if isinstance(token, str):
            token = token.encode("utf-8", "surrogateescape")
        offered = hashlib.sha256(token).digest()
        found = False
        for digest in self._digests:
            found |= hmac.compare_digest(offered, digest)
        return found


def bearer_token(scope: Scope) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header, if there is exactly one."""
    values = [value for key, value in scope.get("headers", ()) if key.lower() == b"authorization"]
    if len(values) != 1:
        return None
    scheme, _, token = values[0].strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    token = token.strip()
    return token or None


class APIKeyMiddleware:
    """Answer 401 to API requests without a valid bearer key; let everything else through."""

    def __init__(self, app: ASGIApp, checker: APIKeyChecker, prefix: str = PROTECTED_PREFIX):
        self.app = app
        self.checker = checker
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefix):
            token = bearer_token(scope)
            if token is None or not self.checker.check(token):
                await send_error(
                    send, 401, INVALID_API_KEY, {"WWW-Authenticate": 'Bearer realm="regexlm"'}
                )
                return
        await self.app(scope, receive, send)
