"""The other stores of an encrypted namespace are sealed too (issue 23, item 1; the
project's rule that every derived store is covered): the gateway's queued exchanges,
learned facts (and their keys: an HMAC, not a SHA-256 of the text) and traces; erasure
requests' selectors, reasons and certificates; the timeline's summaries, parts and grip
excerpts. For each: ciphertext in SQL, plaintext through the app's own read path, the same
write in a plain namespace unchanged (clear text), and a ciphertext moved to another row
fails closed (apps/memories/sealing.py's ``SealedText`` / ``SealedJSON``)."""

from __future__ import annotations

import hashlib

import pytest
from django.db import connection, transaction

from apps.audit.models import AuditEntry
from apps.core import envelope, namespace_keys
from apps.core.key_providers import KeyUnavailable
from apps.core.roles import Role
from apps.gateway import facts, learning, learning_stores, traces
from apps.gateway.models import GatewayTrace, LearnedFact, PendingExchange
from apps.memories.models import Memory
from apps.privacy import certificates
from apps.privacy.models import SELECTOR_GONE, ErasureRequest
from apps.tenancy.principal import Principal
from apps.timeline.build import build
from apps.timeline.models import Grip, RollupNode
from tests.helpers.callers import make_caller
from tests.helpers.erasure import REQUESTS, erase_through_requests
from tests.timeline.conftest import HISTORY, store

SECRET = "Dana's locker code is 4417 and her cat is called Pistachio"


@pytest.fixture(autouse=True)
def no_learner_thread(monkeypatch):
    monkeypatch.setattr(learning, "wake", lambda: None)


def raw(table: str, column: str, pk) -> str:
    model_pk = {"gateway_gatewaytrace": None}.get(table, "uuid")
    value = pk if model_pk is None else PendingExchange._meta.pk.get_db_prep_value(pk, connection)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [value])
        found = cursor.fetchone()[0]
    return found if isinstance(found, str) or found is None else str(found)


def move(table: str, column: str, source, target) -> None:
    """Copy a stored value to another row, as someone with the database file would."""
    prep = (lambda pk: pk) if table == "gateway_gatewaytrace" else (
        lambda pk: PendingExchange._meta.pk.get_db_prep_value(pk, connection))
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {column} = (SELECT {column} FROM {table} "
                       f"WHERE id = %s) WHERE id = %s", [prep(source), prep(target)])


def sealed(value: str | None) -> bool:
    return value is not None and envelope.TEXT_PREFIX in value


def exchange(caller, namespace, **fields) -> PendingExchange:
    return PendingExchange.objects.create(namespace=namespace, api_key=caller.key,
                                          agent_id=caller.key.agent_id, api="chat", **fields)


# --- the gateway -------------------------------------------------------------------------------

def test_queued_exchanges_are_sealed_and_export_reads_them(vault, vault_agent, alpha, agent):
    texts = {"user_text": f"Remember that {SECRET}", "assistant_text": "Noted, Pistachio."}
    mine, plain = exchange(vault_agent, vault, **texts), exchange(agent, alpha, **texts)
    other = exchange(vault_agent, vault, facts=["The VPN needs Pistachio's token"])
    for column in ("user_text", "assistant_text"):
        assert sealed(raw("gateway_pendingexchange", column, mine.pk))
        assert "Pistachio" not in raw("gateway_pendingexchange", column, mine.pk)
        assert raw("gateway_pendingexchange", column, plain.pk) == texts[column]
    assert sealed(raw("gateway_pendingexchange", "facts", other.pk))
    assert "Pistachio" in raw("gateway_pendingexchange", "facts", exchange(
        agent, alpha, facts=["Pistachio"]).pk)
    exported = {row["id"]: row for row in learning_stores.exchanges_export(vault, None)}
    assert exported[str(mine.pk)]["user_text"] == texts["user_text"]
    assert exported[str(other.pk)]["facts"] == ["The VPN needs Pistachio's token"]

    move("gateway_pendingexchange", "user_text", mine.pk, other.pk)
    with pytest.raises(envelope.Undecryptable):
        _ = PendingExchange.objects.get(pk=other.pk).user_text


def teach(caller, text: str) -> None:
    principal = Principal.for_key(caller.key)
    assert learning.enqueue(learning.Taught(principal, caller.key.namespace, ""), "chat", text,
                            "Noted.")
    learning.process_due()


