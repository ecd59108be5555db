"""Erasure: requested, approved, executed; every store checked; a certificate that verifies."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from apps.audit.models import AuditEntry
from apps.core.roles import Role
from apps.memories import lexical
from apps.memories.models import IdempotencyRecord, Memory, MemoryVersion, content_hash
from apps.memories.vectorstore import get_vector_store
from apps.privacy.models import ErasureRequest
from tests.helpers.callers import make_caller

#: Commits for real: the audit anchor advances after each, as certificates check it.
pytestmark = pytest.mark.django_db(transaction=True)
REQUESTS = "/api/v1/erasure-requests"
RARE = "zorblaxian"


@pytest.fixture
def subject(alpha, agent, team_admin):
    """agent-2 stores three memories about Dana (one edited, one with an Idempotency-Key);
    agent-1 stores an unrelated one."""
    dana = make_caller(Role.AGENT, alpha, "agent-2")
    ids = [dana.post("/api/v1/memories", {"content": f"Dana's {RARE} allergy note {i}.",
                                           "metadata": {"subject_id": "dana"}},
                     HTTP_IDEMPOTENCY_KEY=f"k{i}").json()["id"] for i in range(3)]
    team_admin.patch(f"/api/v1/memories/{ids[0]}", {"content": f"Dana's {RARE} allergy: nuts."})
    keep = agent.post("/api/v1/memories", {"content": "The office closes at six."}).json()["id"]
    return {"ids": ids, "keep": keep, "hashes": {content_hash(m.content) for m in
                                                 Memory.objects.filter(pk__in=ids)}}


def _erase(team_admin, system_admin, selector: dict) -> dict:
    """Requested and approved by alpha's team admin, executed by a system admin."""
    created = team_admin.post(REQUESTS, {**selector, "reason": "ticket 42"})
    assert created.status_code == 201, created.content
    assert created.json()["state"] == "requested"
    request_id = created.json()["id"]
    approved = team_admin.post(f"{REQUESTS}/{request_id}/approve")
    assert approved.status_code == 200 and approved.json()["state"] == "approved"
    assert team_admin.post(f"{REQUESTS}/{request_id}/execute").status_code == 403
    executed = system_admin.post(f"{REQUESTS}/{request_id}/execute")
    assert executed.status_code == 200, executed.content
    assert executed.json()["state"] == "executed"
    return executed.json()


def _export_ids(team_admin, query: str) -> set[str]:
    response = team_admin.get(f"/api/v1/export?{query}")
    lines = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    return {line["id"] for line in lines if line["type"] == "memory"}


def test_erasure_reaches_every_store_and_certifies_it(team_admin, system_admin, agent, alpha,
                                                      subject, tmp_path):
    assert _export_ids(team_admin, "agent_id=agent-2") == set(subject["ids"])
    body = _erase(team_admin, system_admin, {"agent_id": "agent-2"})
    certificate = body["certificate"]

    # Export for the subject: nothing. Chroma, keyword index, versions: none of it.
    assert _export_ids(team_admin, "agent_id=agent-2") == set()
    assert not set(subject["ids"]) & get_vector_store().all_ids(alpha)
    query = lexical.prune_common(lexical.build_query(f"{RARE} allergy"), alpha.pk)
    assert lexical.search(alpha.pk, query, 10) == []
    assert lexical.held(alpha.pk, subject["ids"]) == 0
    assert not MemoryVersion.objects.filter(memory_id__in=subject["ids"]).exists()
    assert IdempotencyRecord.objects.count() == 0  # the three that named erased memories

    # The unrelated memory is untouched: in SQL, in Chroma, and recalled.
    assert Memory.objects.get(pk=subject["keep"]).content == "The office closes at six."
    assert subject["keep"] in get_vector_store().all_ids(alpha)
    recalled = agent.post("/api/v1/recall", {"query": "when does the office close"}).json()
    assert recalled["results"][0]["id"] == subject["keep"]

    # The certificate: who, what (hashes, never content), checks, hash in the audit chain.
    assert certificate["requested_by"] == certificate["approved_by"] == (
        f"key:{team_admin.key.prefix}")
    assert certificate["executed_by"] == f"key:{system_admin.key.prefix}"
    assert certificate["selector"] == {"namespace": "alpha", "agent_id": "agent-2"}
    assert {item["id"] for item in certificate["erased"]} == set(subject["ids"])
    assert {item["content_sha256"] for item in certificate["erased"]} == subject["hashes"]
    assert certificate["counts"]["memories"] == 3 and certificate["counts"]["versions"] == 1
    assert certificate["counts"]["idempotency_records"] == 3
    assert all(check["ok"] for check in certificate["verification"].values())
    assert RARE not in json.dumps(certificate)
    entry = AuditEntry.objects.get(seq=certificate["audit"]["seq"])
    assert entry.operation == "erasure.execute"
    assert entry.summary["certificate_sha256"] == certificate["certificate_sha256"]
    operations = [e.operation for e in AuditEntry.objects.order_by("seq")
                  if e.operation.startswith(("erasure.", "memory.erase"))]
    assert operations == ["erasure.request", "erasure.approve", "memory.erase",
                          "erasure.execute"]

    # Download it and verify it against the live stores and the chain.
    downloaded = team_admin.get(f"{REQUESTS}/{body['id']}/certificate")
    assert downloaded.status_code == 200
    assert "attachment" in downloaded["Content-Disposition"]
    path = tmp_path / "certificate.json"
    path.write_text(json.dumps(downloaded.json()))
    call_command("verify_certificate", str(path))


