"""The gateway's calls into the memory core, on worker threads (the Django ORM is sync):
who the caller is, what it may do, and what it recalls. Every call goes through the
service layer with the key's ``Principal``, as every door's does.

Admission (:func:`admit_within`) stays within the request's budget when the database is
down or hangs (docs/gateway.md "Fail-open"): a key the gateway has seen (the key cache's
memory of it, apps/tenancy/key_cache.py, up to ``MEMORYWEB_GATEWAY_KEY_GRACE_SECONDS``
after the database last confirmed it) waits for the database at most until the request's
deadline, and not at all while the database failed moments ago (``key_cache.breaker``);
it is then admitted as remembered and its request forwarded unchanged. Only the
database's own time counts against it: a request whose admission is still queued for a
request thread at the deadline fails open for itself (``busy``) and the breaker is left
alone; and the deadline is never below :data:`ADMISSION_FLOOR_SECONDS`. A key the gateway
has not seen is never admitted without the database (503). The rate budget is drawn
either way (Django's cache, not the database).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import Error, close_old_connections

from apps.core.asgi import request_pool
from apps.core.errors import NotFound, ServiceError
from apps.memories import memory_modes, services
from apps.memories.memory_modes import ModeDecision
from apps.tenancy import budget, key_cache
from apps.tenancy.models import ApiKey
from apps.tenancy.principal import Principal
from apps.tenancy.services import (
    KEY_PREFIX_READ,
    KEY_PREFIX_WRITE,
    authenticate_key,
    resolve_namespace,
)

from . import screening
from .injection import Candidate

NAMESPACE_HEADER = "x-memory-namespace"
#: A service's refusal as the error ``type`` both SDK families know.
_ERROR_TYPES = {403: "permission_error", 404: "not_found_error"}
#: The least time admission gives the database, whatever the budget: a database that
#: answers in a few ms is never blamed (the breaker) because the budget is tiny.
ADMISSION_FLOOR_SECONDS = 0.05
#: Past the deadline, the most a request waits for an admission that the database already
#: answered (it is drawing the rate budget, resolving the namespace) before failing open.
CLAIMED_MARGIN_SECONDS = 0.05


@dataclass(frozen=True)
class Admission:
    """A request let in: its principal, namespace and mode; or why it is refused."""

    principal: Principal | None = None
    namespace: object = None
    decision: ModeDecision | None = None
    #: Refused: (HTTP status, error type, message, extra response headers).
    refusal: tuple[int, str, str, dict[str, str]] | None = None
    #: Admitted as remembered, without the database (``error``: it failed, now or moments
    #: ago; ``timeout``: it did not answer within the budget; ``busy``: every request
    #: thread was taken until the deadline): recall is skipped and the request forwarded
    #: unchanged with this ``X-Memory-Fail-Open`` reason.
    fail_open: str | None = None
    failure: BaseException | None = None


class Unavailable(Exception):
    """The key cannot be checked: the database is down and the gateway has not seen it."""


class Claim:
    """Who draws the request's unit of rate budget: the admission that read the database,
    or the one that gave up waiting for it — exactly one of them (the admission takes it
    as soon as the database answered, a refusal too: that answer is then the request's).
    It also tells the one that gives up whether the admission's thread had begun on the
    database (and when)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taken = False
        self._began: float | None = None

    def start(self) -> bool:
        """From the admission's thread, before it touches the database: False when the
        request gave up on it while it was still queued (it must not start then)."""
        with self._lock:
            if self._taken:
                return False
            self._began = time.monotonic()
            return True

    def take(self) -> bool:
        with self._lock:
            taken, self._taken = self._taken, True
            return not taken

    def give_up(self) -> tuple[bool, float | None]:
        """From the request that stops waiting: whether the unit is still its to draw
        (else the admission draws it: wait for that), and when the admission's thread
        began on the database (None: still queued, and now it never will)."""
        with self._lock:
            if self._taken:
                return False, None
            self._taken = True
            return True, self._began


_UNAUTHENTICATED = (401, "authentication_error", "send an active MemoryWeb API key where "
                    "your SDK sends the provider's key (Authorization: Bearer, or x-api-key "
                    "for Anthropic).", {})


def admit(raw_key: str | None, headers: Mapping[str, str], with_memory: bool,
          attempt: key_cache.Attempt | None = None, claim: Claim | None = None) -> Admission:
    """Authenticate ``raw_key`` (constant-time compare, the key cache), draw one unit from
    its rate budget, and (``with_memory``) resolve its namespace and memory mode.
    ``attempt``: told whether the database answered (and ended whatever happens).
    ``claim``: not begun if the request gave up while this was queued; the unit is drawn
    only if the request still waits for this admission."""
    if claim is not None and not claim.start():
        return Admission(refusal=_UNAUTHENTICATED)  # given up on in the queue: nobody reads it
    try:
        try:
            close_old_connections()
            key = authenticate_key(raw_key) if raw_key else None
        except Error:  # DatabaseError, and InterfaceError (not one of those)
            if attempt is not None:
                attempt.failed()
            raise
        else:
            # The database answered, a refusal as much as a key: the request that has not
            # given up yet takes this answer (it waits for it), never a remembered key.
            ours = claim is None or claim.take()
            if attempt is not None:
                attempt.ok()
        finally:
            if attempt is not None:
                attempt.abandon()  # any other exception: ended all the same
        if key is None or not ours:  # not ours: given up on, nobody reads it
            return Admission(refusal=_UNAUTHENTICATED)
        return _admitted(key, headers, with_memory)
    finally:
        close_old_connections()


def admit_remembered(key: ApiKey, headers: Mapping[str, str], with_memory: bool, reason: str,
                     failure: BaseException | None, draw: bool) -> Admission:
    """Admit ``key`` as the key cache remembers it, without the database (it is down):
    the rate budget is drawn (``draw``: unless the admission that read the database did)
    and the memory mode decided on the remembered namespace; ``reason`` and ``failure``
    say why (fail-open). No ``close_old_connections``: that may ping the database.
    :class:`Unavailable` for a key without its namespace remembered (a system key: the
    namespace would be looked up in SQL), as for a key the gateway has not seen."""
    if key.namespace_id is None or not ApiKey.namespace.is_cached(key):
        raise Unavailable("the database is down and the key's namespace is not remembered")
    admission = _admitted(key, headers, with_memory, draw=draw)
    if admission.refusal is not None:
        return admission
    return Admission(principal=admission.principal, namespace=admission.namespace,
                     decision=admission.decision, fail_open=reason, failure=failure)


def _admitted(key: ApiKey, headers: Mapping[str, str], with_memory: bool,
              draw: bool = True) -> Admission:
    principal = Principal.for_key(key)
    verdict = budget.draw(principal.label) if draw else None
    if verdict is not None and not verdict.allowed:
        wait = verdict.retry_after_seconds
        return Admission(refusal=(429, "rate_limit_error", f"the rate limit ({verdict.rate}, "
                                  f"shared with every door) is used up; retry in {wait} s.",
                                  {"retry-after": str(wait)}))
    if not with_memory:
        return Admission(principal=principal)
    try:
        namespace = resolve_namespace(principal, headers.get(NAMESPACE_HEADER) or None)
        decision = memory_modes.decide(principal, namespace, headers)
    except ServiceError as exc:
        return _refused(exc)
    return Admission(principal=principal, namespace=namespace, decision=decision)


def _refused(exc: ServiceError) -> Admission:
    """A service's refusal as the upstream API's error type."""
    kind = _ERROR_TYPES.get(exc.status, "invalid_request_error")
    return Admission(refusal=(exc.status, kind, exc.message, {}))


async def _on_pool(function, *args):
    return await sync_to_async(function, thread_sensitive=False, executor=request_pool())(*args)


_remembering_lock = threading.Lock()
_remembering: ThreadPoolExecutor | None = None


async def _remembering_thread(known: ApiKey, headers: Mapping[str, str], with_memory: bool,
                              reason: str, failure: BaseException | None,
                              draw: bool) -> Admission:
    """:func:`admit_remembered` on a thread of its own (not the request pool: a fail-open
    does not queue behind the requests that hold every request thread). It reads no SQL;
    the rate budget may be Redis (blocking), hence not on the loop. Should the database
    fail it all the same, the request still fails open: without memory, forwarded."""
    global _remembering
    with _remembering_lock:
        if _remembering is None:
            _remembering = ThreadPoolExecutor(max_workers=2,
                                              thread_name_prefix="gateway-remembered")
    try:
        return await sync_to_async(admit_remembered, thread_sensitive=False,
                                   executor=_remembering)(known, headers, with_memory, reason,
                                                          failure, draw)
    except Error as exc:  # pure from here: the namespace is remembered with the key
        principal = Principal.for_key(known)
        if not with_memory:
            return Admission(principal=principal, fail_open="error", failure=exc)
        try:
            named = headers.get(NAMESPACE_HEADER) or None
            if named is not None and named != known.namespace.slug:  # as resolve_namespace
                raise NotFound(f"namespace {named!r} not found.", field="namespace")
            decision = memory_modes.decide(principal, known.namespace, headers)
        except ServiceError as refused:
            return _refused(refused)
        return Admission(principal=principal, namespace=known.namespace, decision=decision,
                         fail_open="error", failure=exc)


def _well_formed(raw_key: str | None) -> bool:
    """Whether ``authenticate_key`` would look ``raw_key`` up (else it refuses it unread)."""
    return bool(raw_key) and raw_key.startswith((KEY_PREFIX_WRITE, KEY_PREFIX_READ)) and len(
        raw_key) <= 200


async def admit_within(raw_key: str | None, headers: Mapping[str, str], with_memory: bool,
                       seconds: float) -> Admission:
    """:func:`admit` on a request thread, for a key the gateway remembers within
    ``seconds`` (what is left of the request's budget) and without touching the database
    while it is known down: such a key is then admitted as remembered (fail-open). A key
    it does not remember waits for the database as long as that takes (nothing can be
    forwarded without it); :class:`Unavailable` while the database is known down, a
    ``django.db.Error`` when it fails."""
    if not _well_formed(raw_key):
        return await _on_pool(admit, raw_key, headers, with_memory)
    grace = float(settings.MEMORYWEB_GATEWAY_KEY_GRACE_SECONDS)
    key_cache.keep_fresh(grace)
    known = key_cache.remembered(raw_key, grace)
    attempt = key_cache.breaker.attempt()
    if attempt is None:  # the database failed moments ago: do not wait for it again
        if known is None:
            raise Unavailable("the database is down")
        return await _remembering_thread(known, headers, with_memory, "error", None, True)
    claim = Claim()
    reading = asyncio.ensure_future(_on_pool(admit, raw_key, headers, with_memory, attempt,
                                             claim))
    reading.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved
    try:
        if known is None:
            return await reading
        return await _known_within(reading, claim, attempt, known, headers, with_memory,
                                   max(seconds, ADMISSION_FLOOR_SECONDS))
    except asyncio.CancelledError:  # the client went away: an admission still queued
        ours, began = claim.give_up()  # never starts, and its attempt (a probe's lease)
        if ours and began is None:  # is given back now, not when its thread comes
            attempt.abandon()
        raise


async def _known_within(reading: asyncio.Future, claim: Claim, attempt: key_cache.Attempt,
                        known: ApiKey, headers: Mapping[str, str], with_memory: bool,
                        seconds: float) -> Admission:
    """The admission of a key the gateway remembers, within ``seconds``; as remembered
    past them. The thread that took the claim (the database answered) is waited for
    :data:`CLAIMED_MARGIN_SECONDS` more at most: it drew the rate budget, so the
    fail-open that follows it does not draw again."""
    try:
        try:
            return await asyncio.wait_for(asyncio.shield(reading), seconds)
        except TimeoutError:  # a thread that began goes on until the database answers or fails
            pass
        if reading.done():  # answered just as the deadline passed: the answer wins
            return reading.result()
        ours, began = claim.give_up()
        if not ours:  # the database answered; the rate budget or the namespace is slow
            try:
                return await asyncio.wait_for(asyncio.shield(reading), CLAIMED_MARGIN_SECONDS)
            except TimeoutError:
                return await _remembering_thread(known, headers, with_memory, "timeout", None,
                                                 False)
        if began is None:  # queued for a request thread all along: not the database's fault
            attempt.abandon()
            reason = "busy"
        else:  # blamed only if the database had the floor's time and did not answer
            if time.monotonic() - began >= ADMISSION_FLOOR_SECONDS:
                attempt.stalled()
            reason = "timeout"
        return await _remembering_thread(known, headers, with_memory, reason, None, True)
    except Error as exc:
        return await _remembering_thread(known, headers, with_memory, "error", exc,
                                         claim.take())


@dataclass
class Recalled:
    """What a recall offered: candidates that passed screening, and how many did not."""

    candidates: list[Candidate] = field(default_factory=list)
    screened_out: int = 0


def relevant(parts: dict[str, dict[str, float]]) -> bool:
    """Whether a hybrid hit answers the query at all: its cosine similarity to it (the
    vector channel's raw score) is at least ``MEMORYWEB_GATEWAY_MIN_SIMILARITY``, or it
    matched the query's words. Fusion scales each channel to its best candidate, so the
    nearest memory scores high however far it is: the fused score alone injected a
    memory into every request of a namespace that had one."""
    floor = settings.MEMORYWEB_GATEWAY_MIN_SIMILARITY
    lexical, vector = parts.get("lexical"), parts.get("vector")
    if floor <= 0 or (lexical is not None and lexical.get("raw", 0) > 0):
        return True
    return vector is not None and vector.get("raw", 0) >= floor


def recall(admission: Admission, query: str) -> Recalled:
    """The namespace's memories that answer ``query`` (hybrid unless the namespace says
    otherwise; its recall settings; the minimum score; in hybrid mode, :func:`relevant`
    only), screened."""
    close_old_connections()
    try:
        namespace = admission.namespace
        defaults = getattr(namespace, "recall_defaults", None) or {}
        data: dict[str, object] = {"query": query, "k": settings.MEMORYWEB_GATEWAY_RECALL_K}
        if "mode" not in defaults:
            data["mode"] = "hybrid"
        if defaults.get("min_score") is None:
            data["min_score"] = settings.MEMORYWEB_GATEWAY_MIN_SCORE
        decision = admission.decision
        if decision is not None and decision.after is not None:
            data["filters"] = {"created_after": decision.after.isoformat()}
        result = services.recall(admission.principal, data, namespace=namespace.slug)
        recalled = Recalled()
        for hit in result.hits:
            if result.mode == "hybrid" and not relevant(hit.parts):
                continue
            memory = hit.memory
            if screening.flags(memory.content):
                recalled.screened_out += 1
                continue
            recalled.candidates.append(Candidate(str(memory.pk), memory.content, hit.score))
        return recalled
    finally:
        close_old_connections()
