"""Settings: read when used (override_settings reaches every caller), nothing created at
import, the data directory and its generated key made by the entry points, secrets from
files (FileAwareEnv), and a production configuration that ``check --deploy`` passes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.http import HttpResponse
from django.middleware.security import SecurityMiddleware
from django.test import RequestFactory, override_settings

from apps.core import conf
from apps.core.errors import InvalidInput
from apps.live import consumers
from apps.memories import schemas
from tests.servers import ROOT


def _limits(**changes):
    return {**settings.MEMORYWEB_LIMITS, **changes}


def _live(**changes):
    return {**settings.MEMORYWEB_LIVE, **changes}


# --- Read at call time ------------------------------------------------------------------


def test_memory_limits_follow_override_settings():
    """Validation read MEMORYWEB_LIMITS once, at import: an override changed nothing."""
    with override_settings(MEMORYWEB_LIMITS=_limits(max_content_bytes=10, max_metadata_bytes=20,
                                                     max_query_bytes=8)):
        with pytest.raises(InvalidInput) as content:
            schemas.validate(schemas.MemoryInput, {"content": "x" * 11})
        assert content.value.field == "content"
        with pytest.raises(InvalidInput) as metadata:
            schemas.validate(schemas.MemoryInput, {"content": "ok", "metadata": {"k": "v" * 20}})
        assert metadata.value.field == "metadata" and "the limit is 20" in str(metadata.value)
        with pytest.raises(InvalidInput) as query:
            schemas.validate(schemas.RecallInput, {"query": "q" * 9})
        assert query.value.field == "query"
    # And back to the configured limits afterwards.
    assert schemas.validate(schemas.MemoryInput, {"content": "x" * 11})["content"] == "x" * 11


def test_the_websocket_rate_follows_override_settings():
    """The consumer's token bucket read MEMORYWEB_LIVE once, at import."""
    consumer = consumers.LiveConsumer()
    with override_settings(MEMORYWEB_LIVE=_live(burst=3, messages_per_second=5.0)):
        consumer.tokens, consumer.refilled = 0.0, time.monotonic() - 10
        assert consumer._within_rate()
        assert consumer.tokens == pytest.approx(2.0)  # refilled to the burst of 3, one taken
        assert consumers.LIMITS["burst"] == 3


def test_typed_accessors_read_the_current_settings():
    assert conf.limits().max_k == settings.MEMORYWEB_LIMITS["max_k"]
    assert isinstance(conf.live().recheck_seconds, float)
    with override_settings(MEMORYWEB_LIMITS=_limits(max_k=7),
                           MEMORYWEB_FUSION_WEIGHTS={**settings.MEMORYWEB_FUSION_WEIGHTS,
                                                     "lexical": 0.5}):
        assert conf.limits().max_k == 7
        assert conf.fusion_weights().lexical == 0.5
    assert conf.env_names("MEMORYWEB_LIMITS")["max_k"] == "MEMORYWEB_MAX_K"
    assert conf.env_names("MEMORYWEB_LIMITS")["max_tags"] is None  # fixed, no variable


def test_a_setting_view_writes_through_to_the_current_dict(monkeypatch):
    """Tests set one entry with ``monkeypatch.setitem(consumers.LIMITS, ...)``; the view
    writes into the settings dict, as the dict itself did, and the undo restores it."""
    before = settings.MEMORYWEB_LIVE["send_queue"]
    monkeypatch.setitem(consumers.LIMITS, "send_queue", 2)
    assert settings.MEMORYWEB_LIVE["send_queue"] == 2 and conf.live().send_queue == 2
    monkeypatch.undo()
    assert settings.MEMORYWEB_LIVE["send_queue"] == before
    assert dict(consumers.LIMITS) == settings.MEMORYWEB_LIVE


def test_rates_parse_like_the_budget():
    assert conf.parse_rate("6000/min") == (6000, 60)
    assert conf.parse_rate(" 20 / S ") == (20, 1)
    assert conf.parse_rate("") is None
    with pytest.raises(ValueError, match="not a rate"):
        conf.parse_rate("lots")
    with override_settings(MEMORYWEB_RATE_LIMIT="100000/day"):
        assert conf.rate_limit() == (100000, 86400)


# --- The data directory and the secret key -----------------------------------------------


def _clean_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MEMORYWEB_", "DJANGO_", "SECRET_KEY", "STATIC_ROOT"))
           and k not in {"DATABASE_URL", "CHROMA_URL", "REDIS_URL", "DEBUG"}}
    env.update({"DJANGO_SETTINGS_MODULE": "memoryweb.settings",
                "MEMORYWEB_DATA_DIR": str(tmp_path / "data"), **extra})
    return env


