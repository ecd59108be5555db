"""schemathesis hooks for tests/schema/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

OpenAPI describes each field; it cannot say "this field must be later than that one" or
"this depends on what the server holds". A schema-valid request that breaks such a rule
gets a 400, which schemathesis reports as "schema-valid request rejected" (ST202). Those
refusals, and only those, are dropped here: each entry is the exact message the server
sends for one documented rule (docs/api.md), so a 400 for any other reason (a field the
schema gets wrong) still fails the run. schemathesis prints how many it dropped.
"""

from __future__ import annotations

import json
import re

import schemathesis

#: (message pattern, the rule it enforces). Anchored at the start of the message.
CROSS_FIELD_RULES: list[tuple[str, str]] = [
    # What depends on the key or on what the server holds.
    (r"namespace is required for this credential\.", "a system key names its namespace"),
    (r"[\w\[\].]*agent(_id)? comes from the API key", "only the key's own agent id"),
    (r"namespace ['\"].*['\"] does not exist\.", "a grant's grantee must exist"),
    (r"name the namespace to delete from", "?namespace= or all_namespaces=true"),
    (r"name one namespace \(\?namespace=\) or every namespace", "not both"),
    (r".* matches nothing you can see in namespace", "an erasure must erase something"),
    (r"a namespace cannot share with itself\.", "grantee = the path's namespace"),
    (r"a namespace cannot be merged into itself\.", "merge target = the source"),
    (r"not proposed for forgetting in ", "only what the review proposed may be forgotten"),
    (r"this key was already rotated", "rotate the newest key"),
    (r"a revoked or expired key cannot be rotated", "rotate a live key"),
    (r"a namespace is required for this role\.", "which roles a key may have"),
    (r"a system-admin key is global; give no namespace\.", "which roles a key may have"),
    (r"a system admin needs no membership\.", "who the user is"),
    (r"the filter matches more than", "how much the namespace holds"),
    (r"this key is revoked; a revoked key cannot be given a new expiry", "revoked stays revoked"),
    # Recall settings that would make every recall empty, or need a configured reranker
    # (docs/recall.md): they depend on the mode and on the server's settings.
    (r"weights\.vector and weights\.lexical are both 0", "a retrieval channel"),
    (r"min_score \S+ .*is above the highest score", "min_score within the mode's range"),
    (r"rerank is true", "a reranker, weighted"),
    (r"rerank applies to hybrid recall only", "rerank with hybrid"),
    # Dates that must be ordered, or in the future (now moves).
    (r"must be after (valid_from|created_after|occurred_after)\.", "ordered dates"),
    (r"(expires_at )?must be in the future\.", "expiry in the future"),
    # Pairs that contradict each other.
    (r"give after or occurred_after, not both\.", "after = occurred_after"),
    (r"X-Memory-After and filters\.after differ\.", "header = filters.after"),
    (r"valid_at and include_invalid contradict each other\.", "one or the other"),
    (r"give ids or filters, not both\.", "seed 003 forget: ids or filters"),
    (r"a batch stores into one namespace\.", "seed 003 batch: one namespace"),
    (r"namespace ['\"].*['\"] differs from the request's namespace", "one namespace a batch"),
    (r"\w+ differs between the body and the query string\.", "body and query agree"),
    # Query parameters cannot be declared mutually exclusive (bodies can: oneOf / not).
    (r"give one of agent_id, session_id, subject_id, ids, not ", "one subject per selector"),
    # Conversation events come only through POST /api/v1/events and keep their kind
    # (issue 20): a store's kind choices leave "event" out, but an edit's list every kind
    # (an event's edit may name its own), so turning a memory into an event, or an event
    # into another kind, is refused by a rule the schema cannot state.
    (r"kind 'event' is for conversation events", "events only through /api/v1/events"),
    (r"an event's kind stays 'event'\.", "an event keeps its kind"),
    # The timeline's range: the bounds' order, and the years it covers (issue 20).
    (r"to must be after from\.", "timeline: to after from"),
    (r"must be in the years 1 to 9998", "timeline: years 1 to 9998"),
    # The end-of-day digest asks for a day that has begun (issue 21; today moves).
    (r"date \S+ is after today", "end of day: not after today"),
    # A namespace's own upstream key file must exist on the server (issue 22).
    (r"no readable file .* in MEMORYWEB_GATEWAY_KEY_DIR", "a key file the server holds"),
    (r"per-namespace key files need MEMORYWEB_GATEWAY_KEY_DIR", "the server's key directory"),
    # Deleting by filter needs a filter.
    (r"give at least one filter \(or ids\)", "seed 003 forget: a filter"),
]
_RULES = re.compile("|".join(f"(?:{pattern})" for pattern, _ in CROSS_FIELD_RULES))


def _message(body: bytes) -> str:
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return ""
    return error.get("message", "") if isinstance(error, dict) else str(error or "")


@schemathesis.hook
def filter_failure(context, failure, case, response) -> bool:
    """Keep every failure except a 400 for one of the rules above."""
    if failure.code != "ST202" or response.status_code != 400:
        return True
    return not _RULES.match(_message(response.content))
