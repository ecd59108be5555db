"""manage.py consolidate: find (and with --apply, merge) the memories of a namespace that
say the same thing, with progress bars; no cap on the namespace's size (the REST doors
have MEMORYWEB_CONSOLIDATE_MAX). Beside a running embedded server, the vector work goes
through its admin socket like every command's."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from apps.core.errors import ServiceError
from apps.core.roles import Role
from apps.lifecycle import consolidation
from apps.lifecycle.representation import outcome_row
from apps.memories.vectorstore import EmbeddedStoreBusy
from apps.tenancy.principal import Principal

#: Who a consolidation run from the command line is, in versions and the audit log.
OPERATOR = Principal(label="system:consolidate", agent_id="", role=Role.SYSTEM)


class Command(BaseCommand):
    help = (
        "Consolidate a namespace (docs/lifecycle.md): group memories that say the same thing "
        "(nearest neighbours plus word overlap, never every pair), keep each group's best "
        "member and mark the others superseded by it (reversible: POST "
        "/api/v1/memories/{id}/unmerge). Pairs alike but for a number, a name, a date or a "
        "negation are never merged: they are reported (and with --apply linked) as "
        "conflicts. A dry run unless --apply."
    )

    def add_arguments(self, parser):
        parser.add_argument("namespace", metavar="SLUG", help="the namespace to consolidate")
        parser.add_argument("--apply", action="store_true",
                            help="merge the groups found (default: only list them)")
        parser.add_argument("--threshold", type=float, metavar="COSINE",
                            help="similarity at which two memories say the same thing "
                            "(default MEMORYWEB_CONSOLIDATE_THRESHOLD)")
        parser.add_argument("--agent", metavar="ID", help="only this agent's memories")
        parser.add_argument("--merged-text", choices=("member", "summary"),
                            help="what a merged memory says: its best member's text, or the "
                            "summarizer's text of the group (default: the namespace's "
                            "consolidation.merged_text, else member)")
        parser.add_argument("--kind", help="only memories of this kind")
        parser.add_argument("--tag", action="append", default=[], metavar="TAG",
                            help="only memories with this tag (repeat for several: all of them)")
        parser.add_argument("--json", action="store_true",
                            help="print the whole outcome (proposals, conflicts) as JSON")

    def handle(self, *args, **opts):
        data: dict = {"dry_run": not opts["apply"]}
        if opts["threshold"] is not None:
            data["threshold"] = opts["threshold"]
        if opts["merged_text"]:
            data["merged_text"] = opts["merged_text"]
        filters = {key: value for key, value in (("agent_id", opts["agent"]),
                                                 ("kind", opts["kind"]),
                                                 ("tags", opts["tag"])) if value}
        if filters:
            data["filters"] = filters
        bars: dict[str, tqdm] = {}

        def progress(stage: str, done: int, total: int) -> None:
            bar = bars.get(stage)
            if bar is None:
                bar = bars[stage] = tqdm(total=total, desc=stage, unit="mem" if stage != "apply"
                                         else "group", disable=None)
            bar.update(done)

        try:
            outcome = consolidation.consolidate(OPERATOR, opts["namespace"], data,
                                                progress=progress)
        except ServiceError as exc:
            raise CommandError(f"{exc.field}: {exc.message}" if exc.field else exc.message
                               ) from None
        except EmbeddedStoreBusy as exc:
            raise CommandError(str(exc)) from None
        finally:
            for bar in bars.values():
                bar.close()
        if opts["json"]:
            self.stdout.write(json.dumps(outcome_row(outcome), indent=2))
            return
        members = sum(len(group.members) for group in outcome.groups)
        line = (f"{outcome.namespace.slug}: {outcome.candidates} memories, "
                f"{len(outcome.groups)} groups ({members} memories), "
                f"{len(outcome.conflicts)} conflicts")
        if outcome.dry_run:
            line += "; dry run, nothing changed (--apply to merge)"
        else:
            line += (f"; merged {outcome.merged}, superseded {outcome.superseded}, "
                     f"{outcome.stale} changed meanwhile, {outcome.conflicts_linked} "
                     "conflicts linked")
        self.stdout.write(line)
