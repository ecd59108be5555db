"""The gateway's background work for huey (found by ``autodiscover_modules("tasks")``):
each minute, learn from the exchanges left queued — after a restart, for a retry that is
due, or in a deployment where the server process that queued them is gone. The learner
thread of the process that answered usually got there first; a row is claimed by one
worker at a time (apps/gateway/learning.py), so the two never learn twice."""

from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from apps.gateway import learning


@db_periodic_task(crontab(minute="*"))
def learn_pending_exchanges() -> None:
    while learning.process_due(limit=50):
        pass
