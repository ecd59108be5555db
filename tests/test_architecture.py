"""The architecture's rules are checked, and the checks themselves can fail.

``make lint`` runs import-linter (the apps' layers, pyproject.toml) and
tools/private_imports.py on the tree. Here both also run on a copy of ``apps/`` with a
forbidden import planted — inside a function, where a reviewer's eye slips — to show the
contract catches what it promises to (issue 18's acceptance).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

#: Each test runs the checkers as the commands make lint runs (short subprocesses).
pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _copy_apps(tmp_path: Path) -> Path:
    """apps/ (Python files only) and the contract, in a directory of their own."""
    shutil.copytree(ROOT / "apps", tmp_path / "apps",
                    ignore=shutil.ignore_patterns("__pycache__", "*.html", "*.json", "*.js"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--config", str(cwd / "pyproject.toml")],
                          cwd=cwd, env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def apps_copy(tmp_path_factory) -> Path:
    return _copy_apps(tmp_path_factory.mktemp("layers"))


def test_the_tree_keeps_its_layers(apps_copy):
    result = _lint_imports(apps_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 1 kept, 0 broken" in result.stdout


def test_an_upward_import_inside_a_function_breaks_the_contract(apps_copy):
    planted = apps_copy / "apps" / "core" / "planted.py"
    planted.write_text("def leak():\n    from apps.memories import models\n\n    return models\n")
    try:
        result = _lint_imports(apps_copy)
    finally:
        planted.unlink()
    assert result.returncode != 0
    assert "apps.core.planted -> apps.memories.models" in result.stdout


def test_no_app_takes_another_apps_private_name():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "private_imports.py"), str(ROOT)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_private_name_taken_from_another_app_is_reported(apps_copy):
    planted = apps_copy / "apps" / "live" / "planted.py"
    planted.write_text("from apps.memories import indexing\n"
                       "from apps.memories.lexical import _hidden\n\n"
                       "def use():\n    return indexing._queue, _hidden\n")
    try:
        result = subprocess.run([sys.executable, str(ROOT / "tools" / "private_imports.py"),
                                 str(apps_copy)], capture_output=True, text=True, timeout=120)
    finally:
        planted.unlink()
    assert result.returncode == 1
    assert "apps/live/planted.py:2: imports apps.memories.lexical._hidden" in result.stdout
    assert "apps/live/planted.py:5: uses apps.memories.indexing._queue" in result.stdout
