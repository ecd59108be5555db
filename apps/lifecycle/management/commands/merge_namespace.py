"""manage.py merge_namespace: move every memory of one namespace into another, with a
progress bar (docs/lifecycle.md, "Namespace merge"); resume an interrupted merge or revert
a finished one. No size limit (the REST door hands large merges to a job)."""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from apps.core.errors import ServiceError
from apps.core.roles import Role
from apps.lifecycle import namespace_merge
from apps.lifecycle.models import NamespaceMerge
from apps.memories.vectorstore import EmbeddedStoreBusy
from apps.tenancy.principal import Principal

#: Who a merge run from the command line is, in versions and the audit log.
OPERATOR = Principal(label="system:merge_namespace", agent_id="", role=Role.SYSTEM)


class Command(BaseCommand):
    help = (
        "Merge namespace SOURCE into TARGET (docs/lifecycle.md): SOURCE is archived, its API "
        "keys and live grants revoked, and every memory moves with its id, versions and "
        "lineage (content TARGET already holds is superseded by TARGET's copy). Prints a "
        "report first; --dry-run stops there. --resume ID continues an interrupted merge "
        "after its last committed batch; --revert ID moves a finished merge back."
    )

    def add_arguments(self, parser):
        parser.add_argument("source", nargs="?", metavar="SOURCE", help="the namespace to merge")
        parser.add_argument("target", nargs="?", metavar="TARGET", help="the namespace to merge into")
        parser.add_argument("--dry-run", action="store_true", help="only report what would happen")
        parser.add_argument("--resume", metavar="ID", help="continue the merge with this id")
        parser.add_argument("--revert", metavar="ID", help="move this finished merge back")

    def handle(self, *args, **opts):
        try:
            if opts["revert"]:
                merge = namespace_merge.revert(OPERATOR, opts["revert"], inline_max=sys.maxsize)
                self.stdout.write(f"reverted: {merge.report.get('moved_back', 0)} memories back "
                                  f"in {merge.source.slug}")
                return
            if opts["resume"]:
                merge = namespace_merge.get(OPERATOR, opts["resume"])
            else:
                if not opts["source"] or not opts["target"]:
                    raise CommandError("give SOURCE and TARGET (or --resume / --revert ID).")
                report = namespace_merge.plan(OPERATOR, opts["source"], opts["target"])
                self.stdout.write(json.dumps(report, indent=2))
                if opts["dry_run"]:
                    return
                merge = namespace_merge.start(OPERATOR, opts["source"], opts["target"])
            self._run(merge)
        except ServiceError as exc:
            raise CommandError(f"{exc.field}: {exc.message}" if exc.field else exc.message
                               ) from None
        except EmbeddedStoreBusy as exc:
            raise CommandError(str(exc)) from None

    def _run(self, merge: NamespaceMerge) -> None:
        with tqdm(total=merge.total, initial=merge.moved, desc="moving", unit="mem",
                  disable=None) as bar:
            state = namespace_merge.run(merge.pk, progress=bar.update)
        merge.refresh_from_db()
        if state is None:
            raise CommandError(f"merge {merge.pk} is {merge.state} (another worker holds it, "
                               "or it has finished).")
        if state != NamespaceMerge.State.DONE:
            raise CommandError(f"merge {merge.pk} {state}: {merge.error}")
        self.stdout.write(f"merge {merge.pk}: {merge.moved} memories moved from "
                          f"{merge.source.slug} into {merge.target.slug} ({merge.duplicates} "
                          "duplicates superseded by the target's copy)")
