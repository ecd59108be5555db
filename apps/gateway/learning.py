"""The gateway learns from exchanges: queue, extract, quarantine, promote (docs/gateway.md,
"Learning").

**Queue.** After the answer went to the client (apps/gateway/http.py), an exchange whose
memory mode may store (``full``, ``after``; never ``readonly``/``off`` nor a reader key)
is **redacted** (``memoryweb_capture.redact``, the capture hooks' patterns) and written
as a :class:`~apps.gateway.models.PendingExchange`: only the redacted text is ever held.
With the offline extractor (regular expressions, no network) the facts are taken right
there, on that pool thread after the answer: an exchange without one (a question) writes
nothing, and one with facts is queued holding only them.
The process's learner thread is woken; the queue is SQL, so a restart loses nothing (the
learner, or the minute's ``learn_pending_exchanges`` task in apps/gateway/tasks.py, finds
the rows again).

**Process** (:func:`process_due`, off the request path, on the learner thread or huey's
worker): claim a due row (a conditional UPDATE: one worker per row), extract its facts
(apps/gateway/extract.py), keep them on the row (redacted) and drop the exchange's text,
then apply them one by one, each in its own transaction that also counts it applied, so
a worker that stops midway resumes after the last fact it applied. A failed extraction
(the model upstream answers 500, times out…) leaves the row for later with a growing
delay (``RETRY_DELAYS``); after ``MAX_ATTEMPTS`` it is kept, ``failed``, for an operator.

**Apply one fact**, in this order:

1. it repeats a live memory of the namespace (the same content hash, or a near-duplicate
   by embedding at the namespace's near-duplicate threshold): that memory is
   **strengthened** — counted as used again (``access_count`` + 1 and its age refreshed,
   the ``use`` and ``age`` parts of apps/memories/strength.py), audited; no quarantine row;
2. it is a known fact (the same canonical text, apps/gateway/facts.py: near-identical
   texts share it): a **sighting** (``seen_count`` + 1 once per exchange); a
   quarantined fact seen ``MEMORYWEB_GATEWAY_PROMOTE_AFTER`` times is **promoted**;
3. else it enters **quarantine**: low confidence, never recalled nor injected (it is no
   memory).

**Promotion** stores the fact through the memories' one write path, ``services.ingest``,
with the principal of the key that taught it (audited as every write): confidence
``PROMOTED_CONFIDENCE``, tag ``learned``, metadata ``{"source": "gateway"}``. A team admin
may also :func:`approve` (optionally with edited text) or :func:`reject` a fact.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.audit.log import record as audit
from apps.core.errors import Conflict, InvalidInput, NotFound
from apps.core.roles import Action
from apps.memories import indexing, recall_stats, sealing, services
from apps.memories.models import Memory, MemoryKind, content_hash
from apps.memories.vectorstore import get_vector_store
from apps.tenancy.models import ApiKey, Namespace
from apps.tenancy.principal import Principal
from apps.tenancy.services import authorize, resolve_namespace
from memoryweb_capture.redact import redact

from . import extract, facts, metrics
from .models import FactState, LearnedFact, PendingExchange

log = logging.getLogger("memoryweb.gateway.learning")

#: A quarantined fact's confidence, and a promoted memory's.
QUARANTINE_CONFIDENCE = 0.3
PROMOTED_CONFIDENCE = 0.6
LEARNED_TAG = "learned"
#: Delays before the next attempt after a failed one (the last repeats).
RETRY_DELAYS = (timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10),
                timedelta(hours=1))
MAX_ATTEMPTS = 8
#: How long a worker's claim on an exchange holds before another may take it over.
CLAIM = timedelta(minutes=5)
#: The learner thread also looks for due rows this often (retries, leftovers).
POLL_SECONDS = 30.0


# --- the queue ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Taught:
    """Who taught an exchange: the key's principal, its namespace, and the session."""

    principal: Principal
    namespace: Namespace
    session_id: str = ""


