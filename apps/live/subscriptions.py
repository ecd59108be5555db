"""The live service layer: what a standing query or an event feed may watch, decided
once here (validation, namespace, role, grants, the query's embedding) so the WebSocket
door only wires the result to its connection."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from apps.core.roles import Action
from apps.live.events import grant_group
from apps.live.matching import Subscription
from apps.memories import schemas
from apps.memories.embeddings import get_embedder
from apps.tenancy.grants import live_grants_to
from apps.tenancy.models import SharingGrant
from apps.tenancy.principal import Principal
from apps.tenancy.services import authorize, resolve_namespace


class SubscribeInput(schemas.StrictSerializer):
    query = schemas.TextField()
    namespace = serializers.SlugField(required=False)
    filters = schemas.RecallFilters(required=False)
    include_shared = serializers.BooleanField(default=False)
    #: Absent: MEMORYWEB_LIVE["default_min_score"], read when the message is validated.
    min_score = serializers.FloatField(min_value=0.0, max_value=1.0,
                                       default=lambda: settings.MEMORYWEB_LIVE["default_min_score"])


class EventsInput(schemas.StrictSerializer):
    namespace = serializers.SlugField(required=False)


def _grant_covers_row(grant: SharingGrant, row: Mapping[str, Any]) -> bool:
    """The grant is still unexpired and its scope covers the event's memory row."""
    created = dt.datetime.fromisoformat(row["created_at"].replace("Z", "+00:00"))
    return ((grant.expires_at is None or grant.expires_at > timezone.now())
            and grant.covers_fields(row.get("tags"), row.get("kind"), created))


def scope(grants: list[SharingGrant]) -> Callable[[Mapping[str, Any]], bool]:
    """A row check: does any of these live grants cover the memory?"""
    return lambda row: any(_grant_covers_row(grant, row) for grant in grants)


def prepare(principal: Principal, owner: Any, sub_id: str, data: Mapping[str, Any]
            ) -> tuple[Subscription, set[str]]:
    """A standing query for ``owner`` (the connection), and the grant groups it must
    join to hear of revocations. The query is embedded once, here."""
    cleaned = schemas.validate(SubscribeInput, dict(data))
    namespace = resolve_namespace(principal, cleaned.get("namespace"))
    authorize(principal, namespace.pk, Action.READ)
    vector = np.asarray(get_embedder().embed([cleaned["query"]])[0], dtype=np.float32)
    scopes: dict[int, Any] = {namespace.pk: None}
    groups: set[str] = set()
    if cleaned["include_shared"]:
        for grantor_id, grants in live_grants_to([namespace.pk]).items():
            scopes[grantor_id] = scope(grants)
            groups.update(grant_group(g.pk) for g in grants)
    subscription = Subscription(owner, sub_id, vector, cleaned["min_score"],
                                cleaned.get("filters") or {}, scopes)
    return subscription, groups


def granting(subscription: Subscription) -> dict[int, list[SharingGrant]]:
    """The live grants to the subscription's own namespace now, by grantor."""
    own = next(n for n, check in subscription.scopes.items() if check is None)
    return live_grants_to([own])


def watched_namespaces(principal: Principal, data: Mapping[str, Any]) -> list[int]:
    """The namespaces an event feed covers: the named one, a key's own, or a person's
    memberships."""
    cleaned = schemas.validate(EventsInput, dict(data))
    if cleaned.get("namespace") or principal.namespace_id or principal.is_system_admin:
        namespace = resolve_namespace(principal, cleaned.get("namespace"))
        authorize(principal, namespace.pk, Action.READ)
        return [namespace.pk]
    return principal.namespace_ids(Action.READ)
