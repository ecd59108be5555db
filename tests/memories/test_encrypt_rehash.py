"""``manage.py encrypt_namespace`` recomputes the other stores' keyed hashes (issue 23,
docs/encryption.md "Turning encryption on"): a learned fact's ``key`` was a plain SHA-256
of its canonical text while the namespace was plain and must become the HMAC the learner
computes once it is encrypted, or the fact's next sighting starts a second row. Also: a
sighting between the switch and the sweep (two rows, merged), the verification's count of
unkeyed hashes, idempotence, and ``--reseal`` (purpose keys come from key version 1: the
keys stay valid)."""

from __future__ import annotations

import hashlib
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from apps.audit.models import AuditEntry
from apps.core import namespace_keys
from apps.gateway import facts, learning
from apps.gateway.models import FactState, LearnedFact
from apps.memories import encrypt_existing
from apps.memories.models import Memory
from apps.tenancy.principal import Principal

#: The learner's functions tidy the thread's connections, as on the server's threads.
pytestmark = pytest.mark.django_db(transaction=True)

FACT = "Remember that the staging database is on host db-2."
CANONICAL = facts.normalise(FACT)


@pytest.fixture(autouse=True)
def no_learner_thread(monkeypatch):
    monkeypatch.setattr(learning, "wake", lambda: None)


def teach(caller, text: str) -> None:
    principal = Principal.for_key(caller.key)
    assert learning.enqueue(learning.Taught(principal, caller.key.namespace, ""), "chat",
                            text, "Noted.")
    learning.process_due()


def encrypt(*args: str) -> str:
    out = StringIO()
    call_command("encrypt_namespace", *args, "--settle-seconds", "0", stdout=out, stderr=StringIO())
    return out.getvalue()


def stored_keys(namespace) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT key FROM gateway_learnedfact WHERE namespace_id = %s", [namespace.pk])
        return [row[0] for row in cursor.fetchall()]


