"""manage.py rollup: build a namespace's timeline now (what the ``build_rollups`` job does
on schedule), with a progress bar over the days it looks at."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from apps.memories.vectorstore import EmbeddedStoreBusy
from apps.tenancy.models import Namespace
from apps.tenancy.services import AGENT_ID_RE
from apps.timeline.build import build


class Command(BaseCommand):
    help = (
        "Build a namespace's timeline: segment, day, week, month and year summaries of its "
        "memories and events, each a recallable memory of kind 'summary', with grips to the "
        "sources that support each part (docs/timeline.md). Incremental: only the days whose "
        "memories changed since the last build are summarised again, then their week, month "
        "and year. A node the summariser fails on keeps its previous version and is retried "
        "by the next run; the command then exits with an error listing them."
    )

    def add_arguments(self, parser):
        parser.add_argument("--namespace", required=True, metavar="SLUG",
                            help="the namespace whose timeline to build")
        parser.add_argument("--agent", default="", metavar="ID",
                            help="build this agent's own timeline (its memories only) instead "
                            "of the whole namespace's")
        parser.add_argument("--rebuild", action="store_true",
                            help="summarise every node again, changed or not (after changing "
                            "MEMORYWEB_SUMMARIZER, for example)")

    def handle(self, *args, **opts):
        namespace = Namespace.objects.filter(slug=opts["namespace"]).first()
        if namespace is None:
            raise CommandError(f"no namespace {opts['namespace']!r}")
        agent_id = opts["agent"]
        if agent_id and not AGENT_ID_RE.match(agent_id):
            raise CommandError(f"--agent {agent_id!r} is not an agent id (letters, digits, "
                               "'_', '.', '@', '-')")
        with tqdm(total=0, desc=f"{namespace.slug} days", unit="day", disable=None) as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            try:
                report = build(namespace, agent_id=agent_id, rebuild=opts["rebuild"],
                               progress=progress)
            except EmbeddedStoreBusy as exc:
                raise CommandError(str(exc)) from None
        if report.skipped == "busy":
            raise CommandError("another build of this timeline is running; try again later.")
        if report.skipped:
            raise CommandError(f"namespace {namespace.slug!r} is {report.skipped}; nothing built.")
        built = ", ".join(f"{level} {n}" for level, n in report.built.items()) or "nothing"
        self.stdout.write(f"{namespace.slug}{'/' + agent_id if agent_id else ''}: built {built}; "
                          f"{report.unchanged} unchanged, {report.removed} removed")
        if report.failed:
            lines = [f"  {item['level']} {item['start']}: {item['error']}"
                     for item in report.failed[:20]]
            raise CommandError(f"{len(report.failed)} node(s) not built (kept as they were; "
                               "run again to retry):\n" + "\n".join(lines))