def enqueue(taught: Taught, api: str, user_text: str, assistant_text: str) -> str | None:
    """Queue one answered exchange, redacted; wake the learner. Returns the row's id (None:
    nothing to learn from). Runs on a pool thread after the answer was sent."""
    user_text = redact(user_text or "").strip()
    if not user_text:
        return None
    key_id = getattr(taught.principal, "key_id", None)
    if key_id is None:
        return None  # the gateway admits keys only; a user session never gets here
    assistant_text = redact(assistant_text or "").strip()
    found = None
    if extract.choice(taught.namespace)[0] == "offline":
        # A few regular expressions, no network: done here, so an exchange without a fact
        # (most: questions) writes nothing, and one with facts holds only them.
        found = _extract_with(extract.HeuristicExtractor(), user_text, assistant_text)
        if not found:
            return None
    close_old_connections()
    try:
        row = PendingExchange.objects.create(
            namespace=taught.namespace, api_key_id=key_id, agent_id=taught.principal.agent_id,
            session_id=taught.session_id[:128], api=api, facts=found,
            user_text="" if found is not None else user_text,
            assistant_text="" if found is not None else assistant_text)
    finally:
        close_old_connections()
    metrics.LEARN_QUEUED.labels(route=api).inc()
    wake()
    return str(row.pk)


# --- the learner thread -------------------------------------------------------------------

_wake = threading.Event()
_thread: threading.Thread | None = None
_thread_lock = threading.Lock()


def wake() -> None:
    """Start the process's learner thread (once) and have it look for work now."""
    global _thread
    with _thread_lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_learner, name="gateway-learner", daemon=True)
            _thread.start()
    _wake.set()


def _learner() -> None:
    while True:
        _wake.wait(POLL_SECONDS)
        _wake.clear()
        try:
            while process_due() and not _wake.is_set():
                pass
        except Exception:
            log.exception("gateway learner: a pass failed")
        finally:
            close_old_connections()


def process_due(limit: int = 20) -> int:
    """Process up to ``limit`` due exchanges (claimed one by one); returns how many were
    finished. Also promotes facts left at the threshold by a worker that stopped."""
    done = 0
    for pk in PendingExchange.objects.filter(
            failed=False, next_attempt_at__lte=timezone.now()).filter(
            Q(claimed_until__isnull=True) | Q(claimed_until__lt=timezone.now())
            ).order_by("next_attempt_at").values_list("pk", flat=True)[:limit]:
        if process(pk):
            done += 1
    LearnedFact.objects.filter(  # promotions whose process stopped: quarantined again
        state=FactState.PROMOTING, decided_at__lt=timezone.now() - CLAIM).update(
        state=FactState.QUARANTINED, decided_at=None)
    for fact in LearnedFact.objects.filter(state=FactState.QUARANTINED,
                                           seen_count__gte=_threshold(),
                                           api_key__in=ApiKey.objects.active())[:limit]:
        _promote_quietly(fact, None, "seen")
    return done


def process(pk: Any) -> bool:
    """Claim one exchange and learn from it; True when it is finished (and gone)."""
    now = timezone.now()
    claimed = PendingExchange.objects.filter(pk=pk, failed=False).filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)).update(
        claimed_until=now + CLAIM, attempts=F("attempts") + 1)
    if not claimed:
        return False
    row = PendingExchange.objects.select_related("namespace", "api_key").get(pk=pk)
    key = ApiKey.objects.active().filter(pk=row.api_key_id).first()
    if key is None:  # revoked since: what it taught is no longer trusted
        row.delete()
        return True
    principal = Principal.for_key(key)
    if row.facts is None:
        try:
            found = _extract(row)
        except extract.ExtractionError as exc:
            _retry_later(row, "extract", str(exc))
            return False
        # The facts kept, the exchange's own text dropped; an encrypted namespace's facts
        # sealed (update() calls no pre_save: sealing.for_update does it).
        row.facts, row.user_text, row.assistant_text = found, "", ""
        with transaction.atomic():
            PendingExchange.objects.filter(pk=pk).update(**sealing.for_update(
                row, "facts", "user_text", "assistant_text"))
    try:
        for index in range(row.applied, len(row.facts)):
            promote = _apply(principal, row, row.facts[index], index)
            if promote is not None:
                _promote_quietly(promote, principal, "seen")
    except Exception as exc:
        _retry_later(row, "apply", type(exc).__name__)
        raise
    row.delete()
    return True


def _extract(row: PendingExchange) -> list[str]:
    return _extract_with(extract.extractor(row.namespace), row.user_text, row.assistant_text)