@pytest.mark.django_db(transaction=True)
def test_learned_facts_are_sealed_keyed_and_still_promoted_on_a_second_sighting(
        vault_agent, agent, alpha):
    vault = vault_agent.key.namespace
    teach(vault_agent, "Remember that the staging database is on host pistachio-2.")
    teach(agent, "Remember that the staging database is on host pistachio-2.")
    mine, plain = LearnedFact.objects.get(namespace=vault), LearnedFact.objects.get(namespace=alpha)
    text = "The staging database is on host pistachio-2."
    assert sealed(raw("gateway_learnedfact", "text", mine.pk))
    assert raw("gateway_learnedfact", "text", plain.pk) == text
    assert mine.text == plain.text == text  # the instance opens it
    # The key: a plain SHA-256 of the canonical text would give a short fact away.
    canonical = hashlib.sha256(facts.normalise(text).encode()).hexdigest()
    assert plain.key == canonical and mine.key != canonical
    assert mine.key == facts.key(text, vault) != facts.key(text, alpha)
    assert [row["text"] for row in learning_stores.facts_export(vault, None)] == [text]

    admin = Principal.for_key(make_caller(Role.ADMIN, vault, "admin-v").key)
    edited = learning.edit(admin, mine, "The staging database is on host pistachio-2.")
    assert sealed(raw("gateway_learnedfact", "text", mine.pk))  # the review's update too
    assert edited.text == text

    teach(vault_agent, "note: the staging database is on host pistachio-2")  # seen again
    mine.refresh_from_db()
    assert mine.state == "promoted" and mine.seen_count == 2
    assert sealed(raw("gateway_learnedfact", "text", mine.pk))  # the promotion's update too
    assert Memory.objects.get(pk=mine.memory_id).content == text

    other = LearnedFact.objects.create(namespace=vault, agent_id="a", text="Another fact",
                                       key=facts.key("Another fact", vault))
    move("gateway_learnedfact", "text", mine.pk, other.pk)
    with pytest.raises(envelope.Undecryptable):
        _ = LearnedFact.objects.get(pk=other.pk).text


@pytest.mark.django_db(transaction=True)
def test_a_trace_query_is_sealed_and_the_dashboard_and_export_read_it(
        vault, alpha, settings, client, django_user_model):
    def record(namespace) -> GatewayTrace:
        return traces.record(traces.Trace(namespace, "content", "chat", "gpt", "full",
                                          query=f"what is {SECRET}?"))

    mine, plain = record(vault), record(alpha)
    assert sealed(raw("gateway_gatewaytrace", "query", mine.pk))
    assert raw("gateway_gatewaytrace", "query", plain.pk) == f"what is {SECRET}?"
    assert [row["query"] for row in traces.export(vault, None)] == [f"what is {SECRET}?"]
    admin = django_user_model.objects.create_superuser("root-sealed", "r@example.com", "pw")
    client.force_login(admin)
    page = client.get(f"/admin/gateway/gatewaytrace/{mine.pk}/change/")
    assert page.status_code == 200 and "Pistachio" in page.content.decode()

    second = record(vault)
    move("gateway_gatewaytrace", "query", mine.pk, second.pk)
    with pytest.raises(envelope.Undecryptable):
        _ = GatewayTrace.objects.get(pk=second.pk).query


# --- erasure requests --------------------------------------------------------------------------

def test_an_erasure_requests_selector_reason_and_certificate_are_sealed(
        vault, vault_agent, vault_admin, system_admin, alpha, agent, team_admin):
    subject = "dana.pistachio@example.com"
    for caller in (vault_agent, agent):
        response = caller.post("/api/v1/memories", {"content": SECRET,
                                                    "metadata": {"subject_id": subject}})
        assert response.status_code == 201, response.content
    selector = {"subject_id": subject}
    certificate = erase_through_requests(vault_admin, system_admin, {"namespace": "vault",
                                                                     **selector})
    plain_certificate = erase_through_requests(team_admin, system_admin,
                                               {"namespace": alpha.slug, **selector})
    mine = ErasureRequest.objects.get(namespace=vault)
    plain = ErasureRequest.objects.get(namespace=alpha)
    for column in ("selector", "reason", "certificate"):
        assert sealed(raw("privacy_erasurerequest", column, mine.pk)), column
        assert "pistachio" not in raw("privacy_erasurerequest", column, mine.pk)
        assert "ticket 7" not in raw("privacy_erasurerequest", column, mine.pk)
    assert subject in raw("privacy_erasurerequest", "selector", plain.pk)
    assert subject in raw("privacy_erasurerequest", "certificate", plain.pk)
    # Read paths: the API's request and certificate, the verification of the stored copy.
    shown = vault_admin.get(f"{REQUESTS}/{mine.pk}").json()
    assert shown["selector"] == {"namespace": "vault", **selector}
    assert shown["reason"] == "ticket 7"
    assert certificate["selector"] == shown["selector"]
    assert plain_certificate["selector"]["subject_id"] == subject
    stored = ErasureRequest.objects.get(pk=mine.pk).certificate
    assert stored["certificate_sha256"] == certificate["certificate_sha256"]
    checks = {c.name: c.ok for c in certificates.verify_certificate(stored).checks}
    assert checks["certificate hash"] and checks["audit entry"] and checks["store memories"]

    # The audit log (a plain store) names the subject by the ledger's HMAC only there.
    entries = AuditEntry.objects.filter(operation__in=("erasure.request", "erasure.approve"))
    assert entries.filter(namespace_id=vault.pk).count() == 2
    for entry in entries:
        assert (subject in str(entry.summary)) is (entry.namespace_id == alpha.pk)
    export = vault_admin.get("/api/v1/export", {"namespace": "vault", "subject_id": subject})
    assert export.status_code == 200
    b"".join(export.streaming_content)
    (exported,) = AuditEntry.objects.filter(operation="export", namespace_id=vault.pk)
    assert subject not in str(exported.summary) and exported.summary["subject_id"].startswith("hmac")

    other = ErasureRequest.objects.create(namespace=vault, namespace_slug="vault",
                                          selector={"namespace": "vault", "agent_id": "x"},
                                          requested_by="t")
    move("privacy_erasurerequest", "selector", mine.pk, other.pk)
    assert vault_admin.get(f"{REQUESTS}/{other.pk}").status_code == 503


