"""manage.py encrypt_namespace SLUG: turn encryption at rest on for a namespace that already
holds memories, online and resumable; ``--reseal``: move an encrypted namespace's values
to its current data key version after ``rotate_keys --namespace`` and retire the older
versions. The work is apps/memories/encrypt_existing.py's; docs/encryption.md says why
the steps come in this order."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from apps.core import envelope, keystore
from apps.core.key_providers import KeyUnavailable
from apps.memories import encrypt_existing
from apps.tenancy.models import Namespace

ACTOR = "system:manage.py encrypt_namespace"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"a whole number of at least 1, not {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"seconds from 0 to 3600, not {text!r}")
    return value


class Command(BaseCommand):
    help = (
        "Encrypt an existing namespace's memories at rest (docs/encryption.md, \"Turning "
        "encryption on\"), while the server keeps serving. Makes the namespace's data key, "
        "turns Namespace.encrypted on (audited; from then on every write to it is sealed "
        "and its keyword index holds blind tokens), waits until every process has seen "
        "that, then seals every memory's text and every version's before/after in batches "
        "and re-keys their content hashes (and the other stores' keyed hashes: a learned "
        "fact's key), and verifies that SQL holds none of it in clear. Resumable: a run "
        "that stops (Ctrl-C, --max-batches, a crash) is finished "
        "by running it again. --reseal: after rotate_keys --namespace SLUG, seal again "
        "under the current data key version what older versions sealed, then retire "
        "those versions (never version 1, which derives the keyword tokens and hashes). "
        "During the switch, keyword recall in a process that has not yet seen the flag "
        "(at most a few seconds) finds nothing on SQLite; vector recall is unaffected.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the namespace to encrypt (or re-seal)")
        parser.add_argument(
            "--reseal", action="store_true",
            help="the namespace is encrypted already: re-seal every value sealed under an "
                 "older data key version with the current one, then retire the older "
                 "versions (run after rotate_keys --namespace SLUG)")
        parser.add_argument(
            "--keep-old-keys", action="store_true",
            help="with --reseal: do not retire the older key versions afterwards")
        parser.add_argument(
            "--batch-size", type=_positive, default=encrypt_existing.BATCH_SIZE, metavar="N",
            help=f"memories per transaction (default {encrypt_existing.BATCH_SIZE}); "
                 "smaller batches hold locks for less time")
        parser.add_argument(
            "--max-batches", type=_positive, default=None, metavar="N",
            help="stop after N batches (the rest is done by running the command again)")
        parser.add_argument(
            "--settle-seconds", type=_seconds, default=None, metavar="S",
            help="how long to wait after turning encryption on before sweeping, so every "
                 "process has seen the flag (default "
                 f"{encrypt_existing.settle_seconds():g}: the sealing cache's lifetime plus "
                 "a margin); less is safe but may need another pass")

    def handle(self, *args: Any, slug: str, reseal: bool = False, keep_old_keys: bool = False,
               batch_size: int = encrypt_existing.BATCH_SIZE, max_batches: int | None = None,
               settle_seconds: float | None = None, **options: Any) -> None:
        namespace = Namespace.objects.filter(slug=slug).first()
        if namespace is None:
            raise CommandError(f"no namespace {slug!r}.")
        if keep_old_keys and not reseal:
            raise CommandError("--keep-old-keys goes with --reseal.")
        if reseal and not namespace.encrypted:
            raise CommandError(f"--reseal: {slug!r} is not encrypted; run encrypt_namespace "
                               f"{slug} without --reseal first.")
        try:
            counts = encrypt_existing.run(
                namespace, actor=ACTOR, reseal=reseal, settle=settle_seconds,
                batch_size=batch_size, max_batches=max_batches, retire=not keep_old_keys,
                bar=self._bar, say=self.stdout.write)
        except encrypt_existing.Interrupted:
            self.stdout.write(f"{slug}: stopped after {max_batches} batch(es) as asked; run "
                              "the same command again to continue (already sealed rows are "
                              "skipped).")
            return
        except (KeyUnavailable, envelope.Undecryptable, keystore.KeystoreError) as exc:
            raise CommandError(f"{slug}: {exc}") from None
        self._report(slug, reseal, counts)

    def _bar(self, number: int, total: int) -> Callable[[int], None]:
        bar = tqdm(total=total, desc=f"pass {number}", unit="mem", disable=None,
                   file=self.stderr._out)

        def update(done: int) -> None:
            bar.update(done)
            if bar.n >= (bar.total or 0):
                bar.close()

        return update

    def _report(self, slug: str, reseal: bool, counts: encrypt_existing.Counts) -> None:
        self.stdout.write(
            f"{slug}: {counts.memories} memories in {counts.passes} pass(es): "
            f"{counts.contents_sealed} contents, {counts.other_values_sealed} other values "
            f"and {counts.versions_sealed} versions sealed, {counts.resealed} values "
            f"re-sealed under the current key, {counts.hashes_keyed} content hashes keyed "
            f"({counts.slots_given_up} dedup slots given up to a newer identical memory), "
            f"{counts.store_values_sealed} values of other stores sealed and "
            f"{counts.store_hashes_keyed} of their hashes keyed ({counts.store_rows_merged} "
            f"rows merged into an older one); keyword index "
            f"rebuilt ({counts.index_rows} rows).")
        if counts.filters_unindexed:
            self.stdout.write(f"the vector index's filter fields of {counts.filters_unindexed} "
                              f"memories were not updated: run manage.py reindex --namespace "
                              f"{slug}.")
        left = (counts.left_plain_contents + counts.left_plain_other
                + counts.left_plain_versions + counts.left_plain_store_values
                + counts.left_old_versions + counts.left_stale_store_hashes)
        self.stdout.write(
            f"verification: {counts.left_plain_contents} contents, {counts.left_plain_other} "
            f"other values, {counts.left_plain_versions} versions and "
            f"{counts.left_plain_store_values} values of other stores in clear, "
            f"{counts.left_stale_store_hashes} hashes of other stores not keyed"
            + (f", {counts.left_old_versions} values under older key versions" if reseal else ""))
        if counts.retired_versions:
            self.stdout.write("retired data key version(s) "
                              + ", ".join(map(str, counts.retired_versions)))
        if left:
            raise CommandError(f"{slug}: {left} value(s) are still not sealed as asked "
                               "(something keeps writing them): run the command again.")
