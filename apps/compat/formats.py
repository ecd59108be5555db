"""Readers for the files `manage.py import_memories` takes: each yields
:class:`~apps.memories.imports.ImportRecord` objects, or ``(line, message)`` for what it
could not read, so the import reports it and goes on.

- ``jsonl``: MemoryWeb's own export (``GET /api/v1/export``, ``manage.py export``). Every
  field comes back, consolidation lineage included (checked and restored by
  apps/memories/import_lineage.py); the manifest's SHA-256 is checked. Audit and grant lines are not
  imported: the audit log is the receiving server's own record, and grants name that
  server's namespaces.
- ``mem0``: the JSON of mem0's ``get_all`` (``{"results": [...]}`` or a bare list).
- ``cmm``: seed 000's data directory (``memories.json`` and ``entities.json``; the FAISS
  index is not read, the memories are embedded again).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from apps.compat.cmm import importance_from_cmm
from apps.core import parsers as json_input
from apps.memories.external_ids import MAX_NUMBER
from apps.memories.imports import ImportRecord
from apps.memories.models import ExternalId, MemoryKind
from apps.memories.subjects import SUBJECT_KEY
from apps.privacy.export import FORMAT as EXPORT_FORMAT

Item = ImportRecord | tuple[int, str]

#: Export fields that are the receiving server's to set, not the record's.
_EXPORT_ONLY = ("type", "id", "namespace", "content_hash", "near_duplicate_of", "external_ids",
                "duplicate", "near_duplicate_similarity", "superseded_by", "superseded_at",
                "derived_from", "conflicts_with", "kept_apart")


#: Opens a file to read its lines (a MemoryWeb export may be encrypted: stream_crypto).
Opener = Callable[[Path], BinaryIO]


def _plain(path: Path) -> BinaryIO:
    return path.open("rb")


def count(path: Path, fmt: str, opener: Opener = _plain) -> int | None:
    """How many records a file holds, for the progress bar (None: unknown)."""
    if fmt == "jsonl":
        memory_line = re.compile(rb'^\s*\{\s*"type"\s*:\s*"memory"')
        with opener(path) as handle:
            return sum(1 for line in handle if memory_line.match(line)) or None
    return None


def read(path: Path, fmt: str, opener: Opener = _plain) -> Iterator[Item]:
    if fmt == "jsonl":
        return read_jsonl(path, opener)
    readers = {"mem0": read_mem0, "cmm": read_cmm}
    return readers[fmt](path)


# --- MemoryWeb's export --------------------------------------------------------------

def read_jsonl(path: Path, opener: Opener = _plain) -> Iterator[Item]:
    digest = hashlib.sha256()
    counts = {"memory": 0, "grant": 0, "audit": 0}
    with opener(path) as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                digest.update(raw)
                continue
            try:
                row = json_input.loads(raw, strict=False)
            except ValueError as exc:  # not UTF-8, not JSON, or nested past the limit
                digest.update(raw)
                yield number, f"not a JSON line: {exc}"
                continue
            kind = row.get("type", "memory") if isinstance(row, dict) else None
            if kind == "manifest":
                yield from _check_manifest(number, row, digest.hexdigest(), counts)
                continue
            digest.update(raw)
            if kind in ("grant", "audit", "version"):
                counts[kind] = counts.get(kind, 0) + 1
                continue
            if kind != "memory":
                yield number, "expected a memory line (a JSON object with content)."
                continue
            counts["memory"] += 1
            yield _export_record(number, row)


def _export_record(number: int, row: dict[str, Any]) -> Item:
    data = {k: v for k, v in row.items() if k not in _EXPORT_ONLY}
    original = row.get("id")
    preferred = _uuid(original)
    if original is not None and preferred is None:
        return number, f"id: {original!r} is not a MemoryWeb id (a UUID)."
    other_ids = row.get("external_ids") or {}
    if not isinstance(other_ids, dict) or not all(
            k in ExternalId.System.values and isinstance(v, str) and 0 < len(v) <= 128
            for k, v in other_ids.items()):
        return number, "external_ids: expected an object of system -> id text."
    if ExternalId.System.CMM in other_ids and _int_id(other_ids[ExternalId.System.CMM]) is None:
        return number, f"external_ids.cmm: {other_ids['cmm']!r} is not a seed 000 number " \
            f"(0 to {MAX_NUMBER})."
    if ExternalId.System.CMM in other_ids:  # "007" and "7" are one number
        other_ids = {**other_ids, "cmm": str(_int_id(other_ids[ExternalId.System.CMM]))}
    for link in ("near_duplicate_of", "superseded_by"):
        if row.get(link) is not None and not isinstance(row[link], str):
            return number, f"{link}: expected a memory id."
    content = row.get("content")
    key = str(preferred) if preferred else "sha256:" + hashlib.sha256(
        str(content).encode()).hexdigest()
    return ImportRecord(number, ExternalId.System.MEMORYWEB, key, data, preferred_id=preferred,
                        near_duplicate_of=row.get("near_duplicate_of") or None,
                        superseded_by=row.get("superseded_by") or None,
                        superseded_at=row.get("superseded_at"),
                        derived_from=row.get("derived_from"),
                        conflicts_with=row.get("conflicts_with"),
                        kept_apart=row.get("kept_apart"),
                        other_ids=dict(other_ids))


def _check_manifest(number: int, row: dict[str, Any], sha256: str,
                    counts: Mapping[str, int]) -> Iterator[Item]:
    if row.get("format") != EXPORT_FORMAT:
        yield number, f"manifest: format {row.get('format')!r}, expected {EXPORT_FORMAT!r}."
    if row.get("sha256") != sha256:
        yield number, ("manifest: the SHA-256 of the lines before it differs from the one "
                       "recorded: the file was altered or cut; what could be read was imported.")
    counted = row.get("counts")
    expected = counted.get("memory") if isinstance(counted, dict) else None
    if expected is not None and expected != counts["memory"]:
        yield number, f"manifest: {expected} memories announced, {counts['memory']} read."


# --- mem0 ------------------------------------------------------------------------------

#: mem0's own identity fields, kept under metadata["mem0"] (user_id is also the subject).
_MEM0_IDENTITY = ("user_id", "agent_id", "run_id", "actor_id", "app_id", "role", "hash")


def read_mem0(path: Path) -> Iterator[Item]:
    text, items = _load_json(path)
    if isinstance(items, tuple):
        yield items
        return
    if isinstance(items, dict):
        items = items.get("results", items.get("memories"))
    if not isinstance(items, list):
        yield 1, 'expected mem0 get_all output: a list, or {"results": [...]}.'
        return
    for index, item in enumerate(items):
        line = _line_of(text, item.get("id") if isinstance(item, dict) else None)
        yield _placed(_mem0_record(line, item), index)


def _mem0_record(line: int, item: Any) -> Item:
    if not isinstance(item, dict):
        return line, "expected a memory object."
    memory_id, content = item.get("id"), item.get("memory", item.get("text"))
    if not isinstance(memory_id, str) or not memory_id:
        return line, "id: missing (mem0 memories have a string id)."
    if not isinstance(content, str):
        return line, f"memory {memory_id}: no text in 'memory'."
    metadata = item.get("metadata") or {}
    if not isinstance(metadata, dict):
        return line, f"memory {memory_id}: metadata must be an object."
    categories = item.get("categories") or []
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        return line, f"memory {memory_id}: categories must be a list of strings."
    identity = {k: item[k] for k in _MEM0_IDENTITY if item.get(k) not in (None, "")}
    metadata = {**metadata, "mem0": identity} if identity else dict(metadata)
    if item.get("user_id") and SUBJECT_KEY not in metadata:
        metadata[SUBJECT_KEY] = str(item["user_id"])  # the person it is about: GDPR subject
    data: dict[str, Any] = {
        "content": content, "metadata": metadata,
        "agent_id": str(item.get("agent_id") or "mem0"),
        "session_id": str(item.get("run_id") or ""),
        "tags": categories,
    }
    for source, target in (("created_at", "created_at"), ("updated_at", "updated_at")):
        if item.get(source):
            data[target] = item[source]
    expiry = item.get("expiration_date")
    if isinstance(expiry, str) and len(expiry) == 10:  # a day: mem0 keeps it through that day
        try:
            expiry = (dt.date.fromisoformat(expiry) + dt.timedelta(days=1)).isoformat() + "T00:00:00Z"
        except ValueError:
            return line, f"memory {memory_id}: expiration_date {expiry!r} is not a date."
    if expiry:
        data["expires_at"] = expiry
    return ImportRecord(line, ExternalId.System.MEM0, memory_id, data)


# --- seed 000 (CMM) ----------------------------------------------------------------------

def read_cmm(path: Path) -> Iterator[Item]:
    """``memories.json``: a list of memories, ``{"memories": [...]}``, or an object keyed by
    id. Each has an integer ``id``, ``gist`` (the text), ``importance`` (seed 000's scale,
    1.0 = normal), ``agent_id`` / ``session_id`` (top level or in ``metadata``), and a
    ``timestamp`` / ``created_at`` (ISO 8601 or Unix seconds). ``entities.json`` (optional):
    ``{"name": [ids]}``, ``{"name": {"memory_ids": [...]}}`` or a list of ``{"name",
    "memory_ids"}``; each memory's entity names go to ``metadata["entities"]``."""
    source = path / "memories.json" if path.is_dir() else path
    if not source.exists():
        yield 1, f"{source}: not found (give seed 000's data directory)."
        return
    entities = {}
    entities_file = source.parent / "entities.json"
    if entities_file.exists():
        entities, problem = _cmm_entities(entities_file)
        if problem:
            yield problem
    text, loaded = _load_json(source)
    if isinstance(loaded, tuple):
        yield loaded
        return
    if isinstance(loaded, dict) and isinstance(loaded.get("memories"), (list, dict)):
        loaded = loaded["memories"]
    if isinstance(loaded, dict):
        items = [({"id": key, **value} if isinstance(value, dict) else value)
                 for key, value in loaded.items()]
    elif isinstance(loaded, list):
        items = loaded
    else:
        yield 1, "memories.json: expected a list of memories or an object keyed by id."
        return
    for index, item in enumerate(items):
        line = _line_of(text, item.get("id") if isinstance(item, dict) else None)
        yield _placed(_cmm_record(line, item, entities), index)


