"""Checking the chain: every link, the head row and the anchor outside the database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from apps.audit import anchor
from apps.audit.models import GENESIS_HASH, AuditEntry, AuditHead


@dataclass
class Verdict:
    checked: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    #: The first broken link: (sequence number, what is wrong). None: intact.
    broken: tuple[int, str] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.broken is None


def verify(*, chunk: int = 2000, progress: Callable[[int], None] | None = None,
           since: tuple[int, str] | None = None) -> Verdict:
    """Walk the log in sequence order and report the first broken link.

    Detects an edited entry (its hash no longer matches its content), a deleted one (a
    gap in the sequence), reordered ones (``prev_hash`` no longer names the entry
    before), and a cut-off tail (the head row or the anchor file names an entry the log
    no longer has). The head row is read first and the walk stops at it, so entries
    appended while it runs (a busy server) are neither checked nor mistaken for
    tampering. Reads ``chunk`` entries at a time: memory stays flat however long the log.

    ``since`` = (seq, entry_hash) of a checkpoint verified before: start after it (the
    checkpoint job's incremental walk; a full walk still checks everything before it).
    """
    verdict = Verdict()
    head = AuditHead.objects.filter(pk=1).first()
    until = head.seq if head is not None else None
    expected_seq, expected_prev = 1, GENESIS_HASH
    after = 0
    if since is not None:
        after, expected_prev = since
        expected_seq = after + 1
        verdict.last_seq, verdict.last_hash = since
    while True:
        batch = AuditEntry.objects.filter(seq__gt=after).order_by("seq")
        if until is not None:
            batch = batch.filter(seq__lte=until)
        batch = list(batch[:chunk])
        if not batch:
            break
        for entry in batch:
            problem = None
            if entry.seq != expected_seq:
                problem = (f"entry {expected_seq} is missing (the next one is {entry.seq}): "
                           "entries were deleted")
            elif entry.prev_hash != expected_prev:
                problem = ("prev_hash does not match the entry before it: entries were "
                           "reordered, replaced or removed")
            elif entry.compute_hash() != entry.entry_hash:
                problem = "its content does not match its entry_hash: the entry was edited"
            if problem:
                verdict.broken = (expected_seq if entry.seq != expected_seq else entry.seq, problem)
                return verdict
            verdict.checked += 1
            verdict.last_seq, verdict.last_hash = entry.seq, entry.entry_hash
            expected_seq, expected_prev = entry.seq + 1, entry.entry_hash
        after = batch[-1].seq
        if progress:
            progress(len(batch))
    _check_tip(verdict, head)
    return verdict


def _check_tip(verdict: Verdict, head: AuditHead | None) -> None:
    if head is not None and (head.seq, head.entry_hash) != (verdict.last_seq, verdict.last_hash):
        verdict.broken = (verdict.last_seq + 1, f"the log ends at entry {verdict.last_seq} but "
                          f"its head row says {head.seq}: entries were removed from the end")
        return
    if anchor.path() is None:
        verdict.notes.append("no anchor configured (MEMORYWEB_AUDIT_ANCHOR is empty): a "
                             "truncation that also rewrites the head row is not detectable")
        return
    tip = anchor.read()
    if tip is None:
        if verdict.last_seq:
            verdict.broken = (verdict.last_seq, f"the anchor file {anchor.path()} is missing; "
                              "if the log is known to be intact, run audit_verify --reanchor")
        return
    if not tip.signed:
        verdict.broken = (max(tip.seq, 0), "the anchor file's signature is invalid: it was "
                          "edited or written by another deployment")
        return
    # Against the table, not the walk: the anchor may have moved past the head read
    # above while the walk ran (entries appended meanwhile).
    held = AuditEntry.objects.filter(seq=tip.seq).values_list("entry_hash", flat=True).first()
    if tip.seq and held is None:
        verdict.broken = (verdict.last_seq + 1, f"the anchor says entry {tip.seq} existed but "
                          f"the log ends at {verdict.last_seq}: entries were removed from the end")
    elif tip.seq and held != tip.entry_hash:
        verdict.broken = (tip.seq, "entry at the anchor's position does not have the anchor's "
                          "hash: the log was rewritten")
    elif tip.seq < verdict.last_seq:
        verdict.notes.append(f"the anchor is at entry {tip.seq}, the log at "
                             f"{verdict.last_seq} (it catches up after each write)")
