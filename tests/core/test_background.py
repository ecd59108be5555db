"""Periodic background jobs keep running after a failed run."""

import threading

from apps.core.background import run_every


def test_job_runs_again_after_an_error(db):
    calls: list[int] = []
    second_run = threading.Event()

    def job():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the first run fails")
        second_run.set()

    run_every(0.01, job, "test-job")
    assert second_run.wait(timeout=10)
