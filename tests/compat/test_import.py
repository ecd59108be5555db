"""`manage.py import_memories`: MemoryWeb's export round trip (every field), mem0 dumps,
idempotent re-runs, bad records reported by line and skipped, the summary."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.audit.models import AuditEntry
from apps.core.roles import Role
from apps.memories import services
from apps.memories.models import ExternalId, Memory, MemoryVersion
from apps.tenancy.principal import Principal
from apps.tenancy.services import create_namespace

ROOT = Principal(label="system:test", agent_id="", role=Role.SYSTEM)
ORIGINAL = "The deploy key rotates every Monday."
NEAR = "The deploy key rotates every monday"  # a near-duplicate of ORIGINAL (MiniLM 0.96)


def _import(namespace: str, fmt: str, path, *extra) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("import_memories", "--namespace", namespace, "--format", fmt, str(path),
                     "--no-progress", *extra, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue(), err.getvalue()


def _export(namespace: str, path) -> list[dict]:
    call_command("export", "--namespace", namespace, "-o", str(path), stderr=io.StringIO(),
                 stdout=io.StringIO())
    return [json.loads(line) for line in path.read_text().splitlines()]


def _memories(lines: list[dict]) -> list[dict]:
    return [row for row in lines if row["type"] == "memory"]


@pytest.fixture
def rich_alpha(alpha, agent, team_admin, tmp_path):
    """alpha with every field in use: kinds, tags, metadata, session, importance,
    confidence, expiry, validity window, occurred_at, an edit history, recall statistics,
    a near-duplicate link and an id from seed 000."""
    soon = (timezone.now() + dt.timedelta(days=30)).isoformat()
    first = agent.post("/api/v1/memories", {
        "content": ORIGINAL, "kind": "procedure", "tags": ["ops", "keys"],
        "metadata": {"subject_id": "bob", "source": {"tool": "chat", "n": 3}},
        "session_id": "s-1", "importance": 0.9, "confidence": 0.7, "expires_at": soon,
        "valid_from": "2024-01-01T00:00:00Z", "valid_until": "2030-01-01T00:00:00Z",
        "occurred_at": "2024-02-03T04:05:06Z"}).json()
    near = agent.post("/api/v1/memories", {"content": NEAR}).json()
    assert near["near_duplicate_of"] == first["id"]
    edited = agent.post("/api/v1/memories", {"content": "Alice likes green tea",
                                             "kind": "preference"}).json()
    team_admin.patch(f"/api/v1/memories/{edited['id']}", {"content": "Alice likes jasmine tea",
                                                          "tags": ["drinks"]})
    team_admin.patch(f"/api/v1/memories/{edited['id']}", {"importance": 0.2})
    Memory.objects.filter(pk=edited["id"]).update(
        access_count=7, last_recalled_at=timezone.now() - dt.timedelta(hours=1))
    data = tmp_path / "cmm"
    data.mkdir()
    (data / "memories.json").write_text(json.dumps([
        {"id": 42, "gist": "The rate limit is 300 req/min", "importance": 2.0,
         "metadata": {"agent_id": "agent-47"}}]))
    assert _import("alpha", "cmm", data)[0] == 0
    return alpha


def test_export_import_export_keeps_every_field(rich_alpha, tmp_path):
    before = _export("alpha", tmp_path / "first.jsonl")
    assert len(_memories(before)) == 4
    assert sum(len(m["versions"]) for m in _memories(before)) == 2
    services.delete_namespace(ROOT, rich_alpha)
    create_namespace("alpha")
    code, out, err = _import("alpha", "jsonl", tmp_path / "first.jsonl")
    assert code == 0, err
    assert "4 imported, 0 already there" in out
    after = _export("alpha", tmp_path / "second.jsonl")
    assert _memories(after) == _memories(before)  # every field, ids and versions included
    assert Memory.objects.get(content=NEAR).near_duplicate_of.content == ORIGINAL
    # It is findable: the keyword and vector indexes were written.
    hits = services.recall(ROOT, {"query": "jasmine tea", "k": 1}, namespace="alpha").hits
    assert hits[0].memory.content == "Alice likes jasmine tea"
    # The import is audited as such, record ids and no content.
    entry, links = AuditEntry.objects.filter(operation="memory.import").order_by("-seq")[:2][::-1]
    assert len(entry.record_ids) == 4 and "jasmine" not in json.dumps(entry.summary)
    assert links.summary == {"near_duplicates_linked": 1}  # the relinking is audited too


def test_reimport_creates_nothing_new(rich_alpha, tmp_path):
    _export("alpha", tmp_path / "export.jsonl")
    counts = Memory.objects.count(), MemoryVersion.objects.count(), ExternalId.objects.count()
    code, out, _ = _import("alpha", "jsonl", tmp_path / "export.jsonl")
    assert code == 0 and "0 imported, 4 already there" in out
    assert (Memory.objects.count(), MemoryVersion.objects.count(),
            ExternalId.objects.count()) == counts
    assert AuditEntry.objects.filter(operation="memory.import").count() == 1  # seed 000's


def test_import_into_another_namespace_keeps_fields_under_new_ids(rich_alpha, beta, tmp_path):
    before = {m["content"]: m for m in _memories(_export("alpha", tmp_path / "a.jsonl"))}
    code, out, _ = _import("beta", "jsonl", tmp_path / "a.jsonl")
    assert code == 0 and "4 imported" in out
    copied = {m["content"]: m for m in _memories(_export("beta", tmp_path / "b.jsonl"))}
    assert set(copied) == set(before)
    for content, original in before.items():
        copy = copied[content]
        assert copy["id"] != original["id"] and copy["namespace"] == "beta"
        assert copy["external_ids"] == {**original.get("external_ids", {}),
                                        "memoryweb": original["id"]}
        same = {k: v for k, v in copy.items()
                if k not in ("id", "namespace", "external_ids", "near_duplicate_of")}
        assert same == {k: v for k, v in original.items() if k in same}
    near = copied[NEAR]
    assert near["near_duplicate_of"] == copied[ORIGINAL]["id"]  # relinked to beta's copy
    again = _import("beta", "jsonl", tmp_path / "a.jsonl")
    assert "0 imported, 4 already there" in again[1]
    assert Memory.objects.filter(namespace=beta).count() == 4


def test_bad_lines_are_reported_by_number_and_skipped(alpha, tmp_path):
    good = {"type": "memory", "content": "a fine memory", "agent_id": "a-1"}
    lines = [json.dumps(good), "{not json", json.dumps({"type": "memory", "content": ""}),
             json.dumps({"type": "memory", "content": "x", "importance": 7}),
             json.dumps({"type": "memory", "content": "y", "colour": "red"}),
             json.dumps({"type": "audit", "seq": 1}),
             json.dumps({"type": "memory", "id": "not-a-uuid", "content": "z"}),
             json.dumps({"type": "memory", "content": "another fine one"})]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, out, err = _import("alpha", "jsonl", path)
    assert code == 1
    assert "2 imported, 0 already there, 5 problems" in out
    for number, words in [(2, "not a JSON line"), (3, "content"), (4, "importance"),
                          (5, "colour"), (7, "not a MemoryWeb id")]:
        assert f"mixed.jsonl: line {number}: " in err and words in err
    assert "line 6" not in err  # audit lines are left out on purpose, not errors
    assert set(Memory.objects.values_list("content", flat=True)) == {"a fine memory",
                                                                     "another fine one"}
    assert Memory.objects.get(content="a fine memory").agent_id == "a-1"
    rerun = _import("alpha", "jsonl", path)
    assert "0 imported, 2 already there, 5 problems" in rerun[1]


def test_a_cut_or_altered_export_is_flagged(rich_alpha, tmp_path):
    exported = _export("alpha", tmp_path / "full.jsonl")
    assert exported[-1]["type"] == "manifest"
    text = (tmp_path / "full.jsonl").read_text().splitlines()
    altered = [line.replace("jasmine", "earl grey") for line in text]
    (tmp_path / "altered.jsonl").write_text("\n".join(altered) + "\n")
    create_namespace("gamma")
    code, out, err = _import("gamma", "jsonl", tmp_path / "altered.jsonl")
    assert code == 1 and "SHA-256" in err and "4 imported" in out
    cut = [line for line in text if "green tea" not in line and "jasmine" not in line]
    (tmp_path / "cut.jsonl").write_text("\n".join(cut) + "\n")
    create_namespace("delta")
    code, _, err = _import("delta", "jsonl", tmp_path / "cut.jsonl")
    assert code == 1 and "4 memories announced, 3 read" in err


MEM0_DUMP = {"results": [
    {"id": "892db2ae-06d9-49e5-8b3e-585ef9b85b8e", "memory": "Is a vegetarian",
     "hash": "814faa5b9d2b5e8b0f6c2f5c5f1d8f1b", "metadata": {"source": "onboarding"},
     "created_at": "2024-07-20T01:30:04.456789-07:00", "updated_at": None,
     "user_id": "alice", "categories": ["food", "preferences"]},
    {"id": "0d1c1f0e-5a2a-4a55-9f6e-3c2c1f0e5a2a", "memory": "Allergic to peanuts",
     "created_at": "2024-07-21T09:00:00Z", "updated_at": "2024-07-22T09:00:00Z",
     "user_id": "alice", "agent_id": "diet-bot", "run_id": "run-9"},
    {"id": "bad-one", "memory": None, "user_id": "alice"},
]}


def test_mem0_dump_imports_with_its_subject_and_is_idempotent(alpha, tmp_path):
    path = tmp_path / "mem0.json"
    path.write_text(json.dumps(MEM0_DUMP, indent=2))
    code, out, err = _import("alpha", "mem0", path)
    assert code == 1 and "2 imported, 0 already there, 1 problems" in out
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "bad-one" in text)
    assert f"mem0.json: line {line}: memory bad-one: no text in 'memory'" in err
    veg = Memory.objects.get(content="Is a vegetarian")
    assert veg.tags == ["food", "preferences"] and veg.agent_id == "mem0"
    assert veg.metadata["subject_id"] == "alice" and veg.metadata["source"] == "onboarding"
    assert veg.metadata["mem0"]["hash"] == "814faa5b9d2b5e8b0f6c2f5c5f1d8f1b"
    assert veg.created_at == dt.datetime(2024, 7, 20, 8, 30, 4, 456789, tzinfo=dt.UTC)
    nuts = Memory.objects.get(content="Allergic to peanuts")
    assert (nuts.agent_id, nuts.session_id) == ("diet-bot", "run-9")
    assert nuts.updated_at.day == 22
    # The subject is a GDPR subject like any other: its export finds both.
    out_file = tmp_path / "alice.jsonl"
    call_command("export", "--namespace", "alpha", "--subject-id", "alice", "-o", str(out_file),
                 stdout=io.StringIO(), stderr=io.StringIO())
    assert len([ln for ln in out_file.read_text().splitlines() if '"type":"memory"' in ln]) == 2
    assert "0 imported, 2 already there" in _import("alpha", "mem0", path)[1]
    assert Memory.objects.count() == 2


def test_mem0_bare_list_and_unreadable_files(alpha, tmp_path):
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(MEM0_DUMP["results"][:1]))
    assert _import("alpha", "mem0", bare)[0] == 0
    broken = tmp_path / "broken.json"
    broken.write_text('{"results": [\n{"id": "x",\n')
    code, out, err = _import("alpha", "mem0", broken)
    assert code == 1 and "not JSON" in err and "0 imported" in out


def test_the_command_refuses_what_it_cannot_do(alpha, tmp_path):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no such file"):
        _import("alpha", "jsonl", tmp_path / "missing.jsonl")
    with pytest.raises(CommandError, match="not found"):
        (tmp_path / "e.jsonl").write_text("")
        _import("nowhere", "jsonl", tmp_path / "e.jsonl")
    with pytest.raises(CommandError, match="is a directory"):
        _import("alpha", "mem0", tmp_path)
    missing = _import("alpha", "cmm", tmp_path)
    assert missing[0] == 1 and "memories.json: not found" in missing[2]


def test_an_archived_namespace_refuses_imports(alpha, tmp_path):
    from django.core.management.base import CommandError

    alpha.archived_at = timezone.now()
    alpha.save()
    (tmp_path / "one.jsonl").write_text(json.dumps({"content": "x"}) + "\n")
    with pytest.raises(CommandError, match="archived"):
        _import("alpha", "jsonl", tmp_path / "one.jsonl")
    assert Memory.objects.count() == 0


def test_progress_bar_and_help(alpha, tmp_path, capsys):
    from django.core.management import get_commands, load_command_class

    path = tmp_path / "three.jsonl"
    path.write_text("".join(json.dumps({"type": "memory", "content": f"memory {i}"}) + "\n"
                            for i in range(3)))
    err = io.StringIO()
    call_command("import_memories", "--namespace", "alpha", "--format", "jsonl", str(path),
                 stdout=io.StringIO(), stderr=err)
    assert "3/3" in capsys.readouterr().err + err.getvalue()
    command = load_command_class(get_commands()["import_memories"], "import_memories")
    text = command.create_parser("manage.py", "import_memories").format_help()
    assert "--format {jsonl,mem0,cmm}" in text and "mem0's get_all" in text


def test_moving_memories_back_creates_nothing(rich_alpha, beta, tmp_path):
    _export("alpha", tmp_path / "a.jsonl")
    _import("beta", "jsonl", tmp_path / "a.jsonl")
    _export("beta", tmp_path / "b.jsonl")
    before = Memory.objects.filter(namespace=rich_alpha).count()
    code, out, _ = _import("alpha", "jsonl", tmp_path / "b.jsonl")
    assert code == 0 and "0 imported, 4 already there" in out
    assert Memory.objects.filter(namespace=rich_alpha).count() == before


def test_ids_taken_in_the_receiving_namespace_are_left_out_with_a_warning(
        rich_alpha, beta, tmp_path):
    from tests.helpers.callers import make_caller

    beta_agent = make_caller(Role.AGENT, beta, "beta-agent")
    for n in range(45):  # beta hands out numbers 1..45, so 42 is taken
        beta_agent.post("/cmm/ingest", {"gist": f"beta note {n}"})
    _export("alpha", tmp_path / "a.jsonl")
    code, out, err = _import("beta", "jsonl", tmp_path / "a.jsonl")
    assert code == 0 and "4 imported" in out and "1 warnings" in out
    assert "warning: imported without its cmm id 42" in err
    assert beta_agent.get("/cmm/memory/42").json()["gist"] == "beta note 41"
    copy = Memory.objects.get(namespace=beta, content="The rate limit is 300 req/min")
    assert set(copy.external_ids.values_list("system", flat=True)) == {"memoryweb"}
    assert "0 imported, 4 already there" in _import("beta", "jsonl", tmp_path / "a.jsonl")[1]


@pytest.mark.parametrize("line, words", [
    ({"type": "memory", "content": "x", "near_duplicate_of": 5}, "near_duplicate_of"),
    ({"type": "memory", "content": "x", "external_ids": {"cmm": "abc"}}, "external_ids.cmm"),
    ({"type": "memory", "content": "x", "external_ids": {"cmm": str(10**20)}}, "external_ids.cmm"),
    ({"type": "memory", "content": "x", "external_ids": {"elsewhere": "1"}}, "external_ids"),
    ({"type": "manifest", "format": "memoryweb-export/1", "counts": [1], "sha256": "0"},
     "SHA-256"),
])
def test_malformed_lines_are_problems_not_crashes(alpha, tmp_path, line, words):
    path = tmp_path / "odd.jsonl"
    path.write_text(json.dumps(line) + "\n" + json.dumps({"content": "fine"}) + "\n")
    code, out, err = _import("alpha", "jsonl", path)
    assert code == 1 and words in err and "1 problems" in out
    assert Memory.objects.filter(content="fine").exists()


@pytest.mark.parametrize("categories", [5, "food", [1, 2]])
def test_mem0_categories_must_be_a_list_of_strings(alpha, tmp_path, categories):
    path = tmp_path / "mem0.json"
    path.write_text(json.dumps([{"id": "m-1", "memory": "x", "categories": categories},
                                {"id": "m-2", "memory": "y"}]))
    code, _, err = _import("alpha", "mem0", path)
    assert code == 1 and "categories must be a list of strings" in err
    assert list(Memory.objects.values_list("content", flat=True)) == ["y"]


def test_mem0_expiration_date_keeps_the_whole_day(alpha, tmp_path):
    path = tmp_path / "mem0.json"
    path.write_text(json.dumps([{"id": "m-1", "memory": "x", "expiration_date": "2099-01-31"}]))
    assert _import("alpha", "mem0", path)[0] == 0
    assert Memory.objects.get().expires_at == dt.datetime(2099, 2, 1, tzinfo=dt.UTC)


def test_deeply_nested_json_is_a_problem_not_a_crash(alpha, tmp_path):
    """A line or file nested past MEMORYWEB_MAX_JSON_DEPTH is reported like any other bad
    input (it raised RecursionError from json.loads before)."""
    deep = "[" * 5000 + "]" * 5000
    lines = tmp_path / "deep.jsonl"
    lines.write_text('{"content": "x", "metadata": {"a": ' + deep + "}}\n"
                     + json.dumps({"content": "fine"}) + "\n")
    code, out, err = _import("alpha", "jsonl", lines)
    assert code == 1 and "nested deeper than" in err and "1 problems" in out
    assert Memory.objects.filter(content="fine").exists()
    dump = tmp_path / "deep.json"
    dump.write_text('{"results": ' + deep + "}")
    code, out, err = _import("alpha", "mem0", dump)
    assert code == 1 and "nested deeper than" in err and "0 imported" in out
