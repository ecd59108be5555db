"""Secrets out of captured text before it leaves the machine.

Hooks see everything an agent sees: prompts with pasted keys, ``env`` output, config
files, ``curl -H "Authorization: Bearer …"``. Capture redacts every text and metadata
value with the patterns below *before* an event is written to the local spool or sent
(and the server runs the same ``redact`` again on what it receives), so a secret typed
into an agent never reaches MemoryWeb's database.

The patterns are specific on purpose: each names a known token format or a secret
*assignment* (``password=…``); none is a generic "high-entropy string" rule, so git
SHAs, SHA-256 digests, UUIDs and ordinary prose pass unchanged. A match becomes
``[REDACTED:<name>]``; for assignments, credential URLs and Authorization headers only
the secret part is replaced and the key stays readable (``password=[REDACTED:credential]``).

Standard library only: this module runs inside agent hooks with the system ``python3``
(3.9 or later) and is imported by the server too.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["LABELS", "PATTERNS", "SENSITIVE_KEY", "redact", "redact_value"]

#: A key name whose value is a secret: ends with one of these words (``DB_PASSWORD``,
#: ``githubToken``, ``client_secret``, ``x-api-key``). ``max_tokens``, ``token_count``
#: or ``password_hash`` do not end with one and stay readable.
_KEY_WORDS = (r"password|passwd|pwd|passphrase|secret|token|api[_\-]?key|apikey|access[_\-]?key"
              r"|private[_\-]?key|secret[_\-]?key|credentials?")
_KEY = rf"[A-Za-z0-9_.\-]{{0,64}}?(?:{_KEY_WORDS})"
#: How far before the secret's word a key name may start (``credential``'s prefix).
_KEY_PREFIX_MAX = 64
#: A whole key that names a secret (for ``redact_value``'s walk over JSON objects).
SENSITIVE_KEY = re.compile(rf"^{_KEY}$", re.IGNORECASE)
#: Values that are no secret even under a secret's name.
_NOT_A_VALUE = r"(?![\"']?(?:true|false|null|none|undefined|nil)\b)(?![\"']?\[REDACTED)"

#: name -> compiled pattern, applied in this order (the more specific first: a PEM block
#: before the assignment that holds it, ``sk-ant-`` before ``sk-``). A pattern with a
#: group named ``secret`` has only that group replaced.
PATTERNS: dict[str, re.Pattern[str]] = {
    # A whole PEM private key block; one cut short (a truncated tool output) to the end.
    "private_key": re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
        r"(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|[\s\S]*\Z)"),
    # scheme://user:password@host (connection strings: postgres://, mysql://, redis://,
    # mongodb+srv://, amqp://, jdbc:postgresql://…) — only the password. The user may be
    # empty (redis://:password@host) or hold an "@" (Azure's user@server); the password
    # runs to the last "@" before the host, so one holding an "@" goes whole. Every part
    # bounded: unbounded, the search was quadratic on long runs of scheme characters.
    "url_credentials": re.compile(
        r"\b[A-Za-z][A-Za-z0-9+.\-]{0,31}://[^\s:/'\"<>]{0,256}:(?P<secret>[^\s/'\"<>]{1,256})@"),
    # Oracle's JDBC form, jdbc:oracle:thin:user/password@host — only the password.
    "jdbc_oracle": re.compile(
        r"(?i)\bjdbc:oracle:[a-z0-9]{1,16}:[^\s/@:'\"<>]{1,128}/(?P<secret>[^\s@'\"<>]{1,256})@"),
    # Authorization: Bearer|Basic|Token <credential> (headers, curl -H, HTTP dumps).
    "authorization": re.compile(
        r"(?i)\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?:bearer|basic|token|bot)\s+"
        r"(?P<secret>[A-Za-z0-9._~+/\-]+=*)"),
    # A bare "Bearer <token>" elsewhere (16+ token characters, so prose stays).
    "bearer": re.compile(r"\b[Bb]earer\s+(?P<secret>[A-Za-z0-9._~+/\-]{16,}=*)"),
    "anthropic": re.compile(r"(?<![A-Za-z0-9_\-])sk-ant-[A-Za-z0-9_\-]{20,}"),
    # sk-…, sk-proj-…, sk-svcacct-…, sk-admin-…: 20+ characters with a digit among them.
    # Token patterns start only where a token run starts ("(?<![…])", not "\b"): from
    # every "sk-" of "sk-sk-sk-…" the digit look-ahead re-scanned the run (quadratic: 5 s
    # for 32 KB, a denial of service through the server's redaction of every event).
    "openai": re.compile(r"(?<![A-Za-z0-9_\-])sk-(?:proj-|svcacct-|admin-)?"
                         r"(?=[A-Za-z_\-]*[0-9])[A-Za-z0-9_\-]{20,}"),
    "aws_access_key_id": re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA)[A-Z0-9]{16}\b"),
    "aws_secret_access_key": re.compile(
        r"(?i)\baws_?secret_?(?:access_?)?key[\"']?\s*[:=]\s*[\"']?"
        r"(?P<secret>[A-Za-z0-9/+=]{16,})(?![A-Za-z0-9/+=])"),
    "github": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,255}|github_pat_[A-Za-z0-9_]{22,255})\b"),
    "slack": re.compile(r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"),
    "google_api_key": re.compile(r"\bAIza[0-9A-Za-z_\-]{35}"),
    "stripe": re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{16,}"),
    # header.payload.signature, each base64url; header and payload are JSON objects.
    "jwt": re.compile(r"(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"),
    # MemoryWeb's own keys (apps/tenancy/services.py: mw_live_ / mw_read_ + token_urlsafe).
    "memoryweb": re.compile(r"\bmw_(?:live|read)_[A-Za-z0-9_\-]{20,}"),
    # A semicolon-separated connection string (ADO.NET, ODBC, JDBC properties):
    # "Server=db;User Id=app;Password=correct horse battery;" — the value runs to the next
    # ";" (or quote, or line end), spaces included, where ``credential`` stops at a space.
    "connection_string": re.compile(
        r"(?i);[ \t]*(?:password|pwd)[ \t]*=[ \t]*(?!\[REDACTED)"
        r"(?P<secret>[^;\r\n\"'{}]{1,256}?)[ \t]*(?=;|[\"'}]|$)", re.MULTILINE),
    # "password": "v" (JSON, also with escaped quotes inside the value).
    "credential_json": re.compile(
        rf"(?i)\"{_KEY}\"\s*:\s*\"{_NOT_A_VALUE}(?P<secret>(?:[^\"\\\n]|\\.){{3,}})\""),
    # password=v, password: v, PASSWORD = 'v', --password=v (one line; quotes optional).
    # Anchored on the secret's word; the key name's start (``DB_`` of ``DB_PASSWORD``) is
    # checked by ``_key_starts_well``. Matching the prefix in the pattern made the search
    # quadratic on long runs such as "a-a-a-…" (37 s for 32 KB: a denial of service
    # through the server, which redacts every event it receives).
    "credential": re.compile(
        rf"(?i)(?:{_KEY_WORDS})\b[\"']?[ \t]*(?:=|:(?!//))[ \t]*{_NOT_A_VALUE}"
        r"(?P<secret>\"[^\"\n]{3,}\"|'[^'\n]{3,}'|[^\s\"',;&}<>)\]]{3,})"),
}

#: An unquoted "value" of ``credential`` that is code, not a secret: a call
#: (``password = getpass()``, ``os.environ[…``), a dotted name (``token = settings.API_TOKEN``), a variable
#: or template reference (``$TOKEN``, ``${TOKEN}``, ``{{ secret }}``).
_CODE_VALUE = re.compile(r"^(?:[^\"'].*[(\[]|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+$|\$\{?\w+\}?$|\{\{)")

#: The replacement's name per pattern: every assignment form reads "credential", every
#: connection URL "url_credentials" (the names docs/capture.md's table lists).
_LABEL = {"credential_json": "credential", "connection_string": "credential",
          "jdbc_oracle": "url_credentials"}


def _replacer(name: str):
    label = f"[REDACTED:{_LABEL.get(name, name)}]"

    def replace(match: re.Match[str]) -> str:
        if "secret" not in match.re.groupindex or match.start("secret") < 0:
            return label
        start, end = match.span("secret")
        secret = match.group("secret")
        if name == "credential" and (_CODE_VALUE.match(secret)
                                     or not _key_starts_well(match.string, match.start())):
            return match.group(0)
        # Keep the quotes of a quoted value: password="[REDACTED:credential]".
        if len(secret) >= 2 and secret[0] == secret[-1] and secret[0] in "\"'":
            start, end = start + 1, end - 1
        whole_start = match.start()
        text = match.group(0)
        return text[: start - whole_start] + label + text[end - whole_start:]

    return replace


_REPLACERS = {name: _replacer(name) for name in PATTERNS}
#: Pattern name -> the name its replacement shows (``[REDACTED:<label>]``).
LABELS = {name: _LABEL.get(name, name) for name in PATTERNS}
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_WORD_CHARS = _KEY_CHARS - {".", "-"}


def _key_starts_well(text: str, word_start: int) -> bool:
    """Whether a key name ends in the secret's word at ``word_start``: it starts at most
    ``_KEY_PREFIX_MAX`` key characters (letters, digits, ``_.-``) before, on a word
    character that follows no word character (``DB_PASSWORD``, ``x-api-key``,
    ``githubToken`` yes; ``mypasswordless`` inside a longer identifier no)."""
    low = max(0, word_start - _KEY_PREFIX_MAX)
    start = word_start
    while True:
        if text[start] in _WORD_CHARS and (start == 0 or text[start - 1] not in _WORD_CHARS):
            return True
        if start == low or text[start - 1] not in _KEY_CHARS:
            return False
        start -= 1


def redact(text: str) -> str:
    """``text`` with every secret the patterns know replaced by ``[REDACTED:<name>]``.

    Idempotent (a redacted text is returned unchanged), and cheap on text without
    secrets. Not a string (None, a number): returned as it is."""
    if not isinstance(text, str) or not text:
        return text
    for name, pattern in PATTERNS.items():
        text = pattern.sub(_REPLACERS[name], text)
    return text


def redact_value(obj: Any, _depth: int = 0) -> Any:
    """A JSON value with secrets redacted: strings through ``redact``, and any scalar
    under a secret's key name (``{"api_key": "abc"}``, ``{"DB_PASSWORD": 1234}``)
    replaced whole. Dicts and lists are copied, never changed in place; beyond 64
    levels of nesting a value is dropped rather than walked (hook payloads are shallow)."""
    if _depth > 64:
        return None
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if isinstance(key, str) and SENSITIVE_KEY.match(key) and _is_secret_scalar(value):
                out[key] = "[REDACTED:credential]"
            else:
                out[key] = redact_value(value, _depth + 1)
        return out
    if isinstance(obj, (list, tuple)):
        return [redact_value(item, _depth + 1) for item in obj]
    return obj


def _is_secret_scalar(value: Any) -> bool:
    """A value worth hiding under a secret's key: a non-empty string or a number, not a
    flag (``"token": true``) or an already redacted string."""
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip()) and not value.startswith("[REDACTED")
    return isinstance(value, (int, float))
