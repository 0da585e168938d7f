"""Generated hostile traffic against a real server process, and the rules every answer keeps.

Shared by ``tests/server/test_hostile.py`` (about a thousand requests) and
``bench/bench_hostile.py`` (as many as asked). :func:`probes` is a hypothesis strategy over the
request schema and around it:

* valid requests, many with every number at a bound of its range (a 200 each);
* JSON objects whose every field may be missing, valid, at a boundary, extreme (1e39, 1e-300,
  2**63, subnormals, -0.0), of the wrong type, or unknown; prompts of odd Unicode (surrogates,
  NUL, control characters, control-token text, right-to-left marks) and oversized ones;
  patterns that are valid, regex bombs, unsupported constructs, syntax errors, empty languages,
  random junk, lists of them;
* malformed bodies (random bytes, truncated or deeply nested JSON, ``NaN`` literals, duplicate
  keys, invalid UTF-8, bodies over the size limit), bad API keys, wrong methods and paths;
* clients that leave: mid-stream, before the answer, or in the middle of sending the body.

:func:`send` runs a batch of probes concurrently against a base URL and checks each answer:
no status of 500 or more; every other non-200 a JSON ``{"error", "code"}`` within
:data:`ERROR_LIMIT_S`; every 200 a completion whose ``matched`` agrees with Python's ``re``.
Traffic goes to the given URL only (127.0.0.1 in the test and the benchmark), a bounded number of
requests, each with a bounded time.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
from hypothesis import strategies as st

URL = "/v1/completion/regex"
ERROR_LIMIT_S = 2.0  # every non-200 answer comes within this
REQUEST_LIMIT_S = 30.0  # a 200 may decode for a while; nothing waits longer than this

# The server the probes are sized for (``serve`` flags): small limits keep valid requests cheap.
SERVER_FLAGS = (
    "--max-new-tokens-limit",
    "10",  # the seed request's budget
    "--max-prompt-chars",
    "2000",
    "--max-body-bytes",
    "16384",
    "--max-patterns",
    "8",
    "--max-pattern-chars",
    "400",
    "--compile-timeout",
    "1",
    "--request-timeout",
    "20",
    "--max-batch-size",
    "16",
)

SEED_REQUEST = {  # the example request of the design brief
    "prompt": "This is a sample prompt",
    "pattern": ".*prompt$",
    "max_new_tokens": 10,
    "stop_after_match": False,
    "top_k": 50,
    "top_p": 0.9,
    "temperature": 0.8,
    "repetition_penalty": 1.2,
}

VALID_PATTERNS = [
    r"[a-z]+",
    r"\d{1,4}",
    r"(yes|no)",
    r"[A-Z][a-z]{0,6}",
    r"(?i)ok",
    r".*prompt$",
    r"[^\n]{0,8}",
    r"(red|green|blue)( and (red|green|blue))?",
    r"[αβγ]+ ?(été|日本)?",
    r"[😀-😂]{1,2}",
    r"\w+ \w+",
    r"(?s).{1,5}",
    r"a|",
    r"",
    r"\x00?x",
    r"(?x) a b  # comment",
]
# Patterns Python's re may take a long time to test against a completion: never used as oracle.
BOMBS = [
    "(a|b)*a(a|b){20}",
    "(a|b)*a(a|b){12}",
    "a{100000}",
    "(x{1000}){1000}",
    "(((a{100}){100}){100})",
    "a{4294967295}",
    "a{1,99999999999}",
    "(?:\\w{200}){200}",
    r"(\d|\w){1,100}x(\d|\w){25}",
    ".{0,5000}",
    r"(\w+\s?){1,200}",
    r"(\w|\d|\s){300}",
    "(a+)+b",
    "(a*)*$",
    "([a-z]+)*[0-9]",
    "[\u0000-\U0010ffff]{50}x",
    r"(.{0,20}\w{0,20}){0,40}",  # each DFA state holds hundreds of positions
]
UNSUPPORTED = [
    "a(?=b)",
    "a(?!b)",
    "(?<=a)b",
    "(?<!a)b",
    r"(a)\1",
    "(?P<x>a)(?P=x)",
    "(a)?(?(1)b|c)",
    "(?>ab)",
    "a*+",
    "a++",
    "x{2}+",
]
SYNTAX_ERRORS = ["(", ")", "[", "a{2,1}", "*a", "a**", "\\", "[z-a]", "(?<", "(?z)", "\\p{L}"]
EMPTY = [r"[^\s\S]", r"a\bb", r"\Za", "(?!)"]
MARKERS = ["<|im_end|>", "<|im_start|>", "<|endoftext|>", "<end_of_turn>", "<bos>", "<eos>"]

NUMBERS = [
    0,
    -0.0,
    1,
    -1,
    2,
    0.5,
    1e-4,
    9.99e-5,
    1e4,
    10001,
    1e-300,
    1e-45,
    5e-324,
    1e-38,
    3.4e38,
    3.5e38,
    1e39,
    1e300,
    1.7976931348623157e308,
    0.999999999,
    1.0000001,
    2**31 - 1,
    2**31,
    2**63 - 1,
    2**63,
    2**64,
    -(2**63),
    10**30,
    10,
    11,
]
WRONG_TYPES = ["1", "", "NaN", "true", True, False, [], [1], {}, {"a": 1}]


def _text(max_size: int) -> st.SearchStrategy[str]:
    odd = st.sampled_from(
        ["\x00", "\ud800", "\udfff", "\u202e", "\ufeff", "\x7f", "\u200b", "\n", "\r\n", "\t"]
        + MARKERS
    )
    return st.lists(st.text(max_size=max_size) | odd, max_size=4).map("".join)


def _number(name: str) -> st.SearchStrategy:
    valid = {
        "max_new_tokens": st.integers(1, 8),
        "top_k": st.integers(0, 60),
        "top_p": st.floats(0, 1),
        "temperature": st.sampled_from([0, 0.5, 1.0, 1.5]) | st.floats(1e-4, 1e4),
        "repetition_penalty": st.floats(0.5, 2.0),
        "seed": st.integers(0, 2**63 - 1),
    }[name]
    return st.one_of(
        valid,
        st.sampled_from(NUMBERS),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(WRONG_TYPES),
        st.none(),
    )


def _pattern() -> st.SearchStrategy:
    one = st.one_of(
        st.sampled_from(VALID_PATTERNS),
        st.sampled_from(BOMBS + UNSUPPORTED + SYNTAX_ERRORS + EMPTY),
        st.text(alphabet="()[]{}*+?|^$\\.-,:=!<>Pabdsw0129 ", min_size=1, max_size=20),
        st.text(max_size=10),
    )
    return st.one_of(
        one,
        one,
        st.lists(one, min_size=0, max_size=10),
        st.sampled_from(WRONG_TYPES + [None, 5, [None]]),
        st.text(min_size=401, max_size=450),  # over the length limit
    )


VALID_EXTREMES = {
    "max_new_tokens": [1, 8],
    "top_k": [0, 1, 2**31 - 1],
    "top_p": [0, 0.0, 1e-30, 1, 1.0],
    "temperature": [0, 1e-4, 1e4, 0.7],
    "repetition_penalty": [1e-4, 1e4, 1, 1.3],
    "seed": [0, 2**63 - 1, None],
}


@st.composite
def _valid_object(draw) -> tuple[dict, list[str] | None]:
    """A request the server must answer with a 200: every field valid, many at their bounds."""
    patterns = draw(st.lists(st.sampled_from(VALID_PATTERNS), min_size=1, max_size=3))
    obj: dict = {
        "prompt": draw(
            _text(20).filter(lambda t: "\x00" not in t and "\ud800" not in t and "\udfff" not in t)
        ),
        "pattern": patterns if draw(st.booleans()) else patterns[0],
    }
    for name, values in VALID_EXTREMES.items():
        if draw(st.booleans()):
            obj[name] = draw(st.sampled_from(values))
    for name in ("stop_after_match", "stream"):
        if draw(st.booleans()):
            obj[name] = draw(st.booleans())
    return obj, patterns if isinstance(obj["pattern"], list) else patterns[:1]


@dataclass
class Probe:
    """One request to send: ``kind`` says how (``http``, or one of the ways a client leaves)."""

    kind: str
    method: str = "POST"
    path: str = URL
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    patterns: list[str] | None = None  # for a 200: the patterns its completion must honour

    @property
    def stream(self) -> bool:
        try:
            return json.loads(self.body).get("stream") is True
        except (ValueError, AttributeError, UnicodeDecodeError, RecursionError):
            return False


@st.composite
def _request_object(draw) -> tuple[dict, list[str] | None]:
    obj: dict = {}
    if draw(st.integers(0, 9)):
        obj["prompt"] = draw(
            st.one_of(_text(30), _text(30), st.text(min_size=2001, max_size=2100))
            if draw(st.integers(0, 9))
            else st.sampled_from(WRONG_TYPES + [None])
        )
    if draw(st.integers(0, 9)):
        obj["pattern"] = draw(_pattern())
    for name in ("max_new_tokens", "top_k", "top_p", "temperature", "repetition_penalty", "seed"):
        if draw(st.booleans()):
            obj[name] = draw(_number(name))
    for name in ("stop_after_match", "stream"):
        if draw(st.integers(0, 3)) == 0:
            obj[name] = draw(st.booleans() | st.sampled_from(WRONG_TYPES + [None, 0, 1]))
    if draw(st.integers(0, 15)) == 0:
        obj[draw(st.text(max_size=12))] = draw(st.sampled_from(WRONG_TYPES + [1, None]))
    pattern = obj.get("pattern")
    patterns = [pattern] if isinstance(pattern, str) else pattern
    if not (isinstance(patterns, list) and all(isinstance(p, str) for p in patterns)):
        patterns = None
    elif any(p in BOMBS for p in patterns):
        patterns = None  # re may backtrack for ages on these: no oracle
    return obj, patterns


def _raw_bodies() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=200),
        st.sampled_from(
            [
                b"",
                b"{",
                b"[" * 5000,
                b'{"a":' * 3000 + b"1" + b"}" * 3000,
                b'{"prompt": NaN, "pattern": "a"}',
                b'{"prompt": "a", "pattern": "b", "top_p": Infinity}',
                b'{"prompt": "a", "pattern": "b", "temperature": -Infinity}',
                b'{"prompt": "a", "pattern": "b", "temperature": 1e999}',
                b'{"prompt": "a", "pattern": "b", "seed": ' + b"9" * 5000 + b"}",
                b'{"prompt": "a", "prompt": "a", "pattern": "b"}',
                b"\xef\xbb\xbf{}",
                b"\xff\xfe\xfd",
                b'{"prompt": "a\xff", "pattern": "b"}',
                b'{"prompt": "a", "pattern": "b"} trailing',
                b"null",
                b"[]",
                b'"text"',
                b'{"prompt": "' + b"x" * 20000 + b'", "pattern": "a"}',  # over the body limit
            ]
        ),
        st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass")),
    )


BAD_HEADERS = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer wrong"},
    {"Authorization": "Basic abc"},
    {"Authorization": "Bearer " + "k" * 3000},
    {"X-API-Key": "anything"},
]
ROUTES = [
    ("GET", URL),
    ("PUT", URL),
    ("DELETE", URL),
    ("POST", "/health"),
    ("GET", "/"),
    ("GET", "/v1/completion/regex/extra"),
    ("POST", "/v1/completions"),
    ("GET", "/%ff%fe"),
    ("GET", "/../../etc/passwd"),
    ("OPTIONS", URL),
]


@st.composite
def probes(draw, key: str) -> Probe:
    """One hostile probe for a server whose API key is ``key``."""
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    kind = draw(
        st.sampled_from(
            ["valid"] * 6
            + ["json"] * 10
            + ["raw"] * 3
            + ["auth", "route", "leave_stream", "leave", "leave_body"]
        )
    )
    if kind == "valid":
        obj, patterns = draw(_valid_object())
        return Probe("http", headers=auth, body=json.dumps(obj).encode(), patterns=patterns)
    if kind == "json":
        obj, patterns = draw(_request_object())
        return Probe("http", headers=auth, body=json.dumps(obj).encode(), patterns=patterns)
    if kind == "raw":
        return Probe("http", headers=auth, body=draw(_raw_bodies()))
    if kind == "auth":
        body = json.dumps({"prompt": "a", "pattern": "[a-z]+"}).encode()
        return Probe("http", headers=draw(st.sampled_from(BAD_HEADERS)), body=body)
    if kind == "route":
        method, path = draw(st.sampled_from(ROUTES))
        return Probe("http", method=method, path=path, headers=auth, body=b"{}")
    body = {
        "prompt": draw(_text(20)),
        "pattern": draw(st.sampled_from(VALID_PATTERNS)),
        "max_new_tokens": 8,
        "stop_after_match": False,
        "stream": kind == "leave_stream",
    }
    return Probe(kind, headers=auth, body=json.dumps(body).encode())


@dataclass
class Tally:
    """What came back: counts by status (or way of leaving), slowest error, every problem."""

    statuses: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    slowest_error_s: float = 0.0
    sent: int = 0

    @property
    def server_errors(self) -> int:
        return sum(
            n for status, n in self.statuses.items() if isinstance(status, int) and status >= 500
        )

    def summary(self) -> str:
        shown = ", ".join(f"{status}: {n}" for status, n in sorted(self.statuses.items(), key=str))
        return (
            f"{self.sent} requests; {shown}; 5xx: {self.server_errors}; slowest error answer "
            f"{self.slowest_error_s:.3f} s; problems: {len(self.problems)}"
        )


def _check_completion(body: dict, patterns: list[str] | None) -> str | None:
    keys = {"completion", "tokens_generated", "stop_reason", "matched", "pattern_index"}
    if not keys <= set(body):
        return f"a 200 without the completion fields: {sorted(body)}"
    if body["stop_reason"] not in ("pattern_match", "token_limit"):
        return f"stop_reason {body['stop_reason']!r}"
    if patterns is not None:
        matches = [i for i, p in enumerate(patterns) if re.fullmatch(p, body["completion"])]
        if body["matched"] != bool(matches) or body["pattern_index"] != (matches or [None])[0]:
            return f"matched={body['matched']} for {body['completion']!r} under {patterns!r}"
    return None


def _check_error(status: int, text: str, elapsed: float) -> str | None:
    try:
        data = json.loads(text)
    except ValueError:
        return f"{status} answer is not JSON: {text[:80]!r}"
    if not isinstance(data, dict) or set(data) != {"error", "code"} or data["code"] != status:
        return f"{status} answer has the wrong shape: {text[:120]!r}"
    if not isinstance(data["error"], str) or "Traceback" in data["error"]:
        return f"{status} answer's error is not a message: {text[:120]!r}"
    if elapsed > ERROR_LIMIT_S:
        return f"{status} answer took {elapsed:.2f} s"
    return None


def _sse_events(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.split("\n\n"):
        lines = block.split("\n")
        if len(lines) >= 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "):
            events.append((lines[0][7:], json.loads(lines[1][6:])))
    return events


async def _http(client: httpx.AsyncClient, probe: Probe, tally: Tally) -> None:
    started = time.monotonic()
    try:
        response = await client.request(
            probe.method, probe.path, headers=probe.headers, content=probe.body
        )
    except httpx.HTTPError as exc:
        tally.problems.append(f"no answer ({type(exc).__name__}: {exc}) to {probe.body[:80]!r}")
        return
    elapsed = time.monotonic() - started
    status = response.status_code
    tally.statuses[status] += 1
    problem = None
    if status != 200:
        tally.slowest_error_s = max(tally.slowest_error_s, elapsed)
        problem = _check_error(status, response.text, elapsed)
    elif probe.stream:
        try:
            events = _sse_events(response.text)
        except ValueError:
            events = []
        if not events or events[-1][0] not in ("completion", "error"):
            problem = f"a stream without its last event: {response.text[-120:]!r}"
        elif events[-1][0] == "error":
            code = events[-1][1].get("code")
            tally.statuses[f"stream error {code}"] += 1
            if not isinstance(code, int) or code >= 500:
                problem = f"stream ended with {events[-1][1]!r}"
        else:
            problem = _check_completion(events[-1][1], probe.patterns)
    else:
        try:
            problem = _check_completion(response.json(), probe.patterns)
        except ValueError:
            problem = f"a 200 that is not JSON: {response.text[:80]!r}"
    if problem is not None:
        tally.problems.append(f"{problem} (request {probe.body[:120]!r})")


async def _leave(host: str, port: int, probe: Probe, tally: Tally) -> None:
    """A client that goes away: mid-stream, before its answer, or while sending its body."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        body = probe.body
        declared = len(body) + (1000 if probe.kind == "leave_body" else 0)
        head = [f"POST {URL} HTTP/1.1", f"Host: {host}", f"Content-Length: {declared}"]
        head += [f"{k}: {v}" for k, v in probe.headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        writer.write(body[: len(body) // 2] if probe.kind == "leave_body" else body)
        await writer.drain()
        if probe.kind == "leave_stream":
            # Read until the first token event (or the stream's end), then hang up.
            await asyncio.wait_for(reader.readuntil(b"event: "), timeout=REQUEST_LIMIT_S)
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, OSError):
        pass
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass
    tally.statuses[probe.kind] += 1


async def _send(base_url: str, batch: list[Probe], tally: Tally) -> None:
    address = urlsplit(base_url)
    timeout = httpx.Timeout(REQUEST_LIMIT_S)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout) as client:
        jobs = [
            _http(client, probe, tally)
            if probe.kind == "http"
            else _leave(address.hostname, address.port, probe, tally)
            for probe in batch
        ]
        await asyncio.gather(*jobs)
    tally.sent += len(batch)


def send(base_url: str, batch: list[Probe], tally: Tally) -> None:
    """Send ``batch`` concurrently and record every answer's status and problems in ``tally``."""
    asyncio.run(_send(base_url, batch, tally))


def check_seed_request(base_url: str, key: str) -> dict:
    """The design brief's example request: a 200 whose completion matches ``.*prompt$``."""
    response = httpx.post(
        base_url + URL,
        json=SEED_REQUEST,
        headers={"Authorization": f"Bearer {key}"},
        timeout=REQUEST_LIMIT_S,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["matched"] is True and re.fullmatch(SEED_REQUEST["pattern"], body["completion"])
    assert 1 <= body["tokens_generated"] <= SEED_REQUEST["max_new_tokens"]
    assert body["stop_reason"] in ("pattern_match", "token_limit")
    health = httpx.get(base_url + "/health", timeout=5.0).json()
    assert health["status"] == "ok"
    return body
