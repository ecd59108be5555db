from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apps.ops import jobs


class Command(BaseCommand):
    help = ("Background jobs (seed 001's scheduler commands): `status` lists every job with "
            "its schedule, state and last run; `pause NAME` / `resume NAME` stop or restart "
            "a job for every worker (kept in the database, so it survives restarts); "
            "`run NAME` runs one now in this process, under the same rules as the scheduler.")

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["status", "pause", "resume", "run"])
        parser.add_argument("name", nargs="?", help=f"one of: {', '.join(jobs.JOBS)}")

    def handle(self, action, name, **options):
        if action == "status":
            return self._status()
        if name not in jobs.JOBS:
            raise CommandError(f"name a job: one of {', '.join(jobs.JOBS)}.")
        if action in ("pause", "resume"):
            state = jobs.set_paused(name, action == "pause", by="manage.py jobs")
            self.stdout.write(f"{name}: {'paused' if state.paused else 'active'}")
        else:
            result = jobs.run_job(name)
            self.stdout.write(f"{name}: skipped (paused or already running)" if result is None
                              else f"{name}: ok {result}")

    def _status(self):
        now = timezone.now()
        self.stdout.write(f"{'job':<20} {'state':<8} {'schedule':<18} {'last run':<22} "
                          f"{'outcome':<8} {'runs':>6} {'failed':>6}")
        for job, state in jobs.states():
            if state.running_since:
                status = "running"
            else:
                status = "paused" if state.paused else "active"
            last = (f"{int((now - state.last_started_at).total_seconds())} s ago"
                    if state.last_started_at else "never")
            self.stdout.write(f"{job.name:<20} {status:<8} {job.schedule:<18} {last:<22} "
                              f"{state.last_outcome or '-':<8} {state.runs:>6} {state.failures:>6}")
            if state.running_since:
                beat = (f"heartbeat {int((now - state.heartbeat_at).total_seconds())} s ago"
                        if state.heartbeat_at else "no heartbeat")
                self.stdout.write(f"    on {state.running_on or '?'}, {beat}")
            if state.last_outcome == "error":
                self.stdout.write(f"    last error: {state.last_error.splitlines()[0][:200]}")