def _extract_with(chosen: extract.Extractor, user_text: str, assistant_text: str) -> list[str]:
    found = chosen.extract(extract.Exchange(user_text, assistant_text))
    found = [redact(text) for text in found if text and text.strip()]
    metrics.EXTRACTED.labels(extractor=chosen.name).inc(len(found))
    return found


def _retry_later(row: PendingExchange, stage: str, problem: str) -> None:
    metrics.LEARN_FAILURES.labels(stage=stage).inc()
    attempts = PendingExchange.objects.filter(pk=row.pk).values_list("attempts", flat=True).first()
    if attempts is None:
        return
    delay = RETRY_DELAYS[min(attempts - 1, len(RETRY_DELAYS) - 1)]
    failed = attempts >= MAX_ATTEMPTS
    PendingExchange.objects.filter(pk=row.pk).update(
        claimed_until=None, next_attempt_at=timezone.now() + delay, failed=failed,
        last_error=redact(problem)[:300])
    log.warning("gateway learning: exchange %s %s failed (attempt %d%s): %s", row.pk, stage,
                attempts, ", given up" if failed else "", redact(problem)[:300])


def _threshold() -> int:
    return settings.MEMORYWEB_GATEWAY_PROMOTE_AFTER


# --- one fact -----------------------------------------------------------------------------

def _apply(principal: Principal, row: PendingExchange, text: str, index: int
           ) -> LearnedFact | None:
    """Apply fact ``index`` of the exchange (see the module docstring) in one transaction
    that also counts it applied. Returns a fact to promote now (after the commit)."""
    namespace = row.namespace
    repeated = _existing_memory(namespace, text)
    with transaction.atomic():
        advanced = PendingExchange.objects.filter(pk=row.pk, applied=index).update(
            applied=index + 1)
        if not advanced:
            return None  # applied already (a worker that stopped after this commit)
        row.applied = index + 1
        if repeated is not None:
            _strengthen(principal, namespace, repeated)
            return None
        key = facts.key(text, namespace)
        if any(facts.key(other, namespace) == key for other in row.facts[:index]):
            return None  # stated twice in one exchange: one sighting
        known = _known_fact(namespace, key)
        now = timezone.now()
        if known is None:
            LearnedFact.objects.create(
                namespace=namespace, api_key_id=row.api_key_id, agent_id=row.agent_id,
                session_id=row.session_id, text=text, key=key,
                confidence=QUARANTINE_CONFIDENCE, first_seen_at=now, last_seen_at=now)
            metrics.QUARANTINED.inc()
            return None
        LearnedFact.objects.filter(pk=known.pk).update(seen_count=F("seen_count") + 1,
                                                       last_seen_at=now)
        known.refresh_from_db()
    if known.state == FactState.QUARANTINED and known.seen_count >= _threshold():
        return known
    return None


def _existing_memory(namespace: Namespace, text: str) -> Memory | None:
    """A live memory of the namespace that says ``text``: the same content hash, else the
    nearest stored vector at the namespace's near-duplicate threshold (best effort: with
    the embedder or the vector index down, only the hash counts)."""
    # The oldest picked here: ORDER BY created_at made SQLite (no statistics) walk the
    # namespace's created_at index rather than seek memory_ns_hash.
    same = min(Memory.objects.live().filter(namespace=namespace, event_type="",
                                            content_hash=content_hash(text, namespace)).order_by(),
               key=lambda m: (m.created_at, m.pk), default=None)
    if same is not None:
        return same
    vectors = indexing.embed_contents([text])
    if vectors is None:
        return None
    threshold = (namespace.near_duplicate_threshold
                 or settings.MEMORYWEB_NEAR_DUPLICATE_THRESHOLD)
    try:
        (hit,) = get_vector_store().nearest(namespace, vectors, threshold)
    except Exception as exc:
        log.warning("gateway learning: near-duplicate check skipped (%s)", type(exc).__name__)
        return None
    if hit is None or hit.similarity < threshold:
        return None
    return (Memory.objects.live().filter(namespace=namespace, pk=hit.id, event_type="")
            .exclude(kind=MemoryKind.SUMMARY).first())