def _cmm_record(line: int, item: Any, entities: Mapping[str, list[str]]) -> Item:
    if not isinstance(item, dict):
        return line, "expected a memory object."
    memory_id = _int_id(item.get("id"))
    if memory_id is None:
        return line, f"id: {item.get('id')!r} is not an integer id (0 to {MAX_NUMBER})."
    content = next((item[k] for k in ("gist", "content", "text") if isinstance(item.get(k), str)),
                   None)
    if content is None:
        return line, f"memory {memory_id}: no text in 'gist'."
    metadata = dict(item.get("metadata") or {}) if isinstance(item.get("metadata"), dict) else {}
    agent_id = item.get("agent_id", metadata.pop("agent_id", None))
    session_id = item.get("session_id", metadata.pop("session_id", None))
    importance = item.get("importance", 1.0)
    if isinstance(importance, bool) or not isinstance(importance, (int, float)) or importance < 0:
        return line, f"memory {memory_id}: importance must be a number >= 0."
    names = entities.get(str(memory_id))
    if names:
        metadata["entities"] = names
    data: dict[str, Any] = {"content": content, "metadata": metadata,
                            "importance": importance_from_cmm(float(importance)),
                            "agent_id": str(agent_id or "cmm"), "session_id": str(session_id or "")}
    if isinstance(item.get("tags"), list):
        data["tags"] = [str(t) for t in item["tags"]]
    kind = item.get("kind", item.get("type"))
    if kind in MemoryKind.values:
        data["kind"] = kind
    for source, target in (("created_at", "created_at"), ("timestamp", "created_at"),
                           ("updated_at", "updated_at")):
        if item.get(source) is not None and target not in data:
            moment = _moment(item[source])
            if moment is None:
                return line, f"memory {memory_id}: {source} is neither ISO 8601 nor Unix seconds."
            data[target] = moment
    return ImportRecord(line, ExternalId.System.CMM, str(memory_id), data)


