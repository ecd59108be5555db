"""Input shape of a conversation event (``POST /api/v1/events``, issue 20), validated by
the events service for every door, with the building blocks of the memory schemas (the
same fields, so the same limits and messages).

An event is stored as a memory: ``text`` becomes its content. Turns (a user's or the
assistant's message, a tool call or result) must say something; the markers of a
session's life (start, stop, end) may come without text, and are then stored as a short
line made from their type and metadata (:func:`content_of`), so every event is
recallable and readable in a list.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers

from apps.core import conf
from apps.memories.models import EventType
from apps.memories.schemas import (
    LIMITS,
    MetadataField,
    StrictSerializer,
    TagsField,
    TextField,
    UTCDateTimeField,
    check_bytes,
)

#: The longest client event id (ExternalId.external_id holds it).
MAX_EVENT_ID = 128
#: The longest ``role``: the model's column.
MAX_ROLE = 32

#: Events that may come without text; the others are turns and must say something.
TEXT_OPTIONAL = (EventType.SESSION_START, EventType.ASSISTANT_STOP, EventType.SESSION_END)

#: Who speaks in an event that names no ``role``.
DEFAULT_ROLE = {
    EventType.SESSION_START: "system", EventType.SESSION_END: "system",
    EventType.USER_MESSAGE: "user",
    EventType.ASSISTANT_MESSAGE: "assistant", EventType.ASSISTANT_STOP: "assistant",
    EventType.TOOL_CALL: "assistant", EventType.TOOL_RESULT: "tool",
}

#: The line an event without text is stored as, before its metadata.
_HEADLINE = {
    EventType.SESSION_START: "Session started",
    EventType.SESSION_END: "Session ended",
    EventType.ASSISTANT_STOP: "Assistant stopped",
}
#: At most this many metadata values, this long each, in that line.
_SHOWN_VALUES, _SHOWN_CHARS = 4, 80


class EventInput(StrictSerializer):
    """One conversation event. The agent comes from the key, never from the body."""

    id = TextField(max_length=MAX_EVENT_ID,
                   help_text="The client's id for the event, unique in the namespace: an id "
                   "already stored is not stored again (a retry is safe).")
    event_type = serializers.ChoiceField(choices=EventType.choices)
    role = TextField(max_length=MAX_ROLE, required=False, allow_blank=True,
                     help_text="Who speaks (user, assistant, tool, system). Default: from "
                     "event_type.")
    session_id = TextField(max_length=LIMITS["max_id_length"],
                           help_text="The conversation the event belongs to.")
    occurred_at = UTCDateTimeField(help_text="When it happened (ISO 8601; stored in UTC). A "
                                   "session lists in this order.")
    text = TextField(trim_whitespace=True, required=False,
                     help_text="What was said or done. Required for user_message, "
                     "assistant_message, tool_call and tool_result.")
    metadata = MetadataField(required=False, default=dict)
    tags = TagsField(required=False, default=list)
    importance = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.5)

    def validate_text(self, value: str) -> str:
        return check_bytes(value, conf.limits().max_content_bytes, "text")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "text" not in attrs and attrs["event_type"] not in TEXT_OPTIONAL:
            raise serializers.ValidationError(
                {"text": f"a {attrs['event_type']} event needs text."})
        if not attrs.get("role"):
            attrs["role"] = DEFAULT_ROLE[attrs["event_type"]]
        return attrs


class EventBatchInput(StrictSerializer):
    """The envelope of ``POST /api/v1/events``; the service checks the size and each event."""

    events = serializers.ListField(child=serializers.JSONField())
    namespace = serializers.SlugField(required=False, allow_blank=True)


class EventBatchRequest(serializers.Serializer):
    """The body for the OpenAPI schema (validation is the service's, event by event)."""

    refuses_unknown_fields = True  # as EventBatchInput, which checks the body

    events = EventInput(many=True, min_length=1, max_length=LIMITS["max_batch"],
                        help_text="1 to max_batch events, stored all or nothing, in order.")
    namespace = serializers.SlugField(required=False, help_text="System-admin keys only.")


class EventInputSchema(OpenApiSerializerExtension):
    """The schema says what ``EventInput.validate`` requires: text, unless the event is one
    that may come without it (else schemathesis would call a refused body valid)."""

    target_class = EventInput
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_basic_serializer(self.target, direction)
        if direction == "request":
            # Not a turn without text. Under "not", where drf-spectacular's enum naming does
            # not look (in an anyOf this subset of the event types collided with theirs).
            turns = [str(t) for t in EventType if t not in TEXT_OPTIONAL]
            schema["not"] = {"required": ["event_type"],
                             "properties": {"event_type": {"enum": turns}},
                             "not": {"required": ["text"]}}
        return schema


def content_of(event: dict[str, Any]) -> str:
    """The content an event is stored with: its text, or for an event without text a short
    line from its type and first few scalar metadata values ("Session ended (reason:
    logout).")."""
    text = event.get("text")
    if text:
        return text
    shown = [f"{key}: {str(value)[:_SHOWN_CHARS]}" for key, value in event["metadata"].items()
             if isinstance(value, (str, int, float, bool)) and str(value).strip()]
    details = f" ({', '.join(shown[:_SHOWN_VALUES])})" if shown else ""
    return f"{_HEADLINE[event['event_type']]}{details}."
