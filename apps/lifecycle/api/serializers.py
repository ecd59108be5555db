"""Output shapes of the lifecycle API, for the OpenAPI schema only: the rows come from
apps/lifecycle/digest.py (``digest_row``), nodes and grips as the timeline shows them."""

from __future__ import annotations

from rest_framework import serializers

from apps.timeline.api.serializers import GripSerializer, NodeSerializer


class DigestSerializer(serializers.Serializer):
    namespace = serializers.CharField()
    date = serializers.DateField(help_text="The day (UTC).")
    agent_id = serializers.CharField(help_text='"" for the whole namespace\'s digest.')
    built = serializers.BooleanField(help_text="This call (re)built the day's segments or "
                                     "node, or removed them (nothing left that day); false "
                                     "when nothing on that day changed since the last build.")
    complete = serializers.BooleanField(help_text="The day is over (before today, UTC); "
                                        "today's digest grows as the day goes on.")
    empty = serializers.BooleanField(help_text="No memory falls on this day: `node` is null "
                                     "and `grips` empty.")
    node = NodeSerializer(allow_null=True, help_text="The timeline's day node (its summary, "
                          "source count, summary memory), as GET /api/v1/timeline/{id} shows "
                          "it; null for an empty day.")
    grips = GripSerializer(many=True, help_text="Each part of the summary tied to the source "
                           "memory or event it quotes.")