def _cmm_entities(path: Path) -> tuple[dict[str, list[str]], tuple[int, str] | None]:
    _, loaded = _load_json(path)
    if isinstance(loaded, tuple):
        return {}, (loaded[0], f"entities.json: {loaded[1]} (entities left out)")
    pairs: list[tuple[Any, Any]] = []
    if isinstance(loaded, dict):
        loaded = loaded.get("entities", loaded)
    if isinstance(loaded, dict):
        pairs = list(loaded.items())
    elif isinstance(loaded, list):
        pairs = [(e.get("name"), e) for e in loaded if isinstance(e, dict)]
    by_memory: dict[str, set[str]] = {}
    for name, value in pairs:
        ids = value
        if isinstance(value, dict):
            ids = next((value[k] for k in ("memory_ids", "memories", "mentions")
                        if isinstance(value.get(k), list)), [])
        if not isinstance(name, str) or not isinstance(ids, list):
            continue
        for memory_id in ids:
            if _int_id(memory_id) is not None:
                by_memory.setdefault(str(_int_id(memory_id)), set()).add(name)
    return {k: sorted(v) for k, v in by_memory.items()}, None


# --- shared -------------------------------------------------------------------------------

def _load_json(path: Path) -> tuple[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        return text, json_input.loads(text, strict=False)
    except UnicodeDecodeError as exc:
        return "", (1, f"{path.name}: not UTF-8 text ({exc}).")
    except json.JSONDecodeError as exc:
        return "", (exc.lineno, f"{path.name}: not JSON: {exc.msg} (column {exc.colno}); "
                    "nothing could be read.")
    except json_input.JSONTooDeep as exc:
        return "", (1, f"{path.name}: {exc} Nothing could be read.")


def _line_of(text: str, memory_id: Any) -> int:
    """The line an item's id is on (JSON documents have no line per record); 0 when the
    id is missing or not unique in the file."""
    if memory_id is not None:
        pattern = (rf'"id"\s*:\s*"?{re.escape(str(memory_id))}"?\s*[,}}\n]'
                   rf'|"{re.escape(str(memory_id))}"\s*:\s*\{{')
        found = list(re.finditer(pattern, text))
        if len(found) == 1:
            return text.count("\n", 0, found[0].start()) + 1
    return 0


def _placed(item: Item, index: int) -> Item:
    """A problem without a line names the item's position in the file instead."""
    if isinstance(item, tuple) and item[0] == 0:
        return 0, f"item {index + 1}: {item[1]}"
    return item


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value is not None else None
    except ValueError:
        return None


def _int_id(value: Any) -> int | None:
    """A seed 000 id: an integer from 0 to 2**53 (what every JSON client reads exactly)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and re.fullmatch(r"\d{1,16}", value.strip(), re.ASCII):
        value = int(value)
    if isinstance(value, int) and 0 <= value <= MAX_NUMBER:
        return value
    return None


def _moment(value: Any) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return dt.datetime.fromtimestamp(value, tz=dt.UTC).isoformat()
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).isoformat()
    return None
