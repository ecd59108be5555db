"""Redaction (memoryweb_capture/redact.py): every documented pattern catches its secret,
keeps what is around it, and leaves hashes, UUIDs and prose alone.

Secrets are assembled from fragments so no scanner mistakes this file for a leak.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from memoryweb_capture.redact import LABELS, redact, redact_value

ROOT = Path(__file__).resolve().parents[2]

OPENAI = "sk-" + "proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
OPENAI_LEGACY = "sk-" + "T3BlbkFJ4x9Q2mN7pL0vR5sK8wE1yU6i"
ANTHROPIC = "sk-" + "ant-api03-" + "Zq8Xw2Ev5Rt7Yu1Io4Pa6Sd9Fg3Hj0KlMn"
AWS_ID = "AKIA" + "Q7W2E9R4T6Y1U3I8"
AWS_SESSION_ID = "ASIA" + "J5K8L2M6N9P3Q7R1"
AWS_SECRET = "kR8pT2vX5zB9dF3hJ6mN1qS4uW7yA0cE2gI5lO8r"
GITHUB = "gh" + "p_" + "N4bV7cX1zL9kJ3hG6fD8sA2qW5eR0tY7uI1o"
GITHUB_PAT = "github" + "_pat_" + "11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123"
SLACK = "xo" + "xb-" + "2849375610-7391028465-Qx9Wm2Lp5Rt8Vz1Bn4Kc"
GOOGLE = "AI" + "za" + "SyD4f8Hk2Lm6Np0Qr3St7Uv1Wx5Yz9Ab2Cd"
STRIPE = "sk" + "_live_" + "51HqA2bC3dE4fG5hI6jK7lM8"
JWT = ("eyJ" + "hbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" + ".eyJ" + "zdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkFkYSJ9"
       + ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
MEMORYWEB = "mw_" + "live_" + "Xk2Lp9Qr4Vt7Wz1Bn5Mc8Df3Gh6Jk0Ls2Np4Rt6Vx8Z"
PEM = ("-----BEGIN " + "RSA PRIVATE KEY-----\n"
       "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
       "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
       "-----END " + "RSA PRIVATE KEY-----")


@pytest.mark.parametrize(("text", "secret", "name"), [
    (f"export OPENAI_API_KEY_BACKUP {OPENAI} now", OPENAI, "openai"),
    (f"old key {OPENAI_LEGACY}.", OPENAI_LEGACY, "openai"),
    (f"client = Anthropic(api_key_value {ANTHROPIC})", ANTHROPIC, "anthropic"),
    (f"id {AWS_ID} in region eu-west-1", AWS_ID, "aws_access_key_id"),
    (f"temporary {AWS_SESSION_ID}", AWS_SESSION_ID, "aws_access_key_id"),
    (f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET, "aws_secret_access_key"),
    (f"AWS_SECRET_ACCESS_KEY: '{AWS_SECRET}'", AWS_SECRET, "aws_secret_access_key"),
    (f"git remote set-url origin x {GITHUB}", GITHUB, "github"),
    (f"fine-grained {GITHUB_PAT}", GITHUB_PAT, "github"),
    (f"bot {SLACK} posts", SLACK, "slack"),
    (f"maps {GOOGLE} quota", GOOGLE, "google_api_key"),
    (f"charge with {STRIPE}", STRIPE, "stripe"),
    (f"cookie session={JWT}; path=/", JWT, "jwt"),
    (f"MEMORYWEB_API_KEY {MEMORYWEB}", MEMORYWEB, "memoryweb"),
    (f"key:\n{PEM}\nnext line", PEM, "private_key"),
    ('curl -H "Authorization: Bearer abc.def-ghi_jkl012345" https://api', "abc.def-ghi_jkl012345",
     "authorization"),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA==", "authorization"),
    ("token_type=bearer; Bearer Zm9vYmFyYmF6cXV4MTIzNDU2", "Zm9vYmFyYmF6cXV4MTIzNDU2", "bearer"),
    ("DATABASE_URL=postgres://shop:Tr0ub4dor@db:5432/shop", "Tr0ub4dor", "url_credentials"),
    ("password=hunter2", "hunter2", "credential"),
    ("DB_PASSWORD: 'correct horse battery'", "correct horse battery", "credential"),
    ("  passwd = s3cr3t!", "s3cr3t!", "credential"),
    ("client_secret=Zx81-qq", "Zx81-qq", "credential"),
    ("GITHUB_TOKEN=abc123def456", "abc123def456", "credential"),
    ("x-api-key: 0f9e8d7c6b5a", "0f9e8d7c6b5a", "credential"),
    ('{"api_key": "live-4242", "user": "ada"}', "live-4242", "credential"),
    ('{"password": "with \\"quotes\\" inside"}', 'with \\"quotes\\" inside', "credential"),
])
def test_each_pattern_replaces_its_secret(text, secret, name):
    out = redact(text)
    assert secret not in out
    assert f"[REDACTED:{name}]" in out


def test_only_the_secret_part_goes():
    assert redact("password=hunter2") == "password=[REDACTED:credential]"
    assert redact('DB_PASSWORD="hunter2 2"') == 'DB_PASSWORD="[REDACTED:credential]"'
    assert redact("postgres://shop:Tr0ub4dor@db/shop") == "postgres://shop:[REDACTED:url_credentials]@db/shop"
    assert redact('{"token": "abcd1234", "n": 2}') == '{"token": "[REDACTED:credential]", "n": 2}'
    assert redact(f"a {PEM} b") == "a [REDACTED:private_key] b"


def test_a_private_key_cut_short_is_redacted_to_the_end():
    head = PEM.split("-----END")[0][:120]
    assert redact("output:\n" + head) == "output:\n[REDACTED:private_key]"


def test_a_json_escaped_private_key_goes_whole():
    text = '{"private_key": "' + PEM.replace("\n", "\\n") + '", "type": "service_account"}'
    out = redact(text)
    assert "MIIEowIBAAKCAQEAu1SU1" not in out and '"type": "service_account"' in out


def test_specific_names_win_over_generic_ones():
    assert redact(ANTHROPIC) == "[REDACTED:anthropic]"
    assert redact(f"OPENAI_API_KEY={OPENAI}") == "OPENAI_API_KEY=[REDACTED:openai]"


@pytest.mark.parametrize("text", [
    "commit 3f2a9c1e4b5d6f7081928374655647382910abcd fixes it",
    "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "request 550e8400-e29b-41d4-a716-446655440000 and 6ba7b810-9dad-11d1-80b4-00c04fd430c8",
    "Reset your password in the settings page; the token count was 1200.",
    "max_tokens: 4096, token_count=12, password_hash stays, tokens = 3",
    "password = getpass()\ntoken = settings.API_TOKEN\nsecret = os.environ['SECRET']\napi_key=${API_KEY}",
    "secret: true\npassword: null\ntoken: none",
    "The task-runner sk-learn scikit build passed; see https://example.com/a:b@c",
    "Bearer of bad news; the bearer token is short",
    "aws s3 ls s3://bucket/AKIA-not-a-key/path",
    "base64 aGVsbG8gd29ybGQgdGhpcyBpcyBqdXN0IHRleHQ= is just text",
    "ordinary prose about keys, secrets and passwords in general.",
])
def test_no_false_positives(text):
    assert redact(text) == text


def test_redaction_is_idempotent_and_leaves_non_strings():
    once = redact(f"{OPENAI} password=hunter2 {PEM} {JWT}")
    assert redact(once) == once
    assert redact(None) is None
    assert redact("") == ""


def test_redact_value_walks_json():
    value = {"headers": {"Authorization": "Bearer abcdefghijklmnop0123", "Accept": "json"},
             "env": [{"name": "DB_PASSWORD", "value": "x"}, f"KEY {AWS_ID}"],
             "api_key": "plain-looking", "apiKey": 123456, "token": True, "secret": None,
             "max_tokens": 100, "note": "password=hunter2", "nested": {"client_secret": "abc"}}
    out = redact_value(value)
    assert out["headers"] == {"Authorization": "Bearer [REDACTED:bearer]", "Accept": "json"}
    assert out["env"][1] == "KEY [REDACTED:aws_access_key_id]"
    assert out["api_key"] == out["apiKey"] == out["nested"]["client_secret"] == "[REDACTED:credential]"
    assert out["token"] is True and out["secret"] is None and out["max_tokens"] == 100
    assert out["note"] == "password=[REDACTED:credential]"
    assert value["api_key"] == "plain-looking"  # the input is not changed


def test_the_documented_table_names_every_pattern():
    doc = (ROOT / "docs" / "capture.md").read_text()
    table = set(re.findall(r"^\| `([a-z_]+)` \|", doc, flags=re.MULTILINE))
    labels = set(LABELS.values())
    assert labels <= table, f"docs/capture.md lacks {sorted(labels - table)}"


# Inputs on which a pattern with an unbounded run before a literal ("[A-Za-z0-9_.-]*?password",
# "[A-Za-z0-9+.-]*://") backtracks quadratically: 32 KB of "a-a-a-…" took 37 s before the
# bounds, so 256 KB would take about 40 minutes; bounded, each is well under a second. The
# server redacts every event it receives, so this is a denial-of-service guard. The limit is
# a hang detector, thousands of times the expected run, not a speed target (bench/ has those).
@pytest.mark.processes
@pytest.mark.parametrize("text", ["a-" * 131072, "x." * 131072, "ab://" * 52000,
                                  "http://" + "a:" * 131072, "password" * 32768 + "=abc",
                                  ";pwd= a" * 40000, "x://" + "@:" * 131072],
                         ids=["dashes", "dots", "schemes", "user-colons", "words",
                              "connection-strings", "ats"])
def test_redaction_stays_linear_on_adversarial_input(text):
    import subprocess
    import sys

    code = ("import sys; from memoryweb_capture.redact import redact; "
            "sys.stdout.write(str(len(redact(sys.stdin.read()))))")
    done = subprocess.run([sys.executable, "-c", code], input=text, capture_output=True,
                          text=True, timeout=120, cwd=ROOT, check=True)
    assert int(done.stdout) >= len(text) // 2


@pytest.mark.processes
@pytest.mark.parametrize("text", ["sk-" * 87382, "sk-proj-" * 32768, "eyJ-" * 65536,
                                  "eyJ" + "a" * 8 + ".eyJ-" * 40000],
                         ids=["sk", "sk-proj", "eyJ", "jwt-heads"])
def test_token_patterns_stay_linear_on_adversarial_input(text):
    """Runs of a token's prefix: 32 KB of "sk-" took 5 s (quadratic), so 256 KB would
    take minutes; a hang detector as above, not a speed target."""
    import subprocess
    import sys

    code = ("import sys; from memoryweb_capture.redact import redact; "
            "sys.stdout.write(str(len(redact(sys.stdin.read()))))")
    done = subprocess.run([sys.executable, "-c", code], input=text, capture_output=True,
                          text=True, timeout=120, cwd=ROOT, check=True)
    assert int(done.stdout) >= len(text) // 2


# Connection strings (shared with the memory gateway's learning, docs/gateway.md): the
# password goes whole, the rest of the string stays readable.
@pytest.mark.parametrize(("text", "secret", "expected"), [
    ("redis://:pa55w0rd@cache:6379/0", "pa55w0rd", "redis://:[REDACTED:url_credentials]@cache:6379/0"),
    ("postgres://admin@srv:p@ss:w0rd@srv.example.com/db", "p@ss:w0rd",
     "postgres://admin@srv:[REDACTED:url_credentials]@srv.example.com/db"),
    ("mongodb+srv://app:Xy7-Long_pw@cluster0.mongodb.net/app", "Xy7-Long_pw",
     "mongodb+srv://app:[REDACTED:url_credentials]@cluster0.mongodb.net/app"),
    ("jdbc:oracle:thin:scott/tiger99@db:1521:orcl", "tiger99",
     "jdbc:oracle:thin:scott/[REDACTED:url_credentials]@db:1521:orcl"),
    ("Server=tcp:db;Database=x;User Id=app;Password=correct horse battery;Encrypt=true",
     "horse", "Server=tcp:db;Database=x;User Id=app;Password=[REDACTED:credential];Encrypt=true"),
    ('conn = "Host=db;Username=app;Pwd=two words"', "two words",
     'conn = "Host=db;Username=app;Pwd=[REDACTED:credential]"'),
    ("jdbc:postgresql://db/app?user=app&password=s3cret", "s3cret",
     "jdbc:postgresql://db/app?user=app&password=[REDACTED:credential]"),
])
def test_connection_strings_lose_their_password(text, secret, expected):
    out = redact(text)
    assert secret not in out
    assert out == expected
    assert redact(out) == out


def test_semicolons_in_prose_are_no_connection_string():
    text = "We met on Monday; the password policy was discussed; nothing else."
    assert redact(text) == text