def test_a_deleted_encrypted_namespaces_requests_still_list(vault, vault_admin, system_admin,
                                                           vault_agent):
    response = vault_agent.post("/api/v1/memories", {"content": SECRET})
    assert response.status_code == 201
    created = vault_admin.post(REQUESTS, {"namespace": "vault", "agent_id": "agent-v",
                                          "reason": "Dana asked"})
    assert created.status_code == 201, created.content
    assert system_admin.delete("/api/v1/namespaces/vault").status_code in (200, 204)
    listed = system_admin.get(REQUESTS)
    assert listed.status_code == 200, listed.content
    (row,) = [r for r in listed.json() if r["id"] == created.json()["id"]]
    assert row["selector"] == SELECTOR_GONE and row["reason"] == ""  # shredded with the key
    assert "Dana" not in raw("privacy_erasurerequest", "reason", row["id"])


# --- the timeline ------------------------------------------------------------------------------

def test_timeline_summaries_parts_and_excerpts_are_sealed(vault, vault_agent, alpha, agent):
    store(vault_agent, HISTORY)
    store(agent, HISTORY)
    assert build(vault).ok and build(alpha).ok
    node = RollupNode.objects.filter(namespace=vault, level="year").get()
    plain = RollupNode.objects.filter(namespace=alpha, level="year").get()
    for column in ("summary", "parts"):
        assert sealed(raw("timeline_rollupnode", column, node.pk)), column
        assert "Priya" not in raw("timeline_rollupnode", column, node.pk)
        assert "Priya" in raw("timeline_rollupnode", column, plain.pk)
    assert node.summary == plain.summary and node.parts == plain.parts
    grips = list(Grip.objects.filter(node=node))
    assert grips and all(sealed(raw("timeline_grip", "excerpt", g.pk)) for g in grips)
    assert not any(sealed(raw("timeline_grip", "excerpt", g.pk))
                   for g in Grip.objects.filter(node=plain))
    fresh = Grip.objects.get(pk=grips[0].pk)  # no cached node: the opener finds it
    assert fresh.excerpt in Memory.objects.get(pk=fresh.memory_id).content
    body = vault_agent.get(f"/api/v1/timeline/{node.pk}")
    assert body.status_code == 200, body.content
    assert "Priya" in body.content.decode()

    move("timeline_grip", "excerpt", grips[0].pk, grips[1].pk)
    with pytest.raises(envelope.Undecryptable):
        _ = Grip.objects.get(pk=grips[1].pk).excerpt


def test_a_destroyed_key_fails_closed_in_the_other_stores_too(vault, vault_agent, vault_admin):
    exchange(vault_agent, vault, user_text=SECRET)
    created = vault_admin.post(REQUESTS, {"namespace": "vault", "agent_id": "agent-v",
                                          "reason": "Dana asked"})
    assert created.status_code == 201, created.content
    namespace_keys.shred(vault.pk)
    namespace_keys.forget_all()
    response = vault_admin.get(f"{REQUESTS}/{created.json()['id']}")
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "key_unavailable"
    with pytest.raises(KeyUnavailable):
        _ = PendingExchange.objects.get(namespace=vault).user_text
    with pytest.raises(KeyUnavailable), transaction.atomic():  # nothing stored in clear instead
        exchange(vault_agent, vault, user_text="a new turn")
    assert PendingExchange.objects.filter(namespace=vault).count() == 1
