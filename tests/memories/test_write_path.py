"""The write path (apps/memories/writes.py) is the one place memories are written.

No other module of the server writes ``Memory``, ``MemoryVersion`` or ``MemoryTag`` rows,
keyword-index rows (``lexical.add/replace/remove``) or vector-outbox rows: a static check
over every module under ``apps/`` and ``memoryweb/`` (migrations aside; imports inside
functions, aliases and relative imports too) fails when one does. It is a guard, not a
proof: it sees writes spelled on a model's manager (``Memory.objects…update()``) or on the
keyword module, not a queryset kept in a variable first, nor an instance's ``save()``.

And the handle's own rule: the work a write queues (indexing, events) runs when its
``writes.atomic()`` block is left, never after a rollback, and a write needs its block.
"""

from __future__ import annotations

import ast
import shutil
import uuid
from pathlib import Path

import pytest

from apps.core.roles import Role
from apps.memories import indexing, writes
from apps.memories.models import IndexOutbox, Memory, content_hash
from apps.tenancy.principal import Principal

ROOT = Path(__file__).resolve().parents[2]
#: The write path: the handle, and the moves it delegates to (a namespace merge).
WRITE_PATH = ("apps/memories/writes.py", "apps/memories/write_moves.py")
SCANNED = ("apps", "memoryweb")

_MODELS = "apps.memories.models"
_ROW_WRITES = frozenset({"create", "bulk_create", "bulk_update", "update", "delete",
                         "get_or_create", "update_or_create"})
#: Model -> the manager/queryset methods that write it outside the write path.
RULES = {
    f"{_MODELS}.Memory": _ROW_WRITES,
    f"{_MODELS}.MemoryVersion": _ROW_WRITES,
    f"{_MODELS}.MemoryTag": _ROW_WRITES,
    # Creating outbox rows is the write path's; settling them is the drain's (indexing.py).
    f"{_MODELS}.IndexOutbox": frozenset({"create", "bulk_create", "get_or_create",
                                         "update_or_create"}),
}
#: Building one of these is writing one (an outbox row exists to be inserted).
CONSTRUCTED = frozenset({f"{_MODELS}.IndexOutbox"})
KEYWORD_WRITES = frozenset(f"apps.memories.lexical.{name}" for name in ("add", "replace", "remove"))
MANAGERS = frozenset({"objects", "_default_manager", "_base_manager"})

#: Modules that may write memory rows without the write path, and why. Keep it short:
#: a new entry needs a reason as good as these.
EXEMPT = {
    "apps/memories/recall_stats.py": "recall statistics (access_count, last_recalled_at): "
    "counters a recall bumps, not a change of the memory (no version, outbox row or event)",
    "apps/memories/encrypt_existing.py": "encrypt_namespace re-seals rows in place: the same "
    "text, versions and hashes stored sealed under the namespace's key, not a change of the "
    "memory (no version, outbox row or event; the keyword index is rebuilt whole)",
}


# --- the check --------------------------------------------------------------------------

def _module_of(relative: Path) -> str:
    return ".".join(relative.with_suffix("").parts)


def _aliases(tree: ast.AST, module: str) -> dict[str, str]:
    """Local name -> the dotted name it stands for, from every import of the module."""
    package = module.rsplit(".", 1)[0] if not module.endswith("__init__") else module[: -len(".__init__")]
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    names[top] = top
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                names[alias.asname or alias.name] = f"{base}.{alias.name}"
    return names


def _dotted(node: ast.AST, names: dict[str, str]) -> str | None:
    """``a.b.c`` spelled in the source, resolved through the module's imports."""
    if isinstance(node, ast.Name):
        return names.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value, names)
        return f"{base}.{node.attr}" if base else None
    return None


def _model_written(call: ast.Call, names: dict[str, str]) -> str | None:
    """The model a ``<Model>.objects…<method>(…)`` call writes, if it is a write."""
    if not isinstance(call.func, ast.Attribute):
        return None
    method, node = call.func.attr, call.func.value
    while isinstance(node, ast.Call | ast.Attribute | ast.Subscript):
        if isinstance(node, ast.Attribute) and node.attr in MANAGERS:
            model = _dotted(node.value, names)
            return model if model in RULES and method in RULES[model] else None
        node = node.func if isinstance(node, ast.Call) else node.value
    return None


def check_source(source: str, path: str) -> list[str]:
    """``path:line: what`` for every memory write in one module's source."""
    tree = ast.parse(source, filename=path)
    names = _aliases(tree, _module_of(Path(path)))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        called = _dotted(node.func, names)
        model = _model_written(node, names)
        if model is not None:
            found.append((node.lineno, f"writes {model.rsplit('.', 1)[1]} rows (.{node.func.attr})"))
        elif called in KEYWORD_WRITES:
            found.append((node.lineno, f"writes the keyword index ({called})"))
        elif called in CONSTRUCTED:
            found.append((node.lineno, f"builds an {called.rsplit('.', 1)[1]} row"))
    return [f"{path}:{line}: {what}" for line, what in sorted(found)]


def violations(root: Path, exempt: dict[str, str] = EXEMPT) -> list[str]:
    """Every memory write outside the write path (and the exempt modules) under ``root``."""
    found = []
    for top in SCANNED:
        for path in sorted((root / top).rglob("*.py")):
            relative = path.relative_to(root)
            if "migrations" in relative.parts or relative.as_posix() in {*WRITE_PATH, *exempt}:
                continue
            found += check_source(path.read_text(), relative.as_posix())
    return found


# --- the rule holds ---------------------------------------------------------------------

def test_nothing_but_the_write_path_writes_memories():
    assert violations(ROOT) == [], (
        "memory rows, versions, tags, keyword index or outbox rows written outside "
        "apps/memories/writes.py: write them through the write path (docs/architecture.md, "
        "The write path)")