def _strengthen(principal: Principal, namespace: Namespace, memory: Memory) -> None:
    """The memory was stated again: counted as used (strength's ``use`` and ``age``), through
    the recall counters, with an audit entry saying why."""
    recall_stats.note_recalled([memory.pk])
    audit(principal, "gateway.strengthen", namespace=namespace, record_ids=[memory.pk],
          summary={"source": "gateway"})
    metrics.STRENGTHENED.inc()


def _known_fact(namespace: Namespace, key: str) -> LearnedFact | None:
    """The namespace's fact with this canonical text (near-identical texts share it:
    apps/gateway/facts.py), locked for the sighting."""
    return LearnedFact.objects.select_for_update().filter(namespace=namespace, key=key).first()


# --- promotion ------------------------------------------------------------------------------

def _promote_quietly(fact: LearnedFact, principal: Principal | None, how: str) -> None:
    """Promote, logging (not raising) a refusal: the exchange is done either way, and the
    fact stays quarantined for a later sighting or an admin."""
    try:
        _promote(fact, principal, how)
    except Exception as exc:
        log.warning("gateway learning: fact %s not promoted (%s)", fact.pk, type(exc).__name__)


def _teacher(fact: LearnedFact) -> Principal | None:
    key = ApiKey.objects.active().filter(pk=fact.api_key_id).first() if fact.api_key_id else None
    return Principal.for_key(key) if key is not None else None


def _promote(fact: LearnedFact, principal: Principal | None, how: str,
             text: str | None = None, decided_by: str = "",
             then: Callable[[LearnedFact, Any], None] | None = None) -> LearnedFact:
    """Store the fact as a memory through ``services.ingest`` (the write path, audited) as
    the key that taught it (else ``principal``), then mark it promoted.

    The fact is claimed first (quarantined → promoting, one conditional update), so an
    approval, a rejection, an edit and a promotion by sighting that race are serialised:
    the first wins, the others find it taken (409) and no memory is stored for a fact
    that is not promoted. The memory is stored outside any transaction (embedding and
    indexing hold no lock); marking it promoted and ``then(fact, memory_id)`` (the
    approval's audit entry) commit together. A failed store gives the fact back to
    quarantine; a process that dies between leaves it promoting until :func:`process_due`
    gives it back after ``CLAIM`` (a memory already stored is found again by its hash)."""
    author = _teacher(fact) or principal
    if author is None:
        raise NotFound("the key that taught this fact is gone; approve it as an admin.")
    if not LearnedFact.objects.filter(pk=fact.pk, state=FactState.QUARANTINED).update(
            state=FactState.PROMOTING, decided_at=timezone.now()):
        now = LearnedFact.objects.filter(pk=fact.pk).values_list("state", flat=True).first()
        raise Conflict(f"the fact is {now or 'gone'}; only a quarantined fact is promoted.",
                       field="state")
    try:
        claimed = LearnedFact.objects.get(pk=fact.pk)
        content = redact(text if text is not None else claimed.text)
        stored = services.ingest(author, {
            "content": content, "confidence": PROMOTED_CONFIDENCE, "tags": [LEARNED_TAG],
            "metadata": {"source": "gateway", "learned_fact": str(fact.pk)},
            **({"session_id": claimed.session_id} if claimed.session_id else {})},
            namespace=fact.namespace.slug)
        claimed.text = content  # sealed for the update in an encrypted namespace
        with transaction.atomic():
            LearnedFact.objects.filter(pk=fact.pk, state=FactState.PROMOTING).update(
                state=FactState.PROMOTED, memory_id=stored.memory.pk,
                **sealing.for_update(claimed, "text"),
                confidence=PROMOTED_CONFIDENCE, decided_by=decided_by,
                decided_at=timezone.now())
            if then is not None:
                then(claimed, stored.memory.pk)
    except BaseException:
        LearnedFact.objects.filter(pk=fact.pk, state=FactState.PROMOTING).update(
            state=FactState.QUARANTINED, decided_at=None)
        raise
    metrics.PROMOTED.labels(how=how).inc()
    fact.refresh_from_db()
    return fact


# --- the review (the dashboard's service functions) ------------------------------------------

