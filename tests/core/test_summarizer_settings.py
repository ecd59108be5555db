"""The summarizer's settings (memoryweb/settings.py, apps/core/conf.py, apps/core/checks.py):
``openai`` without its URL, model or key stops the start naming the variable (it fails
closed); bad numbers are errors; the key may come from a file and never shows in a repr."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from apps.core import checks, conf
from tests.servers import ROOT

OPENAI = {"MEMORYWEB_SUMMARIZER": "openai", "MEMORYWEB_SUMMARIZER_URL": "https://api.example.com/v1",
          "MEMORYWEB_SUMMARIZER_MODEL": "gpt-test", "MEMORYWEB_SUMMARIZER_KEY": "sk-secret-value-123"}


def _messages(**overrides) -> list:
    with override_settings(**overrides):
        return [m for m in run_checks(tags=[checks.TAG]) if m.id.startswith("memoryweb.")]


def test_the_defaults_and_a_complete_provider_pass():
    assert _messages() == []
    assert _messages(**OPENAI) == []
    assert _messages(**{**OPENAI, "MEMORYWEB_SUMMARIZER_URL": "http://127.0.0.1:8080/v1"}) == []


BAD = [
    ({"MEMORYWEB_SUMMARIZER": "gpt"}, ["MEMORYWEB_SUMMARIZER", "extractive or openai", "'gpt'"]),
    ({**OPENAI, "MEMORYWEB_SUMMARIZER_KEY": ""}, ["MEMORYWEB_SUMMARIZER_KEY", "_KEY_FILE"]),
    ({**OPENAI, "MEMORYWEB_SUMMARIZER_URL": ""}, ["needs MEMORYWEB_SUMMARIZER_URL"]),
    ({**OPENAI, "MEMORYWEB_SUMMARIZER_MODEL": ""}, ["needs MEMORYWEB_SUMMARIZER_MODEL"]),
    ({**OPENAI, "MEMORYWEB_SUMMARIZER_URL": "api.openai.com/v1"},
     ["MEMORYWEB_SUMMARIZER_URL must be an http(s) URL", "'api.openai.com/v1'"]),
    ({**OPENAI, "MEMORYWEB_SUMMARIZER_URL": "https://user:pw@llm.example.com/v1"},
     ["MEMORYWEB_SUMMARIZER_URL must not hold credentials"]),
    ({"MEMORYWEB_SUMMARIZER_TIMEOUT": 0.0}, ["MEMORYWEB_SUMMARIZER_TIMEOUT", "above 0"]),
    ({"MEMORYWEB_SUMMARIZER_TIMEOUT": float("inf")}, ["MEMORYWEB_SUMMARIZER_TIMEOUT", "finite"]),
    ({"MEMORYWEB_SUMMARIZER_RETRIES": -1}, ["MEMORYWEB_SUMMARIZER_RETRIES", "0..20", "-1"]),
    ({"MEMORYWEB_SUMMARIZER_RETRIES": 2.5}, ["MEMORYWEB_SUMMARIZER_RETRIES", "whole number"]),
    ({"MEMORYWEB_SUMMARIZER_BACKOFF": -0.5}, ["MEMORYWEB_SUMMARIZER_BACKOFF", "0..600"]),
    ({"MEMORYWEB_SUMMARIZER_MAX_INPUT_CHARS": 10},
     ["MEMORYWEB_SUMMARIZER_MAX_INPUT_CHARS", "at least 1000", "10."]),
]


@pytest.mark.parametrize(("overrides", "words"), BAD,
                         ids=[f"{i}-{list(o)[-1]}" for i, (o, _) in enumerate(BAD)])
def test_each_bad_value_is_an_error_naming_it(overrides, words):
    messages = _messages(**overrides)
    assert [m.id for m in messages] == ["memoryweb.E009"], [str(m) for m in messages]
    for word in words:
        assert word in messages[0].msg, messages[0].msg


def test_the_key_is_never_in_a_message():
    for overrides, _ in BAD:
        for message in _messages(**{**OPENAI, **overrides}):
            assert OPENAI["MEMORYWEB_SUMMARIZER_KEY"] not in f"{message.msg} {message.hint}"


def test_openai_with_nothing_set_lists_each_missing_setting():
    messages = _messages(MEMORYWEB_SUMMARIZER="openai", MEMORYWEB_SUMMARIZER_URL="",
                         MEMORYWEB_SUMMARIZER_MODEL="", MEMORYWEB_SUMMARIZER_KEY="")
    assert [m.id for m in messages] == ["memoryweb.E009"] * 3
    joined = " ".join(m.msg for m in messages)
    for name in ("MEMORYWEB_SUMMARIZER_URL", "MEMORYWEB_SUMMARIZER_MODEL", "MEMORYWEB_SUMMARIZER_KEY"):
        assert name in joined


def test_plain_http_to_another_machine_is_a_warning_only():
    messages = _messages(**{**OPENAI, "MEMORYWEB_SUMMARIZER_URL": "http://llm.lan:8000/v1"})
    assert [m.id for m in messages] == ["memoryweb.W009"]
    assert not messages[0].is_serious()
    with override_settings(**{**OPENAI, "MEMORYWEB_SUMMARIZER_URL": "http://llm.lan:8000/v1"}):
        checks.refuse_to_start()  # a warning does not stop the start


def test_manage_py_check_and_the_server_refuse_a_provider_without_key():
    without_key = {**OPENAI, "MEMORYWEB_SUMMARIZER_KEY": ""}
    with override_settings(**without_key), \
            pytest.raises(SystemCheckError, match=r"memoryweb\.E009.*MEMORYWEB_SUMMARIZER_KEY"):
        call_command("check")
    with override_settings(**without_key), \
            pytest.raises(ImproperlyConfigured, match=r"memoryweb\.E009"):
        checks.refuse_to_start()


def test_the_typed_settings_follow_overrides_and_hide_the_key():
    assert conf.summarizer().name == "extractive"
    with override_settings(**OPENAI, MEMORYWEB_SUMMARIZER_RETRIES=5):
        config = conf.summarizer()
        assert (config.name, config.model, config.retries) == ("openai", "gpt-test", 5)
        assert config.key == OPENAI["MEMORYWEB_SUMMARIZER_KEY"]
        assert OPENAI["MEMORYWEB_SUMMARIZER_KEY"] not in repr(config)


@pytest.mark.processes
def test_the_key_can_come_from_a_file(tmp_path):
    """FileAwareEnv: MEMORYWEB_SUMMARIZER_KEY_FILE names a file holding the key (its
    trailing newline is no part of it); the numbers come from the environment typed."""
    key_file = tmp_path / "summarizer-key"
    key_file.write_text("sk-from-file-456\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYWEB_SUMMARIZER")}
    env.update({"DJANGO_SETTINGS_MODULE": "memoryweb.settings", "MEMORYWEB_ENV": "local",
                "MEMORYWEB_DATA_DIR": str(tmp_path / "data"),
                "MEMORYWEB_SUMMARIZER_KEY_FILE": str(key_file),
                "MEMORYWEB_SUMMARIZER_TIMEOUT": "2.5", "MEMORYWEB_SUMMARIZER_RETRIES": "4"})
    done = subprocess.run([sys.executable, "-c", "import memoryweb.settings as s; print(repr(("
                           "s.MEMORYWEB_SUMMARIZER, s.MEMORYWEB_SUMMARIZER_KEY, "
                           "s.MEMORYWEB_SUMMARIZER_TIMEOUT, s.MEMORYWEB_SUMMARIZER_RETRIES)))"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == repr(("extractive", "sk-from-file-456", 2.5, 4))
