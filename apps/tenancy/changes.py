"""Signals tenancy sends when a credential, a grant or a namespace changes, for whoever
must react.

The live WebSocket feeds (apps/live/receivers.py) close or re-check the connections
of a changed key or a revoked grant. Tenancy sits below live, so it announces the change
and live listens — a Django signal, sent inside the service's transaction; receivers
defer their own work to the commit.
"""

from __future__ import annotations

from django.dispatch import Signal

#: A key was changed (``action="key_changed"``: rotated, its scope edited) or revoked
#: (``action="key_revoked"``). Arguments: ``key_id``, ``action``.
key_changed = Signal()

#: A namespace is about to be deleted (sent before its rows go, outside the transaction):
#: apps that keep its data outside SQL drop it — memories drops its vector collection
#: first, so a failed SQL delete leaves rows a reindex can rebuild from, never an orphan
#: collection nothing points at. Arguments: ``namespace``.
namespace_deleting = Signal()

#: A sharing grant was revoked. Arguments: ``grant_id``.
grant_revoked = Signal()