def _reviewed(principal: Principal, fact_id: Any) -> LearnedFact:
    """A fact of a namespace the principal may edit (team admin); another tenant's is a 404."""
    try:
        pk = uuid.UUID(str(fact_id))
    except ValueError:
        raise NotFound("fact not found.", field="fact") from None
    fact = LearnedFact.objects.select_related("namespace").filter(pk=pk).first()
    if fact is None:
        raise NotFound("fact not found.", field="fact")
    authorize(principal, fact.namespace_id, Action.EDIT)  # invisible namespace: 404
    return fact


def quarantined(principal: Principal, namespace: str | None = None,
                state: str = FactState.QUARANTINED) -> list[LearnedFact]:
    """A namespace's facts in ``state`` (team admins), the most recently seen first."""
    ns = resolve_namespace(principal, namespace)
    authorize(principal, ns.pk, Action.EDIT)
    if state not in FactState.values:
        raise InvalidInput(f"state must be one of {', '.join(FactState.values)}.", field="state")
    return list(LearnedFact.objects.filter(namespace=ns, state=state).order_by("-last_seen_at"))


def approve(principal: Principal, fact: LearnedFact | Any, text: str | None = None
            ) -> LearnedFact:
    """Promote a quarantined fact now (team admin), optionally with edited ``text``
    (redacted, validated by the ingest). The memory is stored as the key that taught it
    (the approver when that key is gone); the approval is audited."""
    found = _reviewed(principal, getattr(fact, "pk", fact))
    if found.state != FactState.QUARANTINED:
        raise InvalidInput(f"the fact is {found.state}; only a quarantined fact is approved.",
                           field="state")
    if text is not None and (not isinstance(text, str) or not text.strip()):
        raise InvalidInput("text must be a non-empty string.", field="text")
    def audited(fact: LearnedFact, memory_id: Any) -> None:
        audit(principal, "gateway.fact.approve", namespace=found.namespace,
              record_ids=[fact.pk, memory_id], summary={"edited": text is not None})

    return _promote(found, principal, "approved", text=text, decided_by=principal.label,
                    then=audited)


def reject(principal: Principal, fact: LearnedFact | Any) -> LearnedFact:
    """Reject a quarantined fact (team admin): it stays as ``rejected`` so a later sighting
    does not quarantine it again; its text is kept for the review, erasable as all."""
    found = _reviewed(principal, getattr(fact, "pk", fact))
    if found.state != FactState.QUARANTINED:
        raise InvalidInput(f"the fact is {found.state}; only a quarantined fact is rejected.",
                           field="state")
    with transaction.atomic():  # conditional: a fact decided meanwhile stays as decided
        rejected = LearnedFact.objects.filter(pk=found.pk, state=FactState.QUARANTINED).update(
            state=FactState.REJECTED, decided_by=principal.label, decided_at=timezone.now())
        if not rejected:
            raise Conflict("the fact was decided meanwhile; only a quarantined fact is "
                           "rejected.", field="state")
        audit(principal, "gateway.fact.reject", namespace=found.namespace,
              record_ids=[found.pk], summary={})
    found.refresh_from_db()
    return found


def edit(principal: Principal, fact: LearnedFact | Any, text: str) -> LearnedFact:
    """Change a quarantined fact's text (team admin; redacted) without promoting it."""
    found = _reviewed(principal, getattr(fact, "pk", fact))
    if found.state != FactState.QUARANTINED:
        raise InvalidInput(f"the fact is {found.state}; only a quarantined fact is edited.",
                           field="state")
    if not isinstance(text, str) or not text.strip() or len(text) > 10_000:
        raise InvalidInput("text must be a non-empty string of at most 10,000 characters.",
                           field="text")
    found.text = redact(" ".join(text.split()))  # sealed for the update where encrypted
    with transaction.atomic():
        if not LearnedFact.objects.filter(pk=found.pk, state=FactState.QUARANTINED).update(
                **sealing.for_update(found, "text")):
            raise Conflict("the fact was decided meanwhile; only a quarantined fact is "
                           "edited.", field="state")
        audit(principal, "gateway.fact.edit", namespace=found.namespace, record_ids=[found.pk],
              summary={})
    found.refresh_from_db()
    return found


def pending_count(namespace: Namespace) -> int:
    return PendingExchange.objects.filter(namespace=namespace).count()


def facts_of(namespace: Namespace, states: Sequence[str] = tuple(FactState.values)) -> int:
    return LearnedFact.objects.filter(namespace=namespace, state__in=states).count()
