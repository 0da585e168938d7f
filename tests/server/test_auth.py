"""API keys: sources, the constant-time check, and the 401 answer."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from regexlm.server.auth import (
    APIKeyChecker,
    APIKeyMiddleware,
    KeyConfigError,
    generate_api_key,
    keys_from_env,
    keys_from_file,
)


def test_keys_from_env_are_comma_separated():
    assert keys_from_env({"REGEXLM_API_KEYS": " a1 ,b2,, c3 "}) == ["a1", "b2", "c3"]
    assert keys_from_env({}) == []
    with pytest.raises(KeyConfigError):
        keys_from_env({"REGEXLM_API_KEYS": "has space"})


def test_key_file_skips_blank_lines_and_comments(tmp_path):
    path = tmp_path / "keys"
    path.write_text("# production keys\n\nkey-one\n   \n  key-two  \n#key-three\n")
    assert keys_from_file(path) == ["key-one", "key-two"]
    (tmp_path / "empty").write_text("# nothing\n\n")
    with pytest.raises(KeyConfigError, match="holds no key"):
        keys_from_file(tmp_path / "empty")
    with pytest.raises(KeyConfigError, match="cannot read"):
        keys_from_file(tmp_path / "missing")


def test_checker_accepts_exactly_the_configured_keys():
    checker = APIKeyChecker(["alpha", "beta"])
    assert checker.check("alpha") and checker.check(b"beta")
    for wrong in ["", "alph", "alphaa", "ALPHA", "gamma", "alpha\x00", "beta "]:
        assert not checker.check(wrong)
    with pytest.raises(KeyConfigError):
        APIKeyChecker([])


def test_checker_compares_every_key(monkeypatch):
    import hmac

    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    checker = APIKeyChecker(["k1", "k2", "k3"])
    assert checker.check("k1")
    assert len(calls) == 3  # no early exit on the first key


def test_generated_keys_are_long_and_distinct():
    keys = {generate_api_key() for _ in range(20)}
    assert len(keys) == 20 and all(len(k) >= 40 for k in keys)


def make_app():
    async def ok(request):
        return PlainTextResponse("ok")

    return Starlette(
        routes=[Route("/v1/x", ok, methods=["POST"]), Route("/health", ok)],
        middleware=[Middleware(APIKeyMiddleware, checker=APIKeyChecker(["s3cret"]))],
    )


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic s3cret"},
        {"Authorization": "s3cret"},
        {"Authorization": "Bearer s3cret extra"},
    ],
)
def test_missing_or_wrong_key_gets_the_exact_401(headers):
    with TestClient(make_app()) as client:
        response = client.post("/v1/x", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "Invalid API Key provided.", "code": 401}
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_valid_key_passes_and_open_routes_need_none():
    with TestClient(make_app()) as client:
        assert client.post("/v1/x", headers={"Authorization": "Bearer s3cret"}).text == "ok"
        assert client.post("/v1/x", headers={"Authorization": "bearer s3cret"}).text == "ok"
        assert client.get("/health").text == "ok"
