"""The realistic patterns the token-index benchmark compiles (shared by its peers' runs)."""

from __future__ import annotations

import json

WORDS = (
    "time year people way day man thing woman life child world school state family student "
    "group country problem hand part place case week company system program question work "
    "government number night point home water room mother area money story fact month lot right "
    "study book eye job word business issue side kind head house service friend father power hour "
    "game line end member law car city community name president team minute idea kid body "
    "information back parent face others level office door health person art war history party "
    "result change morning reason research girl guy moment air teacher force education foot boy "
    "age policy everything process music market sense nation plan college interest death "
    "experience effect use class control care field development role effort rate heart drug show "
    "leader light voice wife police mind price report decision son view relationship town road "
    "arm difference value building action model season society tax director position player "
    "record paper space ground form event official matter center couple site project activity "
    "star table need court american oil situation cost industry figure street image phone data "
    "picture practice piece land product doctor wall patient worker news test movie north love "
    "support technology step baby computer type attention film tree source organization hair "
    "window evidence population training"
).split()[:200]

_STR = r'"([^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4}){0,40}"'
_INT = r"-?(0|[1-9][0-9]{0,9})"
_NUM = r"-?(0|[1-9][0-9]{0,9})(\.[0-9]{1,6})?([eE][+-]?[0-9]{1,3})?"

# A JSON object regex as a schema compiler would emit it for 8 typed fields.
_SCHEMA = {
    "id": _INT,
    "name": _STR,
    "email": r'"[a-z0-9._%+-]{1,30}@[a-z0-9.-]{1,30}\.[a-z]{2,6}"',
    "age": r"(0|[1-9][0-9]{0,2})",
    "score": _NUM,
    "active": r"(true|false)",
    "role": r'("admin"|"editor"|"viewer")',
    "tags": r"\[(" + _STR + r"(, " + _STR + r"){0,4})?\]",
}
JSON_SCHEMA_OBJECT = (
    r"\{"
    + r", ".join(json.dumps(k).replace('"', r"\"") + r": " + v for k, v in _SCHEMA.items())
    + r"\}"
)

JSON_HAND = (
    r'\{"name": "[A-Z][a-z]{1,20}( [A-Z][a-z]{1,20})?", "age": [0-9]{1,3}, '
    r'"city": "[A-Za-z ]{1,30}", "married": (true|false)\}'
)

OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"

# (name, pattern); the blow-up case comes last.
PATTERNS: list[tuple[str, str]] = [
    ("integer", r"-?(0|[1-9][0-9]*)"),
    ("float", r"-?(0|[1-9][0-9]*)\.[0-9]+([eE][-+]?[0-9]+)?"),
    ("date", r"\d{4}-\d{2}-\d{2}"),
    ("date ASCII", r"[0-9]{4}-[0-9]{2}-[0-9]{2}"),
    ("time", r"([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?"),
    (
        "ISO datetime",
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})",
    ),
    ("phone (US)", r"\([0-9]{3}\) [0-9]{3}-[0-9]{4}"),
    ("phone (intl)", r"\+[1-9][0-9]{0,2}( [0-9]{2,4}){2,4}"),
    ("email", r"[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}"),
    ("IPv4", rf"{OCTET}(\.{OCTET}){{3}}"),
    ("UUID", r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
    (
        "URL",
        r"https?://[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,6}(/[A-Za-z0-9._~%-]*)*(\?[A-Za-z0-9=&_%-]*)?",
    ),
    (
        "semver",
        r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?",
    ),
    ("hex color", r"#[0-9a-fA-F]{6}"),
    ("price", r"\$[0-9]{1,3}(,[0-9]{3})*(\.[0-9]{2})?"),
    ("enum", r"(red|green|blue|yellow|purple)"),
    ("sentiment", r"(Positive|Negative|Neutral)"),
    ("yes/no (?i)", r"(?i)(yes|no|maybe)"),
    ("200-word alternation", "(" + "|".join(WORDS) + ")"),
    ("sentence", r"[A-Z][a-z ,]{10,80}\."),
    ("answer + reason", r"(Yes|No), because [a-z ,']{10,100}\."),
    (".{0,50}", r".{0,50}"),
    ("[a-z]{1,200}", r"[a-z]{1,200}"),
    ("words \\w", r"\w+( \w+){0,9}"),
    ("JSON object (hand)", JSON_HAND),
    ("JSON schema (8 fields)", JSON_SCHEMA_OBJECT),
    ("Unicode letters", r"[À-ÖØ-öø-ÿĀ-ſ]+( [À-ÖØ-öø-ÿĀ-ſ]+)*"),
    ("Cyrillic", r"[А-Яа-яЁё]+( [А-Яа-яЁё]+){0,5}"),
    ("CJK", r"[\u4e00-\u9fff]{1,20}"),
    ("markdown list", r"(- [A-Za-z ]{1,30}\n){1,5}"),
    ("(a|b)*a(a|b){12}", r"(a|b)*a(a|b){12}"),
]
# Patterns whose eager DFA is huge: counted repeats of Unicode classes and long counts.
HEAVY: list[tuple[str, str]] = [
    ("\\w{1,50}", r"\w{1,50}"),
    ("(\\w+\\s?){1,10}", r"(\w+\s?){1,10}"),
    ("\\w email", r"\w{1,40}@\w{1,40}(\.\w{2,6}){1,4}"),
    ("JSON name/age \\w", r'\{"name": "\w{1,30}", "age": \d{1,3}\}'),
    (".{0,500}", r".{0,500}"),
    ("\\d{1,100}", r"\d{1,100}"),
    ("(a|b)*a(a|b){20}", r"(a|b)*a(a|b){20}"),
    ("\\w{1,20} x3", r"\w{1,20}( \w{1,20}){2}"),
    ("[^\\n]{0,300}", r"[^\n]{0,300}"),
]
BLOWUP = "(a|b)*a(a|b){12}"