@pytest.mark.processes
def test_importing_the_settings_creates_nothing(tmp_path):
    """It created the data directory, the static root and a secret key file."""
    done = subprocess.run([sys.executable, "-c", "import memoryweb.settings as s; "
                           "print(repr(s.SECRET_KEY), s.MEMORYWEB_GENERATED_SECRET_KEY)"],
                          cwd=ROOT, env=_clean_env(tmp_path), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["''", str(tmp_path / "data" / "secret_key")]
    assert not (tmp_path / "data").exists()


def test_prepare_data_dir_generates_the_key_once(tmp_path):
    data = tmp_path / "data"
    key_file = data / "secret_key"
    with override_settings(DATA_DIR=data, STATIC_ROOT=data / "static",
                           MEMORYWEB_GENERATED_SECRET_KEY=key_file):
        conf.prepare_data_dir()
        first = settings.SECRET_KEY
        assert (data / "static").is_dir()
        assert key_file.read_text() == first and len(first) >= 50
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        conf.prepare_data_dir()  # every later start reuses it
        assert settings.SECRET_KEY == first
    assert settings.SECRET_KEY != first
    assert sorted(p.name for p in data.iterdir()) == ["secret_key", "static"]  # no leftovers


def test_prepare_data_dir_leaves_a_given_key_alone(tmp_path):
    with override_settings(DATA_DIR=tmp_path / "data", STATIC_ROOT=tmp_path / "static",
                           MEMORYWEB_GENERATED_SECRET_KEY=None, SECRET_KEY="given" * 10):
        conf.prepare_data_dir()
        assert settings.SECRET_KEY == "given" * 10
    assert not (tmp_path / "data" / "secret_key").exists()


def test_prepare_data_dir_refuses_a_data_dir_that_is_a_file(tmp_path):
    (tmp_path / "data").write_text("not a directory")
    with override_settings(DATA_DIR=tmp_path / "data"), \
            pytest.raises(Exception, match=r"MEMORYWEB_DATA_DIR='.*data' is not a directory"):
        conf.prepare_data_dir()


@pytest.mark.processes
def test_a_fresh_machine_gets_one_key_that_every_start_reuses(tmp_path):
    """``make run`` with no variables: manage.py creates the data directory and the key;
    the next process reads the same key."""
    env = _clean_env(tmp_path)
    show = "from django.conf import settings; print(settings.SECRET_KEY)"
    keys = [subprocess.run([sys.executable, "manage.py", "shell", "-v0", "-c", show], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120, check=True).stdout.strip()
            for _ in range(2)]
    assert keys[0] == keys[1] == (tmp_path / "data" / "secret_key").read_text()
    assert (tmp_path / "data" / "static").is_dir()


@pytest.mark.processes
def test_secrets_come_from_files_without_their_newline(tmp_path):
    (tmp_path / "key").write_text("k" * 20 + "-from-a-file-" + "z" * 20 + "\n")
    (tmp_path / "token").write_text("metrics-token\n")
    env = _clean_env(tmp_path, MEMORYWEB_ENV="production", SECRET_KEY_FILE=str(tmp_path / "key"),
                     MEMORYWEB_METRICS_TOKEN_FILE=str(tmp_path / "token"),
                     MEMORYWEB_RECALL_MODE_FILE=str(tmp_path / "mode"))
    (tmp_path / "mode").write_text("lexical")
    done = subprocess.run([sys.executable, "-c", "import memoryweb.settings as s; print(repr("
                           "[s.SECRET_KEY, s.MEMORYWEB_METRICS_TOKEN, s.MEMORYWEB_RECALL_MODE]))"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == repr(["k" * 20 + "-from-a-file-" + "z" * 20, "metrics-token",
                                        "lexical"])


@pytest.mark.processes
def test_production_without_a_secret_key_does_not_start(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import memoryweb.settings"], cwd=ROOT,
                          env=_clean_env(tmp_path, MEMORYWEB_ENV="production"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "SECRET_KEY (or SECRET_KEY_FILE) must be set when MEMORYWEB_ENV=production" in done.stderr


# --- Production: check --deploy ------------------------------------------------------------


@pytest.mark.processes
def test_check_deploy_is_clean_with_the_production_settings(tmp_path):
    """The variables docs/deploy.md sets (embedded: no DATABASE_URL, CHROMA_URL, REDIS_URL
    to reach), and nothing else: no warning, no error."""
    (tmp_path / "secret_key").write_text("Kq3" + "x7Lm9-vB2_nR8tW4yZ1" * 3 + "\n")
    env = _clean_env(tmp_path, MEMORYWEB_ENV="production",
                     SECRET_KEY_FILE=str(tmp_path / "secret_key"),
                     ALLOWED_HOSTS="memory.example.org",
                     CSRF_TRUSTED_ORIGINS="https://memory.example.org")
    script = ("import json; from django.conf import settings; "
              "from django.core.management import call_command; "
              "call_command('check', deploy=True, fail_level='WARNING'); "
              "print(json.dumps({name: getattr(settings, name) for name in ("
              "'SECURE_SSL_REDIRECT', 'SECURE_REDIRECT_EXEMPT', 'SECURE_HSTS_SECONDS', "
              "'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'DEBUG')}))")
    done = subprocess.run([sys.executable, "manage.py", "shell", "-v0", "-c", script], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    output = done.stdout.strip().splitlines()
    assert output[0] == "System check identified no issues (0 silenced)."
    production = json.loads(output[-1])
    assert production["SECURE_SSL_REDIRECT"] and production["SECURE_HSTS_SECONDS"] >= 31_536_000
    assert production["SESSION_COOKIE_SECURE"] and production["CSRF_COOKIE_SECURE"]
    assert production["DEBUG"] is False
    # Plain HTTP is sent to HTTPS, except the probes and /metrics that a load balancer
    # and Prometheus call on each process's own port.
    with override_settings(SECURE_SSL_REDIRECT=True,
                           SECURE_REDIRECT_EXEMPT=production["SECURE_REDIRECT_EXEMPT"]):
        middleware = SecurityMiddleware(lambda request: HttpResponse())
        factory = RequestFactory()
        for path in ("/health", "/readiness", "/metrics"):
            assert middleware.process_request(factory.get(path)) is None, path
        for path in ("/admin/", "/api/v1/recall", "/healthz"):
            assert middleware.process_request(factory.get(path)).status_code == 301, path
