"""The memory edit form (issue 17 item 5): tags as commas, a checked JSON editor for
metadata, technical fields read-only and folded away, versions and audit trail in tabs
above the form, the stored memory in the heading after a refused save, HISTORY leading to
the real history, and the list's filters kept through save and revert.

Every save still goes through services.update / ingest (versions, audit, index)."""

from __future__ import annotations

import html
import json
import re
from urllib.parse import quote

import pytest

from apps.audit.models import AuditEntry
from apps.memories.models import Memory, MemoryTag, MemoryVersion
from tests.helpers.people import store

LIST = "/admin/memories/memory/"


def _url(memory: Memory, view: str = "change") -> str:
    return f"{LIST}{memory.pk}/{view}/"


def _form(memory: Memory, **changes) -> dict:
    """The edit form as a browser without script posts it: tags as commas, metadata as
    the pretty-printed JSON the page showed."""
    data = {"content": memory.content, "kind": memory.kind, "tags": ", ".join(memory.tags),
            "metadata": json.dumps(memory.metadata, indent=2),
            "importance": memory.importance, "confidence": memory.confidence,
            "expires_at_0": "", "expires_at_1": "", "valid_from_0": "", "valid_from_1": "",
            "valid_until_0": "", "valid_until_1": "", "occurred_at_0": "", "occurred_at_1": ""}
    data.update(changes)
    return data


def _field_value(page: str, name: str) -> str:
    tag = re.search(rf'<input[^>]* name="{name}"[^>]*>', page).group(0)
    return html.unescape(re.search(r'value="([^"]*)"', tag).group(1))


def _textarea(page: str, name: str) -> str:
    return html.unescape(re.search(rf'<textarea[^>]* name="{name}"[^>]*>\n?(.*?)</textarea>',
                                   page, re.DOTALL).group(1))


def _subtitle(page: str) -> str:
    """The heading under "Change memory": the admin's ``subtitle``."""
    return html.unescape(re.search(r"</h1>\s*<h2>(.*?)</h2>", page, re.DOTALL).group(1))




# --- tags ---------------------------------------------------------------------------------
def test_tags_typed_as_commas_are_saved_as_a_list_without_re_embedding(alice, memories,
                                                                        embed_calls):
    memory = memories["alpha"][0]
    page = alice.get(_url(memory)).content.decode()
    assert _field_value(page, "tags") == "ops"  # shown as commas, not ["ops"]
    assert 'data-mw-tags' in page and "dashboard/edit.js" in page

    response = alice.post(_url(memory), _form(memory, tags="ops, billing ,, urgent, billing"))
    assert response.status_code == 302, response.content.decode()[-3000:]
    memory.refresh_from_db()
    assert memory.tags == ["ops", "billing", "urgent"] and memory.version == 2
    assert sorted(MemoryTag.objects.filter(memory=memory).values_list("tag", flat=True)) == [
        "billing", "ops", "urgent"]
    assert memory.versions.get(version=2).changes == {
        "tags": {"before": ["ops"], "after": ["ops", "billing", "urgent"]}}
    assert AuditEntry.objects.filter(operation="memory.update", actor="user:alice").count() == 1
    assert embed_calls == []  # a tags-only edit keeps the stored vector

    # The old JSON-list input still works; clearing the box clears the tags.
    alice.post(_url(memory), _form(memory, tags='["x", "y"]'))
    memory.refresh_from_db()
    assert memory.tags == ["x", "y"] and memory.version == 3
    alice.post(_url(memory), _form(memory, tags=""))
    memory.refresh_from_db()
    assert memory.tags == [] and memory.version == 4
    assert embed_calls == []


