"""``/ws/v1/live``: recall, ingest, standing queries and the event feed over one socket.

Protocol (docs/live.md): JSON messages with a ``type`` and a client-chosen ``id`` echoed
in every reply. Everything a message asks for goes through the same services, with the
same validation and permissions, as the REST API. Outgoing messages pass through a
bounded queue drained by one sender task: a client that reads too slowly fills it and
is closed (4408) rather than holding up anyone else.

Every request message draws from the principal's one rate budget, shared with REST and
MCP (apps/tenancy/budget.py), and a principal holds at most
``MEMORYWEB_WS_MAX_CONNECTIONS_PER_KEY`` connections at once (a lease per connection).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.utils import timezone

from apps.core import conf
from apps.core.errors import InvalidInput, ServiceError, sealed_data_error
from apps.core.parsers import JSONTooDeep
from apps.core.parsers import loads as parse_json
from apps.live import subscriptions
from apps.live.events import key_group
from apps.live.hub import hub
from apps.live.matching import Subscription
from apps.memories import services
from apps.memories.representation import hit_rows, stored_row
from apps.ops import metrics
from apps.tenancy import budget
from apps.tenancy.models import ApiKey
from apps.tenancy.people import needs_mfa_setup
from apps.tenancy.principal import Principal
from apps.tenancy.services import authenticate_key

#: Close codes (documented in docs/live.md).
CLOSE_BAD_MESSAGE = 4400  # a message refused unread (JSON nested too deeply)
CLOSE_UNAUTHENTICATED = 4401  # no, bad or late credential
CLOSE_ACCESS_LOST = 4403  # the key was revoked or expired, the membership ended
CLOSE_SLOW_CONSUMER = 4408  # the send queue filled up: the client reads too slowly
CLOSE_RATE_LIMITED = 4429  # far over the message rate, repeatedly; too many connections

#: ``MEMORYWEB_LIVE`` read at each access (tests set entries through it); the code below
#: reads ``conf.live()`` when it needs a value.
LIMITS = conf.SettingView("MEMORYWEB_LIVE")
log = logging.getLogger(__name__)


class _Close:
    """Queued after the last messages to send: the sender closes the socket when it gets
    here, so an error saying why arrives before the close."""

    def __init__(self, code: int, reason: str) -> None:
        self.code, self.reason = code, reason


def _principal_for_key(raw: str) -> tuple[Principal, ApiKey] | None:
    key = authenticate_key(raw)
    return (Principal.for_key(key), key) if key else None


class LiveConsumer(AsyncJsonWebsocketConsumer):
    principal: Principal | None = None
    key_id: int | None = None
    #: This connection's slot in its principal's connection cap.
    lease: budget.Lease | None = None
    #: Closes the socket when the key expires (replaced whenever the expiry is re-read).
    expiry: asyncio.TimerHandle | None = None

    # --- connection -------------------------------------------------------------------

    async def connect(self) -> None:
        await self.accept()
        metrics.WEBSOCKET_CONNECTIONS.inc()
        self.counted = True
        try:
            await self._start()
        except BaseException:
            # Channels calls disconnect() only for a connection that finished connecting.
            self.counted = False
            metrics.WEBSOCKET_CONNECTIONS.dec()
            raise

    async def _start(self) -> None:
        limits = conf.live()
        self.outbox: asyncio.Queue = asyncio.Queue(maxsize=limits.send_queue)
        self.sender = asyncio.create_task(self._send_forever())
        self.tokens, self.refilled, self.strikes = float(limits.burst), time.monotonic(), 0
        self.events_id: str | None = None
        self.subscriptions: dict[str, Subscription] = {}
        self.grant_groups: set[str] = set()
        self.closing = False
        self.draining = False  # a close is queued behind the last messages
        self.background: set[asyncio.Future] = set()
        self.timers: list[asyncio.TimerHandle | asyncio.Task] = []
        credential = self._header_key()
        if credential is not None:
            await self._authenticate_key(credential, None)
        elif self._session_user() is not None:
            user = self._session_user()
            principal = await sync_to_async(Principal.for_user)(user)
            if await sync_to_async(needs_mfa_setup)(user, principal):
                await self._close(CLOSE_ACCESS_LOST, "two-factor authentication required")
                return
            self.principal = principal
            await self._authenticated(None)
        else:
            self.timers.append(asyncio.get_running_loop().call_later(
                limits.auth_timeout_seconds, self._auth_timeout))

    def _header_key(self) -> str | None:
        for name, value in self.scope.get("headers", []):
            if name == b"authorization":
                text = value.decode("latin-1")
                return text[7:].strip() if text.lower().startswith("bearer ") else ""
        return None

    def _session_user(self):
        """A logged-in person; only for browsers (they send Origin, which the validator
        checked against ALLOWED_HOSTS), never for header-less cross-site guesses."""
        user = self.scope.get("user")
        has_origin = any(name == b"origin" for name, _ in self.scope.get("headers", []))
        if has_origin and user is not None and user.is_authenticated and user.is_active:
            return user
        return None

    def _auth_timeout(self) -> None:
        if self.principal is None:
            self._later(self._close(CLOSE_UNAUTHENTICATED, "authentication timeout"))

    async def _authenticate_key(self, raw: str, request_id: str | None) -> None:
        found = await sync_to_async(_principal_for_key)(raw) if raw else None
        if found is None:
            await self._close(CLOSE_UNAUTHENTICATED, "invalid or expired API key")
            return
        self.principal, key = found
        self.key_id = key.pk
        await self.channel_layer.group_add(key_group(key.pk), self.channel_name)
        self._expire_at(key.expires_at)
        await self._authenticated(request_id)

    async def _authenticated(self, request_id: str | None) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers = []
        cap = conf.live().max_connections_per_principal
        self.lease = await sync_to_async(budget.acquire, thread_sensitive=False)(
            "ws", self.principal.label, cap)
        if self.lease is None:
            self._error(request_id, "too_many_connections",
                        f"at most {cap} open connections per key (or person); close one "
                        "first.")
            self._finish(CLOSE_RATE_LIMITED, "too many connections")
            return
        self.timers = [asyncio.create_task(self._recheck_forever())]
        self.offer({"type": "ready", "id": request_id, "principal": self.principal.label,
                    "role": self.principal.role.label if self.principal.role else None})

    def _expire_at(self, moment: dt.datetime | None) -> None:
        """Close with 4403 when the key expires (a rotation's grace period ends the same
        way). On the event loop only: it schedules a timer there. Each call replaces the
        previous timer, so an expiry moved later no longer closes early."""
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None
        if moment is not None:
            delay = max((moment - timezone.now()).total_seconds(), 0.0)
            self.expiry = asyncio.get_running_loop().call_later(
                delay, lambda: self._later(self._close(CLOSE_ACCESS_LOST, "API key expired")))

    async def disconnect(self, code: int) -> None:
        self.closing = True
        if getattr(self, "counted", False):
            self.counted = False
            metrics.WEBSOCKET_CONNECTIONS.dec()
            metrics.WEBSOCKET_SUBSCRIPTIONS.dec(len(getattr(self, "subscriptions", {})))
        for timer in [*getattr(self, "timers", []), *([self.expiry] if self.expiry else [])]:
            timer.cancel()
        if getattr(self, "sender", None):
            self.sender.cancel()
        if self.lease is not None:
            lease, self.lease = self.lease, None
            await sync_to_async(lease.release, thread_sensitive=False)()
        await hub().forget(self)
        for group in [*getattr(self, "grant_groups", ()),
                      *([key_group(self.key_id)] if self.key_id else [])]:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def _close(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        await self.close(code=code, reason=reason)

    # --- access that changes while connected ----------------------------------------------

    async def live_control(self, message: dict) -> None:
        """A key revoked or changed, a grant revoked (events.control)."""
        if message["action"] == "key_revoked":
            await self._close(CLOSE_ACCESS_LOST, "API key revoked")
        else:  # key_changed (expiry), grant_revoked
            await self._recheck()

    async def _recheck_forever(self) -> None:
        """Renew the connection's lease and recheck access, for as long as it is open.

        A failed round (the database or cache briefly away) is logged and the next one
        runs: this task ending silently once left connections unchecked for good."""
        loop = asyncio.get_running_loop()
        period = min(conf.live().recheck_seconds, budget.LEASE_SECONDS / 4)
        checked = loop.time()
        while True:
            await asyncio.sleep(period)
            try:
                if self.lease is not None:
                    await sync_to_async(self.lease.renew, thread_sensitive=False)()
                if loop.time() - checked >= conf.live().recheck_seconds:
                    checked = loop.time()
                    await self._recheck()
            except Exception:
                log.exception("live connection recheck failed; retrying")

    async def _recheck(self) -> None:
        """Reload the credential (and its expiry) and the grants shared subscriptions
        rely on."""
        still, expires_at = await sync_to_async(self._still_allowed)()
        if not still:
            await self._close(CLOSE_ACCESS_LOST, "access revoked")
            return
        if self.key_id is not None:
            self._expire_at(expires_at)
        for subscription in list(self.subscriptions.values()):
            shared = [n for n, scope in subscription.scopes.items() if scope is not None]
            if not shared:
                continue
            grants = await sync_to_async(subscriptions.granting)(subscription)
            for namespace_id in shared:
                if namespace_id in grants:  # still shared: with the grants as they are now
                    subscription.scopes[namespace_id] = subscriptions.scope(grants[namespace_id])
                else:
                    await hub().drop_scope(self, namespace_id)

    def _still_allowed(self) -> tuple[bool, dt.datetime | None]:
        """(still allowed, the key's expiry). Runs on a worker thread: it reads the
        database and schedules nothing (timers belong to the event loop)."""
        if self.key_id is not None:
            key = ApiKey.objects.active().filter(pk=self.key_id).first()
            return (False, None) if key is None else (True, key.expires_at)
        if self.principal is not None and self.principal.user_id is not None:
            from django.contrib.auth import get_user_model

            user = get_user_model().objects.filter(pk=self.principal.user_id, is_active=True).first()
            if user is None:
                return False, None
            self.principal = Principal.for_user(user)
        return True, None

    # --- incoming ---------------------------------------------------------------------

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if self.closing or self.draining:
            return  # refused and about to close: nothing more is done for it
        request_id = content.get("id") if isinstance(content, dict) else None
        if request_id is not None and (not isinstance(request_id, str) or len(request_id) > 64):
            request_id = None
        if not self._within_rate():
            self.strikes += 1
            if self.strikes > 3:
                await self._close(CLOSE_RATE_LIMITED, "message rate limit exceeded")
            else:
                self._error(request_id, "throttled", "message rate limit exceeded; slow down.")
            return
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            self._error(request_id, "invalid", "expected a JSON object with a type.", "type")
            return
        kind = content["type"]
        if kind == "auth":
            if self.principal is None:
                await self._authenticate_key(str(content.get("key") or ""), request_id)
            return
        if self.principal is None:
            await self._close(CLOSE_UNAUTHENTICATED, "authenticate first")
            return
        handler = {"ping": self._ping, "recall": self._recall, "ingest": self._ingest,
                   "subscribe": self._subscribe, "unsubscribe": self._unsubscribe,
                   "events": self._events}.get(kind)
        if handler is None:
            self._error(request_id, "invalid", f"unknown message type {kind!r}.", "type")
            return
        if kind != "ping":  # a heartbeat is not a request (as /health is not on REST)
            verdict = await sync_to_async(budget.draw, thread_sensitive=False)(
                self.principal.label)
            if not verdict.allowed:
                wait = verdict.retry_after_seconds
                self._error(request_id, "rate_limited",
                            f"the rate limit ({verdict.rate}, shared by REST, MCP and this "
                            f"socket) is used up; retry in {wait} s.", retry_after=wait)
                return
        body = {k: v for k, v in content.items() if k not in ("type", "id")}
        try:
            await handler(request_id, body)
        except ServiceError as exc:
            self._error(request_id, exc.code, exc.message, exc.field)
        except Exception as exc:  # an encrypted namespace's data that cannot be read
            refusal = sealed_data_error(exc)
            if refusal is None:
                raise
            self._error(request_id, refusal.code, refusal.message)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        try:
            await super().receive(text_data=text_data, bytes_data=bytes_data, **kwargs)
        except JSONTooDeep as exc:  # refused unread: say why, then close
            self._error(None, "parse_error", str(exc))
            self._finish(CLOSE_BAD_MESSAGE, "JSON nested too deeply")
        except ValueError:  # not JSON
            self._error(None, "invalid", "messages are JSON text.")

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        """JSON with the nesting limit every door applies (apps/core/parsers.py)."""
        return parse_json(text_data)

    def _within_rate(self) -> bool:
        now = time.monotonic()
        limits = conf.live()
        self.tokens = min(float(limits.burst),
                          self.tokens + (now - self.refilled) * limits.messages_per_second)
        self.refilled = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    async def _ping(self, request_id: str | None, body: dict) -> None:
        self.offer({"type": "pong", "id": request_id})

    async def _recall(self, request_id: str | None, body: dict) -> None:
        loop = asyncio.get_running_loop()

        def lexical_first(hits) -> None:
            k = body.get("k", 10) if isinstance(body.get("k"), int) else 10
            partial = [{"id": str(pk), "score": round(score, 6)} for pk, score in hits[:k]]
            loop.call_soon_threadsafe(self.offer, {"type": "recall.partial", "id": request_id,
                                                   "stage": "lexical", "results": partial})

        def run() -> dict:
            result = services.recall(self.principal, body, on_lexical=lexical_first)
            return {"type": "recall.results", "id": request_id,
                    "namespace": result.namespace.slug, "query": result.query, "k": result.k,
                    "mode": result.mode, "results": hit_rows(result.hits, result.explain),
                    "searched": [s.namespace.slug for s in result.sources]}

        self.offer(await sync_to_async(run)())
        self.offer({"type": "done", "id": request_id})

    async def _ingest(self, request_id: str | None, body: dict) -> None:
        def run() -> list[dict]:
            if "memories" in body:
                items = body["memories"]
                if not isinstance(items, list):
                    raise InvalidInput("memories must be a list.", field="memories")
                return [stored_row(r) for r in services.ingest_many(
                    self.principal, items, namespace=body.get("namespace"))]
            return [stored_row(services.ingest(self.principal, body))]

        self.offer({"type": "ingested", "id": request_id, "results": await sync_to_async(run)()})

    async def _subscribe(self, request_id: str | None, body: dict) -> None:
        if not request_id:
            raise InvalidInput("a subscription needs an id (matches are sent with it).",
                               field="id")
        if request_id in self.subscriptions:
            raise InvalidInput(f"subscription {request_id!r} exists; unsubscribe first.",
                               field="id")
        most = conf.live().max_subscriptions
        if len(self.subscriptions) >= most:
            raise InvalidInput(f"at most {most} subscriptions per "
                               "connection.", field="id", code="too_many")

        subscription, groups = await sync_to_async(subscriptions.prepare)(
            self.principal, self, request_id, body)
        self.grant_groups |= groups
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
        if request_id not in self.subscriptions:
            metrics.WEBSOCKET_SUBSCRIPTIONS.inc()
        self.subscriptions[request_id] = subscription
        await hub().subscribe(subscription)
        self.offer({"type": "subscribed", "id": request_id,
                    "namespaces": len(subscription.scopes)})

    async def _unsubscribe(self, request_id: str | None, body: dict) -> None:
        target = body.get("subscription") or request_id
        if target not in self.subscriptions:
            raise InvalidInput(f"no subscription {target!r}.", field="subscription")
        del self.subscriptions[target]
        metrics.WEBSOCKET_SUBSCRIPTIONS.dec()
        await hub().unsubscribe(self, target)
        self.offer({"type": "unsubscribed", "id": request_id, "subscription": target})

    async def _events(self, request_id: str | None, body: dict) -> None:
        if self.events_id is not None:
            raise InvalidInput("the event feed is already on for this connection.", field="type")
        watched = await sync_to_async(subscriptions.watched_namespaces)(self.principal, body)
        self.events_id = request_id
        for namespace_id in watched:
            await hub().watch(self, namespace_id)
        self.offer({"type": "watching", "id": request_id, "namespaces": len(watched)})

    # --- outgoing ---------------------------------------------------------------------

    def offer(self, message: dict) -> None:
        """Queue a message for the client; a full queue drops the client (slow consumer)."""
        if self.closing or self.draining:
            return
        try:
            self.outbox.put_nowait(message)
        except asyncio.QueueFull:
            self._later(self._close(CLOSE_SLOW_CONSUMER, "slow consumer: messages not read in time"))

    def offer_event(self, message: dict) -> None:
        memories = [{k: v for k, v in item.items() if k != "embedding"}
                    for item in message["memories"]]
        event = {"type": "event", "id": self.events_id, "event": message["event"],
                 "namespace": message["namespace"], "actor": message["actor"],
                 "agent_id": message["agent_id"], "at": message["at"],
                 "erasure": message["erasure"], "memories": memories}
        if "node" in message:  # timeline.node: the rollup node that changed
            event["node"] = message["node"]
        self.offer(event)

    def offer_match(self, subscription: Subscription, item: dict, score: float,
                    message: dict) -> None:
        own = next(n for n, scope in subscription.scopes.items() if scope is None)
        self.offer({"type": "match", "id": subscription.sub_id, "score": round(score, 6),
                    "event": message["event"], "namespace": message["namespace"],
                    "shared": message["namespace_id"] != own, "memory": item["row"]})

    async def _send_forever(self) -> None:
        while True:
            message = await self.outbox.get()
            if isinstance(message, _Close):
                await self._close(message.code, message.reason)
                return
            await self.send_json(message)

    def _finish(self, code: int, reason: str) -> None:
        """Close once the messages already queued (the error saying why) are sent."""
        if self.closing or self.draining:
            return
        try:
            self.outbox.put_nowait(_Close(code, reason))
        except asyncio.QueueFull:
            self._later(self._close(code, reason))
        self.draining = True

    def _later(self, coroutine) -> None:
        """Run a coroutine from sync code, keeping a reference until it is done."""
        task = asyncio.ensure_future(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def _error(self, request_id: str | None, code: str, message: str,
               field: str | None = None, **extra: Any) -> None:
        error = {"code": code, "message": message, **({"field": field} if field else {}),
                 **extra}
        self.offer({"type": "error", "id": request_id, "error": error})