def test_a_tampered_certificate_or_returning_data_fails_verification(team_admin, system_admin,
                                                                     agent, subject, tmp_path,
                                                                     capsys):
    certificate = _erase(team_admin, system_admin, {"subject_id": "dana"})["certificate"]
    path = tmp_path / "certificate.json"
    path.write_text(json.dumps({**certificate, "selector": {"namespace": "alpha"}}))
    with pytest.raises(CommandError, match="certificate hash"):
        call_command("verify_certificate", str(path))
    # The same content stored again: the certificate no longer holds.
    path.write_text(json.dumps(certificate))
    call_command("verify_certificate", str(path))
    agent.post("/api/v1/memories", {"content": f"Dana's {RARE} allergy: nuts."})
    with pytest.raises(CommandError, match="content_hashes"):
        call_command("verify_certificate", str(path))
    assert "FAIL store content_hashes: 1 erased item held" in capsys.readouterr().out


def test_export_erase_export_round_trip(team_admin, system_admin, subject):
    everything = _export_ids(team_admin, "")
    assert set(subject["ids"]) | {subject["keep"]} <= everything
    _erase(team_admin, system_admin, {"ids": subject["ids"][:2]})
    assert _export_ids(team_admin, f"ids={','.join(subject['ids'])}") == {subject["ids"][2]}
    assert _export_ids(team_admin, "") == everything - set(subject["ids"][:2])


def test_state_machine(team_admin, system_admin, subject):
    request_id = team_admin.post(REQUESTS, {"agent_id": "agent-2"}).json()["id"]
    assert system_admin.post(f"{REQUESTS}/{request_id}/execute").status_code == 409
    assert team_admin.get(f"{REQUESTS}/{request_id}/certificate").status_code == 404
    rejected = team_admin.post(f"{REQUESTS}/{request_id}/reject", {"reason": "not the subject"})
    assert rejected.json()["state"] == "rejected"
    assert rejected.json()["rejection_reason"] == "not the subject"
    assert team_admin.post(f"{REQUESTS}/{request_id}/approve").status_code == 409
    assert team_admin.post(f"{REQUESTS}/{request_id}/reject", {"reason": "again"}).status_code == 409
    assert system_admin.post(f"{REQUESTS}/{request_id}/execute").status_code == 409
    done = _erase(team_admin, system_admin, {"agent_id": "agent-2"})
    assert system_admin.post(f"{REQUESTS}/{done['id']}/execute").status_code == 409
    listed = team_admin.get(f"{REQUESTS}?state=rejected").json()
    assert [r["id"] for r in listed] == [request_id]
    assert team_admin.get(f"{REQUESTS}?state=bogus").status_code == 400


def test_who_may_request_approve_and_execute(team_admin, reader, agent, outsider, beta,
                                             system_admin, subject):
    assert reader.post(REQUESTS, {"agent_id": "agent-2"}).status_code == 403
    assert agent.post(REQUESTS, {"agent_id": "agent-2"}).status_code == 403
    assert outsider.post(REQUESTS, {"namespace": "alpha", "agent_id": "x"}).status_code == 404
    request_id = team_admin.post(REQUESTS, {"agent_id": "agent-2"}).json()["id"]
    beta_admin = make_caller(Role.ADMIN, beta, "beta-admin")
    assert beta_admin.get(f"{REQUESTS}/{request_id}").status_code == 404
    assert beta_admin.post(f"{REQUESTS}/{request_id}/approve").status_code == 404
    assert beta_admin.get(REQUESTS).json() == []
    assert team_admin.post(REQUESTS, {"agent_id": "agent-2", "execute": True}).status_code == 403
    immediate = system_admin.post(REQUESTS, {"namespace": "alpha", "agent_id": "agent-2",
                                             "execute": True})
    assert immediate.status_code == 201 and immediate.json()["state"] == "executed"
    assert not Memory.objects.filter(pk__in=subject["ids"]).exists()


def test_forget_certified_is_the_one_call_form_for_system_admins(system_admin, team_admin,
                                                                 subject):
    assert team_admin.delete("/api/v1/forget/certified?agent_id=agent-2").status_code == 403
    response = system_admin.client.delete("/api/v1/forget/certified", {
        "namespace": "alpha", "subject_id": "dana"}, format="json")
    assert response.status_code == 200, response.content
    assert {item["id"] for item in response.json()["erased"]} == set(subject["ids"])
    assert ErasureRequest.objects.get().state == "executed"