def test_the_add_form_takes_comma_tags_and_goes_through_ingest(alice, alpha):
    page = alice.get(f"{LIST}add/").content.decode()
    assert 'data-mw-tags' in page and 'data-mw-json' in page
    assert "Technical details" not in page  # nothing the server keeps yet
    response = alice.post(f"{LIST}add/", {
        **_form(Memory(content="", kind="fact", tags=[], metadata={}, importance=0.5,
                       confidence=1.0)),
        "namespace": alpha.pk, "content": "Backups run at two.", "tags": "ops, backup",
        "metadata": '{"source": "wiki"}'})
    assert response.status_code == 302, response.content.decode()[-3000:]
    memory = Memory.objects.get(content="Backups run at two.")
    assert (memory.tags, memory.metadata, memory.agent_id) == (
        ["ops", "backup"], {"source": "wiki"}, "user:alice")
    assert AuditEntry.objects.filter(operation="memory.create", actor="user:alice",
                                     records__record_id=str(memory.pk)).exists()


def test_a_tag_the_service_refuses_is_named_and_nothing_changes(alice, memories):
    memory = memories["alpha"][0]
    long_tag = "x" * 70
    response = alice.post(_url(memory), _form(memory, tags=f"ops, {long_tag}"))
    page = response.content.decode()
    assert response.status_code == 200
    assert "Tag “" + "x" * 39 + "…”: Ensure this field has no more than 64 characters." in \
        html.unescape(page)
    assert _field_value(page, "tags") == f"ops, {long_tag}"  # shown back as typed
    too_many = ", ".join(f"t{i}" for i in range(40))
    page = html.unescape(alice.post(_url(memory), _form(memory, tags=too_many)).content.decode())
    assert "At most 32 tags (40 given)." in page
    memory.refresh_from_db()
    assert memory.tags == ["ops"] and memory.version == 1


# --- metadata -----------------------------------------------------------------------------
def test_metadata_is_shown_pretty_printed_in_a_json_editor(alice, alpha):
    memory = store(alpha, "Jane's allergy note.", metadata={"subject_id": "jane", "n": [1, 2]})
    page = alice.get(_url(memory)).content.decode()
    assert 'class="vLargeTextField mw-json-editor"' in page and 'data-max-depth="8"' in page
    assert _textarea(page, "metadata") == (  # keys sorted: PostgreSQL's jsonb reorders them
        '{\n  "n": [\n    1,\n    2\n  ],\n  "subject_id": "jane"\n}')


@pytest.mark.parametrize(("typed", "said"), [
    ('{"subject_id": "jane",}',
     "Not valid JSON: Expecting property name enclosed in double quotes at line 1, column 23."),
    ('{"a": 1\n "b": 2}', "Not valid JSON: Expecting &#x27;,&#x27; delimiter at line 2, column 2."),
    ('["jane"]', "Metadata must be a JSON object ({&quot;key&quot;: value, …}), not a list."),
    ('{"a": NaN}', "Not valid JSON: Out of range float values are not JSON compliant"),
    ('{"a": ' + "[" * 9 + "]" * 9 + "}", "metadata nests deeper than 8 levels."),
    ('{"a": ' + "[" * 100 + "]" * 100 + "}", "JSON nested deeper than 64 levels"),
])
def test_bad_metadata_is_a_form_error_naming_the_problem_and_changes_nothing(
        alice, alpha, memories, typed, said):
    memory = memories["alpha"][0]
    versions, audits = MemoryVersion.objects.count(), AuditEntry.objects.count()
    response = alice.post(_url(memory), _form(memory, metadata=typed,
                                              content="Unsaved words about the deploy key."))
    page = response.content.decode()
    assert response.status_code == 200 and said in page
    assert "Enter a valid JSON" not in page
    # Shown back to be fixed: as typed (JSON that parses comes back indented).
    assert re.sub(r"\s", "", _textarea(page, "metadata")) == re.sub(r"\s", "", typed)
    memory.refresh_from_db()
    assert memory.metadata == {} and memory.version == 1
    assert memory.content == "The deploy key rotates every ninety days."
    assert MemoryVersion.objects.count() == versions and AuditEntry.objects.count() == audits