def test_every_exemption_is_still_needed():
    for path, reason in EXEMPT.items():
        assert reason and check_source((ROOT / path).read_text(), path), (
            f"{path} no longer writes memory rows: drop its exemption")


# --- the check catches what it must -----------------------------------------------------

@pytest.mark.parametrize("source", [
    "from apps.memories.models import Memory\nMemory.objects.filter(pk=1).update(kind='x')\n",
    "from apps.memories.models import Memory as M\ndef f():\n    M.objects.bulk_create([])\n",
    "def f():\n    from apps.memories.models import Memory\n    Memory.objects.all().delete()\n",
    "from apps.memories.models import Memory\nMemory._default_manager.create(content='x')\n",
    "from apps.memories.models import Memory\nMemory.objects.live().filter(a=1).bulk_update([], ['kind'])\n",
    "from apps.memories import models\nmodels.MemoryVersion.objects.create(version=2)\n",
    "import apps.memories.models as m\nm.MemoryVersion.objects.bulk_create([])\n",
    "from apps.memories.models import MemoryTag\nMemoryTag.objects.filter(tag='x').delete()\n",
    "from apps.memories.models import IndexOutbox\nIndexOutbox.objects.bulk_create([])\n",
    "from apps.memories.models import IndexOutbox\nrow = IndexOutbox(namespace_id=1, memory_id=2)\n",
    "from apps.memories import lexical\nlexical.add(1, [])\n",
    "from apps.memories import lexical as keywords\nkeywords.replace(1, [])\n",
    "from apps.memories.lexical import remove\nremove(1, [])\n",
    "import apps.memories.lexical\napps.memories.lexical.remove(1, [])\n",
    "from .models import Memory\nMemory.objects.create(content='x')\n",
])
def test_each_spelling_of_a_memory_write_is_caught(source):
    assert len(check_source(source, "apps/memories/planted.py")) == 1


@pytest.mark.parametrize("source", [
    "from apps.memories.models import Memory\nMemory.objects.filter(pk=1).count()\n",
    "from apps.memories.models import Memory\nMemory.objects.select_for_update().get(pk=1)\n",
    "from apps.memories.models import IndexOutbox\nIndexOutbox.objects.filter(pk=1).delete()\n",
    "from apps.memories import lexical\nlexical.search(1, None, 5)\nlexical.drop(1)\n",
    "from apps.tenancy.models import Namespace\nNamespace.objects.filter(pk=1).update(slug='x')\n",
    "memories = {}\nmemories.update(a=1)\n",
])
def test_reads_and_other_writes_pass(source):
    assert check_source(source, "apps/memories/planted.py") == []


def test_a_planted_module_fails_the_check_and_the_write_path_does_not(tmp_path):
    for relative in (*WRITE_PATH, "apps/memories/__init__.py"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / relative, tmp_path / relative)
    (tmp_path / "memoryweb").mkdir()
    assert violations(tmp_path) == []  # the write path itself may write
    (tmp_path / "apps/dashboard").mkdir()
    (tmp_path / "apps/dashboard/shortcut.py").write_text(
        "from apps.memories import lexical\nfrom apps.memories.models import MemoryTag\n\n\n"
        "def retag(memory):\n"
        "    MemoryTag.objects.filter(memory=memory).delete()\n"
        "    lexical.replace(memory.namespace_id, [memory.pk])\n")
    assert violations(tmp_path) == [
        "apps/dashboard/shortcut.py:6: writes MemoryTag rows (.delete)",
        "apps/dashboard/shortcut.py:7: writes the keyword index (apps.memories.lexical.replace)",
    ]


# --- the handle -------------------------------------------------------------------------

@pytest.fixture
def indexed(monkeypatch) -> list[list[str]]:
    """The ids each inline index call received (instead of indexing them)."""
    calls: list[list[str]] = []
    monkeypatch.setattr(indexing, "index_inline", lambda namespace, memories, *a, **kw:
                        calls.append([str(m.pk) for m in memories]))
    return calls


def _new(alpha, content: str) -> Memory:
    return Memory(id=uuid.uuid4(), namespace=alpha, content=content,
                  content_hash=content_hash(content))


def _principal(alpha) -> Principal:
    return Principal(label="key:a", agent_id="a", role=Role.AGENT, namespace_id=alpha.pk,
                     namespace=alpha)


def _ignore(*args: object) -> None:
    return None


def test_queued_work_runs_when_the_block_is_left(alpha, indexed):
    memory = _new(alpha, "The ferry leaves at noon.")
    with writes.atomic() as write:
        write.create(alpha, [memory], None, actor=_principal(alpha), audit=_ignore)
        assert indexed == []  # not while the transaction is open
    assert indexed == [[str(memory.pk)]]
    assert IndexOutbox.objects.filter(memory_id=memory.pk).exists()  # the index was stubbed


class _Abort(Exception):
    pass


def test_a_rolled_back_write_queues_nothing(alpha, indexed):
    memory = _new(alpha, "The ferry leaves at one.")
    with pytest.raises(_Abort), writes.atomic() as write:
        write.create(alpha, [memory], None, actor=_principal(alpha), audit=_ignore)
        raise _Abort
    assert indexed == []
    assert not Memory.objects.filter(pk=memory.pk).exists()
    assert not IndexOutbox.objects.filter(memory_id=memory.pk).exists()


def test_a_write_needs_its_block(alpha, indexed):
    with writes.atomic() as write:
        pass
    with pytest.raises(RuntimeError, match=r"outside its writes\.atomic"):
        write.create(alpha, [_new(alpha, "Too late.")], None, actor=_principal(alpha),
                     audit=_ignore)
