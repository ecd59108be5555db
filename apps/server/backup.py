"""Backup and restore: a consistent snapshot of the truth while the server runs.

A backup is a tar.gz (optionally encrypted, apps/core/stream_crypto.py) holding ``manifest.json``
(format, counts, SHA-256 of each file), the database snapshot and, for a local
deployment, the generated secret key (it signs the audit anchor and encrypts TOTP
secrets; a production SECRET_KEY comes from the environment and is not copied).

- **SQLite**: SQLite's online backup API copies the database in one step under a read
  transaction: a consistent snapshot at one instant, while WAL lets writers go on. The
  per-namespace keyword tables are inside it.
- **PostgreSQL**: ``pg_dump --format=custom`` (one consistent snapshot), restored with
  ``pg_restore``.
- **Vectors are not copied**: SQL holds every memory's content, so restore re-embeds
  (the "re-embeddable export"). That costs time at restore (measured in
  docs/deploy.md) but no snapshot of Chroma has to agree with the SQL one, and the
  embedded Chroma, locked by the running server, is never touched by a backup.

Restore goes into an empty data directory (or an empty PostgreSQL database): it puts the
snapshot in place, migrates it forward, rebuilds the vector index from SQL, checks the
audit chain and re-anchors it to the restored tip.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.core.stream_crypto import EncryptingWriter, open_file

FORMAT = "memoryweb-backup/1"
SQLITE_NAME = "memoryweb.sqlite3"
PG_NAME = "database.pgdump"
SECRET_NAME = "secret_key"
ANCHOR_NAME = "audit-anchor.json"
#: Present in the data directory while a restore has not finished: restore resumes from
#: it, and /readiness answers 503 meanwhile.
RESTORING_MARKER = "RESTORING"


class BackupError(RuntimeError):
    """Something a person must fix (a non-empty target, a missing tool, a bad file)."""


@dataclass
class RestoreReport:
    manifest: dict[str, Any]
    namespaces: int = 0
    memories: int = 0
    reindexed: int = 0
    audit_ok: bool = False
    audit_entries: int = 0
    #: The erasure ledger's entries re-applied (apps/privacy/ledger.py), oldest first.
    replayed: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _engine() -> str:
    return "postgresql" if connection.vendor == "postgresql" else "sqlite"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- backup ------------------------------------------------------------------------

def create(output: Path, *, passphrase: str | None = None,
           progress: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """Write a backup to ``output`` (atomically: a partial file never has the final name)."""
    note = progress or (lambda stage, size: None)
    output = output.resolve()
    # Staged in the data directory (0700), never next to the output: an encrypted backup
    # must not leave a plaintext copy on the backup medium if it is cut off.
    with tempfile.TemporaryDirectory(prefix=".memoryweb-backup-", dir=settings.DATA_DIR) as work:
        folder = Path(work)
        files: list[Path] = []
        # The signed anchor, read before the snapshot: it names an entry the snapshot holds
        # (the anchor only advances after a commit), so restore can check the chain.
        from apps.audit import anchor

        tip = anchor.read()
        # The erasure ledger's head, read before the snapshot too: the snapshot includes
        # at least the erasures up to it, so restore replays what came after.
        from apps.core import erasure_ledger, keystore

        ledger_head = erasure_ledger.head()
        if tip is not None and tip.signed:
            (folder / ANCHOR_NAME).write_text(anchor.path().read_text())
            files.append(folder / ANCHOR_NAME)
        if _engine() == "sqlite":
            files.append(_sqlite_snapshot(folder / SQLITE_NAME))
            counts = _sqlite_counts(folder / SQLITE_NAME)
        else:
            files.append(_pg_dump(folder / PG_NAME))
            counts = _live_counts()
        note("snapshot", sum(f.stat().st_size for f in files))
        secret = settings.DATA_DIR / SECRET_NAME
        if settings.MEMORYWEB_ENV != "production" and secret.exists():
            shutil.copyfile(secret, folder / SECRET_NAME)
            files.append(folder / SECRET_NAME)
        manifest = {
            "format": FORMAT, "created_at": timezone.now().isoformat(), "engine": _engine(),
            "encrypted": bool(passphrase), "counts": counts,
            "vectors": "not copied: restore re-embeds every memory from SQL",
            "erasure_ledger": {"head": ledger_head, "keystore": str(keystore.directory())},
            "files": {f.name: {"sha256": _sha256(f), "bytes": f.stat().st_size} for f in files},
        }
        partial = output.with_name(output.name + ".partial")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as sink:  # 0600: it holds every memory (and a key)
            target: BinaryIO = EncryptingWriter(sink, passphrase) if passphrase else sink
            with tarfile.open(fileobj=target, mode="w|gz") as archive:
                body = json.dumps(manifest, indent=2).encode()
                info = tarfile.TarInfo("manifest.json")
                info.size, info.mtime = len(body), int(timezone.now().timestamp())
                archive.addfile(info, io.BytesIO(body))
                for path in files:
                    archive.add(path, arcname=path.name)
                    note("archive", path.stat().st_size)
            if passphrase:
                target.close()
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(partial, output)
    return manifest


def _sqlite_snapshot(target: Path) -> Path:
    source = sqlite3.connect(str(settings.DATABASES["default"]["NAME"]), timeout=60)
    destination = sqlite3.connect(str(target))
    try:
        source.execute("PRAGMA busy_timeout = 60000")
        source.backup(destination)  # one step: a consistent snapshot under one read lock
    finally:
        destination.close()
        source.close()
    return target


def _sqlite_counts(snapshot: Path) -> dict[str, int]:
    db = sqlite3.connect(str(snapshot))
    try:
        def one(sql: str) -> int:
            return db.execute(sql).fetchone()[0] or 0

        return {"namespaces": one("SELECT count(*) FROM tenancy_namespace"),
                "memories": one("SELECT count(*) FROM memories_memory"),
                "audit_entries": one("SELECT max(seq) FROM audit_auditentry")}
    finally:
        db.close()


def _live_counts() -> dict[str, int]:
    from apps.audit.models import AuditEntry
    from apps.memories.models import Memory
    from apps.tenancy.models import Namespace

    last = AuditEntry.objects.order_by("-seq").values_list("seq", flat=True).first()
    return {"namespaces": Namespace.objects.count(), "memories": Memory.objects.count(),
            "audit_entries": last or 0}


def _pg_environment() -> tuple[list[str], dict[str, str]]:
    db = settings.DATABASES["default"]
    args = ["--dbname", db["NAME"]]
    for flag, key in (("--host", "HOST"), ("--port", "PORT"), ("--username", "USER")):
        if db.get(key):
            args += [flag, str(db[key])]
    environment = dict(os.environ)
    if db.get("PASSWORD"):
        environment["PGPASSWORD"] = db["PASSWORD"]
    return args, environment


def _run(command: list[str], environment: dict[str, str]) -> None:
    if shutil.which(command[0]) is None:
        raise BackupError(f"{command[0]} is not installed (PostgreSQL client tools).")
    done = subprocess.run(command, env=environment, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"{command[0]} failed: {done.stderr.strip()[-2000:]}")


def _pg_dump(target: Path) -> Path:
    args, environment = _pg_environment()
    _run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges", "--file", str(target),
          *args], environment)
    return target


# --- restore -----------------------------------------------------------------------

def _check_empty_target() -> None:
    if _engine() == "sqlite":
        database = Path(settings.DATABASES["default"]["NAME"])
        if database.exists() and database.stat().st_size > 0:
            raise BackupError(f"{database} exists: restore goes into an empty data directory "
                              "(set MEMORYWEB_DATA_DIR to a new one).")
    else:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM information_schema.tables "
                           "WHERE table_schema = current_schema()")
            if cursor.fetchone()[0]:
                raise BackupError("the PostgreSQL database has tables: restore goes into an "
                                  "empty database.")
    if not settings.CHROMA_URL and settings.CHROMA_PATH.exists() and any(
            p.name != "memoryweb.lock" for p in settings.CHROMA_PATH.iterdir()):
        raise BackupError(f"{settings.CHROMA_PATH} is not empty: restore into a new data directory.")


def restoring() -> bool:
    """A restore into this data directory started and has not finished."""
    return (settings.DATA_DIR / RESTORING_MARKER).exists()


def restore(path: Path, *, passphrase: Callable[[], str],
            progress: Callable[[str, int, int], None] | None = None) -> RestoreReport:
    """Restore ``path`` into the configured, empty database and data directory.

    Resumable: a marker file says a restore is under way; run the same command again
    after a failure and it finishes from the database already in place.
    """
    note = progress or (lambda stage, done, total: None)
    marker = settings.DATA_DIR / RESTORING_MARKER
    if marker.exists():
        manifest = json.loads(marker.read_text())
        report = RestoreReport(manifest, notes=["resumed an unfinished restore"])
        return _finish(report, note, marker)
    _check_empty_target()
    settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".memoryweb-restore-", dir=settings.DATA_DIR) as work:
        folder = Path(work)
        source = open_file(path, passphrase)
        try:
            with tarfile.open(fileobj=source, mode="r|gz") as archive:
                archive.extractall(folder, filter="data")
        except tarfile.TarError as exc:
            raise BackupError(f"not a readable backup: {exc}") from None
        finally:
            source.close() if hasattr(source, "close") else None
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest.get("format") != FORMAT:
            raise BackupError(f"unknown backup format {manifest.get('format')!r}.")
        for name, expected in manifest["files"].items():
            if _sha256(folder / name) != expected["sha256"]:
                raise BackupError(f"{name} does not match its SHA-256 in the manifest.")
        if manifest["engine"] != _engine():
            raise BackupError(f"this backup is of a {manifest['engine']} database; the target "
                              f"is {_engine()} (export and import to move between them).")
        report = RestoreReport(manifest)
        if (folder / ANCHOR_NAME).exists():
            manifest["anchor"] = json.loads((folder / ANCHOR_NAME).read_text())
        marker.write_text(json.dumps(manifest))
        if (folder / SECRET_NAME).exists() and settings.MEMORYWEB_ENV != "production":
            key = (folder / SECRET_NAME).read_text().strip()
            target = settings.DATA_DIR / SECRET_NAME
            target.write_text(key)
            target.chmod(0o600)
            settings.SECRET_KEY = key  # the anchor below is signed with the restored key
        elif settings.MEMORYWEB_ENV != "production":
            report.notes.append("no secret key in the backup: TOTP authenticators must be set "
                                "up again")
        connection.close()
        if manifest["engine"] == "sqlite":
            os.replace(folder / SQLITE_NAME, Path(settings.DATABASES["default"]["NAME"]))
        else:
            args, environment = _pg_environment()
            _run(["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
                  "--single-transaction", *args, str(folder / PG_NAME)], environment)
        note("database", 1, 1)
    return _finish(report, note, marker)


def _finish(report: RestoreReport, note: Callable[[str, int, int], None],
            marker: Path) -> RestoreReport:
    from django.core.management import call_command

    from apps.audit import anchor
    from apps.audit.models import AuditHead
    from apps.audit.verify import verify
    from apps.memories import lexical
    from apps.memories.indexing import reindex_namespace
    from apps.memories.models import IndexOutbox, Memory
    from apps.privacy import ledger
    from apps.tenancy.models import Namespace, new_collection_name

    entries = _ledger_entries(report.manifest)  # before anything: a wrong key store stops here
    call_command("migrate", verbosity=0, interactive=False)  # a backup of an older version
    IndexOutbox.objects.all().delete()  # everything is re-embedded below
    lexical.drop_orphans()
    # The chain first, against the signed anchor taken with the backup: a rewritten chain
    # must not be blessed by re-anchoring it.
    verdict = None
    head = AuditHead.objects.filter(pk=1).first()
    saved = report.manifest.get("anchor")
    if head is not None and anchor.path() is not None:
        if saved is not None:
            if not anchor.is_signed(int(saved["seq"]), saved["entry_hash"], saved.get("hmac", "")):
                raise BackupError("the backup's audit anchor is not signed with this deployment's "
                                  "secret key: it was changed, or SECRET_KEY differs.")
            anchor.write(int(saved["seq"]), saved["entry_hash"], force=True)
            verdict = verify()  # the chain, and the entry the anchor names
        else:
            report.notes.append("the backup holds no signed audit anchor (anchoring was off): "
                                "the chain was checked on its own")
            verdict = verify()
            if not verdict.ok and "anchor" in verdict.broken[1]:
                anchor.write(head.seq, head.entry_hash, force=True)
                verdict = verify()
        if verdict.ok:  # advance it to the restored tip
            anchor.write(head.seq, head.entry_hash, force=False)
    for namespace in Namespace.objects.order_by("pk"):
        # A collection of its own: with a shared Chroma server the source deployment's
        # collections (named in the restored rows) must stay untouched.
        Namespace.objects.filter(pk=namespace.pk).update(collection=new_collection_name())
    # Every erasure, retention expiry and namespace deletion executed after the backup
    # (the ledger's entries this database does not include) again, before anything is
    # embedded or served; the vectors are rebuilt from SQL below, so only SQL is erased.
    behind = ledger.pending(entries)
    report.replayed = ledger.replay(
        behind, after_commit=False,
        progress=lambda item: note("erasures replayed", 1, len(behind)))
    IndexOutbox.objects.all().delete()  # the replay's vector work: nothing is embedded yet
    namespaces = list(Namespace.objects.order_by("pk"))
    total = Memory.objects.count()
    report.namespaces, report.memories = len(namespaces), total
    done = 0
    for namespace in namespaces:  # the keyword tables came inside the SQLite snapshot
        done += reindex_namespace(namespace, progress=lambda n: note("vectors", n, total))
    report.reindexed = done
    report.audit_ok = verdict is None or verdict.ok
    report.audit_entries = verdict.checked if verdict else 0
    if verdict is not None and not verdict.ok:
        report.notes.append(f"audit chain broken at entry {verdict.broken[0]}: {verdict.broken[1]}")
    marker.unlink(missing_ok=True)
    return report


def _ledger_entries(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The erasure ledger's entries, refusing a ledger that does not verify or that lacks
    the head the backup recorded (a tampered ledger, or another deployment's key store:
    replaying from either could skip an erasure)."""
    from apps.core import erasure_ledger, keystore

    verdict = erasure_ledger.verify()
    if not verdict.ok:
        seq, reason = verdict.broken or (0, "")
        raise BackupError(f"the erasure ledger {erasure_ledger.path()} does not verify: {reason}. "
                          "Restore refuses: the erasures to replay cannot be trusted. Restore "
                          "the key store from its own copy, then run restore again.")
    entries = list(erasure_ledger.entries())
    recorded = (manifest.get("erasure_ledger") or {}).get("head")
    if recorded:
        seq = int(recorded["seq"])
        if seq > len(entries) or entries[seq - 1].get("hash") != recorded["hash"]:
            raise BackupError(
                f"the backup was taken beside an erasure ledger whose entry {seq} this key "
                f"store does not hold (MEMORYWEB_KEYSTORE_DIR={str(keystore.directory())!r}, "
                f"{len(entries)} entries; the backup's was "
                f"{(manifest.get('erasure_ledger') or {}).get('keystore')!r}): point "
                "MEMORYWEB_KEYSTORE_DIR at the deployment's key store and run restore again.")
    return entries