@pytest.mark.parametrize(("body", "field"), [
    ({}, "agent_id"),
    ({"agent_id": "a", "session_id": "b"}, "session_id"),
    ({"ids": ["nope"]}, "ids"),
    ({"agent_id": "a", "color": "red"}, "color"),
])
def test_bad_erasure_requests_are_400(team_admin, body, field):
    response = team_admin.post(REQUESTS, body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"].startswith(field)
    assert not ErasureRequest.objects.exists()


def test_vector_index_down_leaves_the_request_executing_until_retried(
        team_admin, system_admin, chroma_server, alpha):
    make = make_caller(Role.AGENT, alpha, "agent-2")
    ids = [make.post("/api/v1/memories", {"content": f"outage note {i}"}).json()["id"]
           for i in range(2)]
    request_id = team_admin.post(REQUESTS, {"agent_id": "agent-2"}).json()["id"]
    team_admin.post(f"{REQUESTS}/{request_id}/approve")
    chroma_server.stop()
    failed = system_admin.post(f"{REQUESTS}/{request_id}/execute")
    assert failed.status_code == 503
    stuck = ErasureRequest.objects.get(pk=request_id)
    assert stuck.state == "executing" and "vector index" in stuck.last_error
    assert not Memory.objects.filter(pk__in=ids).exists()  # SQL is done already
    chroma_server.start()
    finished = system_admin.post(f"{REQUESTS}/{request_id}/execute")
    assert finished.status_code == 200 and finished.json()["state"] == "executed"
    assert not set(ids) & get_vector_store().all_ids(alpha)
    assert all(c["ok"] for c in finished.json()["certificate"]["verification"].values())


def test_numeric_subject_ids_are_erased_too(team_admin, system_admin, agent):
    numeric = agent.post("/api/v1/memories", {"content": "Patient 42 prefers mornings.",
                                              "metadata": {"subject_id": 42}}).json()["id"]
    text = agent.post("/api/v1/memories", {"content": "Patient 42 visited twice.",
                                           "metadata": {"subject_id": "42"}}).json()["id"]
    certificate = _erase(team_admin, system_admin, {"subject_id": "42"})["certificate"]
    assert {item["id"] for item in certificate["erased"]} == {numeric, text}


def test_identical_content_of_another_subject_is_retained_and_listed(team_admin, system_admin,
                                                                     agent, alpha, tmp_path):
    """Ingest deduplicates identical text, an edit does not: another record may hold the
    same words. It stays (it is not the subject's), and the certificate says so."""
    mine = agent.post("/api/v1/memories", {"content": "Meet at the north gate.",
                                           "metadata": {"subject_id": "ann"}}).json()["id"]
    other = agent.post("/api/v1/memories", {"content": "Meet somewhere."}).json()["id"]
    team_admin.patch(f"/api/v1/memories/{other}", {"content": "Meet at the north gate."})
    certificate = _erase(team_admin, system_admin, {"subject_id": "ann"})["certificate"]
    assert [item["id"] for item in certificate["erased"]] == [mine]
    assert [item["id"] for item in certificate["retained"]] == [other]
    assert all(check["ok"] for check in certificate["verification"].values())
    path = tmp_path / "certificate.json"
    path.write_text(json.dumps(certificate))
    call_command("verify_certificate", str(path))
    assert Memory.objects.filter(pk=other).exists()


def test_a_second_execution_neither_erases_again_nor_certifies_twice(team_admin, system_admin,
                                                                     subject):
    from apps.privacy import erasure
    from apps.tenancy.principal import Principal

    root = Principal.for_key(system_admin.key)
    request_id = team_admin.post(REQUESTS, {"agent_id": "agent-2"}).json()["id"]
    team_admin.post(f"{REQUESTS}/{request_id}/approve")
    stale = ErasureRequest.objects.get(pk=request_id)  # what a concurrent call had read
    first = erasure.execute(root, request_id)
    erasure._delete(root, stale.pk, stale.namespace)  # the late one: must change nothing
    erasure._certify(root, stale, stale.namespace, {})
    after = ErasureRequest.objects.get(pk=request_id)
    assert after.erased == first.erased and len(after.erased) == 3
    assert after.certificate_sha256 == first.certificate_sha256
    assert AuditEntry.objects.filter(operation="erasure.execute").count() == 1


def test_reject_with_a_non_object_body_is_a_400(team_admin, subject):
    request_id = team_admin.post(REQUESTS, {"agent_id": "agent-2"}).json()["id"]
    for body in ([1, 2], "text", 5):
        response = team_admin.client.post(f"{REQUESTS}/{request_id}/reject", body, format="json")
        assert response.status_code == 400, body
    response = team_admin.post(f"{REQUESTS}/{request_id}/reject", {"why": "typo"})
    assert response.status_code == 400 and response.json()["error"]["field"] == "why"
    assert ErasureRequest.objects.get(pk=request_id).state == "requested"
