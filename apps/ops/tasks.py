"""The name under which huey knows every scheduled job's task: ``apps.ops.tasks.<job>``.

The jobs themselves are declared by the apps that own them (apps/memories/tasks.py,
apps/privacy/tasks.py, apps/audit/tasks.py) through ``apps.ops.jobs.register``, which
names each task after this module, where they were all listed before, so queued
messages keep their name. The names resolve here too, for scripts and people:
``from apps.ops.tasks import audit_verify_full; audit_verify_full()`` queues a run.
"""

from __future__ import annotations

from huey.api import TaskWrapper

from apps.ops.jobs import TASKS


def __getattr__(name: str) -> TaskWrapper:
    """A registered job's huey task by its name (PEP 562)."""
    try:
        return TASKS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}: no job "
                             f"named so is registered") from None


def __dir__() -> list[str]:
    return sorted([*globals(), *TASKS])