def test_fixed_metadata_is_saved_through_the_service(alice, memories):
    memory = memories["alpha"][0]
    response = alice.post(_url(memory), _form(memory, metadata='{\n  "subject_id": "jane"\n}'))
    assert response.status_code == 302
    memory.refresh_from_db()
    assert memory.metadata == {"subject_id": "jane"} and memory.version == 2
    assert list(memory.versions.get(version=2).changes) == ["metadata"]
    # Only the layout differs: not a change, no new version.
    alice.post(_url(memory), _form(memory, metadata='{"subject_id":"jane"}'))
    memory.refresh_from_db()
    assert memory.version == 2


# --- technical fields ---------------------------------------------------------------------
def test_technical_fields_are_read_only_in_a_collapsed_fieldset_even_if_posted(
        alice, alpha, beta, memories):
    memory, other = memories["alpha"][0], memories["alpha"][1]
    page = alice.get(_url(memory)).content.decode()
    details = re.search(r"<details>.*?</details>", page, re.DOTALL)
    assert details and "Technical details" in details.group(0)  # folded: <details> not open
    for name in ("content_hash", "access_count", "agent_id", "session_id", "version",
                 "last_recalled_at", "near_duplicate_of", "created_at", "updated_at"):
        assert f"field-{name}" in details.group(0), name
        assert f'name="{name}"' not in page, name
    assert memory.content_hash in details.group(0)
    main = page.split("<details>")[0]
    assert "field-content_hash" not in main and "field-access_count" not in main

    before = Memory.objects.values().get(pk=memory.pk)
    response = alice.post(_url(memory), _form(
        memory, tags="ops, posted", content_hash="0" * 64, access_count="999", version="42",
        agent_id="intruder", session_id="s-evil", namespace=beta.pk, id=str(other.pk),
        created_at_0="2001-01-01", created_at_1="00:00:00", near_duplicate_of=str(other.pk),
        last_recalled_at_0="2001-01-01", last_recalled_at_1="00:00:00"))
    assert response.status_code == 302
    after = Memory.objects.values().get(pk=memory.pk)
    assert after["tags"] == ["ops", "posted"] and after["version"] == 2  # the service's +1
    for name in ("content_hash", "access_count", "agent_id", "session_id", "namespace_id",
                 "created_at", "near_duplicate_of_id", "last_recalled_at"):
        assert after[name] == before[name], name
    assert Memory.objects.get(pk=other.pk).version == 1


# --- layout, heading, history -------------------------------------------------------------
def test_versions_and_audit_trail_are_tabs_above_the_form(alice, memories):
    memory = memories["alpha"][0]
    alice.post(_url(memory), _form(memory, tags="ops, reviewed"))
    page = alice.get(_url(memory)).content.decode()
    nav = re.search(r'<nav class="mw-tabs".*?</nav>', page, re.DOTALL).group(0)
    assert re.findall(r'<a id="(mw-tab-[a-z]+)" href="(#[a-z-]+)"', nav) == [
        ("mw-tab-edit", "#mw-edit"), ("mw-tab-versions", "#versions"),
        ("mw-tab-audit", "#audit-trail"), ("mw-tab-duplicates", "#near-duplicates")]
    assert re.search(r'Versions <span class="mw-count">2</span>', nav)
    assert re.search(r'Audit trail <span class="mw-count">\d+</span>', nav)
    form, submit = page.index('id="memory_form"'), page.index('name="_save"')
    for section in ('id="versions"', 'id="audit-trail"', 'id="near-duplicates"'):
        assert page.index(section) < form < submit, section
    assert page.index('id="mw-edit"') < form