def plain(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_fact_seen_before_the_switch_is_matched_by_its_next_sighting(agent, alpha):
    teach(agent, FACT)
    assert stored_keys(alpha) == [plain(CANONICAL)]

    out = encrypt("alpha")

    alpha.refresh_from_db()
    keyed = facts.key(FACT, alpha)
    assert keyed != plain(CANONICAL)
    assert stored_keys(alpha) == [keyed]  # the HMAC, nothing a dictionary finds
    assert "1 of their hashes keyed" in out and "0 hashes of other stores not keyed" in out
    summary = AuditEntry.objects.get(operation="encryption.namespace_sealed").summary
    assert summary["store_hashes_keyed"] == 1 and summary["left_stale_store_hashes"] == 0

    teach(agent, "note: the staging database is on host db-2")  # the next sighting
    (fact,) = LearnedFact.objects.filter(namespace=alpha)
    assert fact.seen_count == 2 and fact.state == FactState.PROMOTED  # one fact, promoted
    assert Memory.objects.get(pk=fact.memory_id).content == "The staging database is on host db-2."


def test_a_sighting_between_the_switch_and_the_sweep_is_merged_into_the_older_row(agent, alpha):
    teach(agent, FACT)
    older = LearnedFact.objects.get(namespace=alpha)
    encrypt_existing.turn_on(alpha, "system:test")  # the flag is on, the sweep not run yet
    teach(agent, "Remember: the staging database is on host db-2")
    assert LearnedFact.objects.filter(namespace=alpha).count() == 2  # the plain key missed
    assert LearnedFact.objects.get(namespace=alpha, seen_count=1, key=facts.key(FACT, alpha))

    encrypt("alpha")

    (fact,) = LearnedFact.objects.filter(namespace=alpha)
    assert fact.pk == older.pk and fact.seen_count == 2 and fact.key == facts.key(FACT, alpha)
    assert fact.first_seen_at == older.first_seen_at and fact.last_seen_at > older.last_seen_at
    summary = AuditEntry.objects.get(operation="encryption.namespace_sealed").summary
    assert summary["store_rows_merged"] == 1 and summary["left_stale_store_hashes"] == 0
    learning.process_due()  # the merged fact is at the threshold: promoted as if seen twice
    fact.refresh_from_db()
    assert fact.state == FactState.PROMOTED and fact.memory_id


def test_the_verification_counts_an_unkeyed_hash_and_a_second_run_keys_it(agent, alpha):
    teach(agent, FACT)
    teach(agent, "Remember that the release train leaves on Thursdays.")
    encrypt("alpha")
    assert encrypt_existing.stale_store_hashes(alpha) == 0
    again = encrypt("alpha")
    assert "0 of their hashes keyed" in again  # idempotent: nothing left to do
    # A writer that still held the namespace as plain (docs: "Not covered") wrote a plain key.
    one = LearnedFact.objects.filter(namespace=alpha).order_by("pk").first()
    LearnedFact.objects.filter(pk=one.pk).update(key=plain(facts.normalise(one.text)))
    alpha.refresh_from_db()
    assert encrypt_existing.stale_store_hashes(alpha) == 1
    counts = encrypt_existing.verify(alpha, encrypt_existing.Counts())
    assert counts.left_stale_store_hashes == 1

    out = encrypt("alpha")

    assert "1 of their hashes keyed" in out and "0 hashes of other stores not keyed" in out
    assert sorted(stored_keys(alpha)) == sorted(facts.key(f.text, alpha)
                                                 for f in LearnedFact.objects.filter(namespace=alpha))


def test_reseal_leaves_the_keys_valid(agent, alpha):
    teach(agent, FACT)
    encrypt("alpha")
    alpha.refresh_from_db()
    before = stored_keys(alpha)
    namespace_keys.new_version(alpha.pk)  # rotate_keys --namespace alpha

    out = encrypt("alpha", "--reseal")

    assert "0 of their hashes keyed" in out and "retired data key version" not in out
    assert stored_keys(alpha) == before == [facts.key(FACT, alpha)]
    teach(agent, "note: the staging database is on host db-2")
    (fact,) = LearnedFact.objects.filter(namespace=alpha)
    assert fact.seen_count == 2


# --- a timeline node's erased-content hash ------------------------------------------------
# Not recomputable: the text it hashes was erased. The check that keeps the erased text
# from being built again accepts the hash as it was stored before the switch.

def test_an_erased_summary_stays_erased_after_the_switch(alpha, agent, team_admin, system_admin):
    from apps.timeline.build import build
    from apps.timeline.models import NodeStatus, RollupNode
    from tests.helpers.erasure import erase_through_requests
    from tests.timeline.conftest import HISTORY
    from tests.timeline.conftest import store as store_history

    store_history(agent, HISTORY)
    assert build(alpha).ok
    day = RollupNode.objects.get(level="day", start__date="2024-01-31")
    erase_through_requests(team_admin, system_admin, {"ids": [str(day.memory_id)]})
    day.refresh_from_db()
    assert day.status == NodeStatus.ERASED and len(day.erased_content_sha256) == 64

    encrypt("alpha")

    alpha.refresh_from_db()
    # The same inputs read as changed (a rebuild must run): the same text comes out of
    # the summariser, and the node stays empty rather than bringing the erased text back.
    RollupNode.objects.filter(pk=day.pk).update(input_digest="")
    assert build(alpha).ok
    day.refresh_from_db()
    assert (day.status, day.summary, day.memory_id) == (NodeStatus.ERASED, "", None)


def test_two_rows_decided_differently_are_left_for_a_person(agent, alpha, team_admin):
    from django.core.management.base import CommandError

    teach(agent, FACT)
    older = LearnedFact.objects.get(namespace=alpha)
    learning.reject(Principal.for_key(team_admin.key), older)
    encrypt_existing.turn_on(alpha, "system:test")  # the flag is on, the sweep not run yet
    teach(agent, "Remember: the staging database is on host db-2")
    newer = LearnedFact.objects.get(namespace=alpha, key=facts.key(FACT, alpha))
    memory = Memory.objects.filter(namespace=alpha).first() or Memory.objects.create(
        namespace=alpha, agent_id="agent-1", content="The staging database is on host db-2.")
    LearnedFact.objects.filter(pk=newer.pk).update(state=FactState.PROMOTED, memory_id=memory.pk)

    with pytest.raises(CommandError):  # the verification names the row left unkeyed
        encrypt("alpha")

    rows = {f.pk: f for f in LearnedFact.objects.filter(namespace=alpha)}
    assert set(rows) == {older.pk, newer.pk}  # neither decision dropped
    assert rows[older.pk].state == FactState.REJECTED
    assert rows[newer.pk].state == FactState.PROMOTED and rows[newer.pk].memory_id == memory.pk