def test_the_heading_shows_the_stored_memory_after_a_refused_save(alice, memories):
    memory = memories["alpha"][0]
    stored = "The deploy key rotates every ninety days."
    assert _subtitle(alice.get(_url(memory)).content.decode()) == stored
    response = alice.post(_url(memory), _form(memory, content="Unsaved draft text",
                                              metadata="{broken"))
    page = response.content.decode()
    assert response.status_code == 200 and "Not valid JSON" in page
    assert _subtitle(page) == stored
    assert re.search(r"<title>(.*?)</title>", page).group(1).startswith(f"Error: {stored} |")
    breadcrumbs = re.search(r'<div class="breadcrumbs">.*?</div>', page, re.DOTALL).group(0)
    assert stored.split()[0] in breadcrumbs and "Unsaved" not in breadcrumbs
    assert _textarea(page, "content") == "Unsaved draft text"  # the form keeps the draft


def test_history_goes_to_the_versions_on_the_change_page(alice, memories):
    memory = memories["alpha"][0]
    response = alice.get(_url(memory, "history"))
    assert response.status_code == 302
    assert response["Location"] == f"{_url(memory)}#versions"
    filtered = alice.get(_url(memory, "history"), {"_changelist_filters": "tag=ops"})
    assert filtered["Location"] == f"{_url(memory)}?_changelist_filters=tag%3Dops#versions"
    page = alice.get(filtered["Location"].split("#")[0]).content.decode()
    assert 'id="versions"' in page and "have a change history" not in page
    # Another namespace's memory: not found, as for its change page.
    theirs = memories["beta"][0]
    refused = alice.get(_url(theirs, "history"), follow=True)
    assert b"walnut" not in refused.content and b"deploy secret" not in refused.content
    assert refused.redirect_chain and refused.redirect_chain[-1][0] == "/admin/"


# --- filters kept -------------------------------------------------------------------------
def test_save_keeps_the_lists_filters(alice, memories):
    memory = memories["alpha"][0]
    filtered = f"{_url(memory)}?_changelist_filters={quote('tag=ops&q=deploy', safe='')}"
    saved = alice.post(filtered, _form(memory, tags="ops, saved"))
    assert saved["Location"] == f"{LIST}?tag=ops&q=deploy"
    kept = alice.post(filtered, {**_form(memory, tags="ops, again"), "_continue": "1"})
    assert kept["Location"] == filtered


def test_revert_keeps_the_lists_filters_end_to_end(alice, memories):
    memory = memories["alpha"][0]
    listed = alice.get(LIST, {"kind__exact": "fact"}).content.decode()
    change = html.unescape(re.search(rf'href="({_url(memory)}\?[^"]+)"', listed).group(1))
    assert change == f"{_url(memory)}?_changelist_filters=kind__exact%3Dfact"
    alice.post(change, {**_form(memory, content="The deploy key rotates every thirty days."),
                        "_continue": "1"})

    page = alice.get(change).content.decode()
    revert = html.unescape(re.search(r'href="([^"]*/revert/1/[^"]*)"', page).group(1))
    assert revert == f"{_url(memory, 'revert/1')}?_changelist_filters=kind__exact%3Dfact"
    back = re.search(r'<a class="mw-back" href="([^"]+)"', page).group(1)
    assert html.unescape(back) == f"{LIST}?kind__exact=fact"
    assert f'href="{LIST}?kind__exact=fact"' in page.split('<div class="breadcrumbs">')[1]

    confirm = alice.get(revert).content.decode()
    cancel = html.unescape(confirm.split('id="mw-confirm-cancel"')[0].rsplit('href="', 1)[1]
                           .split('"')[0])
    assert cancel == f"{change}#versions"
    done = alice.post(revert, {"confirm": "yes"})
    assert done["Location"] == f"{change}#versions"
    memory.refresh_from_db()
    assert memory.version == 3 and memory.content.endswith("ninety days.")
    after = alice.get(done["Location"].split("#")[0]).content.decode()
    assert "Reverted to version 1; this is now version 3." in after
    assert html.unescape(re.search(r'<a class="mw-back" href="([^"]+)"', after).group(1)) == \
        f"{LIST}?kind__exact=fact"
    # ... and saving from there returns to the filtered list.
    memory.refresh_from_db()
    assert alice.post(change, _form(memory))["Location"] == f"{LIST}?kind__exact=fact"
