"""The OpenAPI schema (drf-spectacular), made to say what the server does.

schemathesis runs every operation of ``/api/schema/`` against a real server in the test
suite (tests/schema/test_schemathesis.py): a request the schema calls valid must not be
refused, one it calls invalid must be, and every answer must be documented. Rules that
hold for many operations are stated once here, in :class:`AutoSchema` (set as
``REST_FRAMEWORK['DEFAULT_SCHEMA_CLASS']``), instead of on each view:

- **Error answers.** Every operation lists the error statuses it can answer, as the
  ``Error`` envelope (or seed 003's flat shape on its drop-in door), chosen from what the
  view is: authenticated or public, reading or writing, with or without a JSON body.
- **Unknown fields.** A body read by a strict serializer (``refuses_unknown_fields``)
  says ``additionalProperties: false``: the server answers 400 naming the field.
- **Blank text.** A text field that trims whitespace and refuses blanks says so with a
  pattern (at least one non-space character); ``minLength`` alone would call "  " valid.
- **Free-form JSON** (``metadata``) is an object whose values nest at most
  ``json_object_depth`` levels, written out level by level: a self-referencing schema
  sends generators into unbounded recursion and cannot state the server's limit.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular import openapi
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework import serializers
from rest_framework.permissions import AllowAny

#: What each error status means, for every operation that can answer it.
ERROR_DESCRIPTIONS = {
    "400": "Bad input (`invalid`, `too_long`, `too_many`, … with `field` naming it), or a "
           "body that is not JSON or nests too deep (`parse_error`). Nothing was changed.",
    "401": "No key, or an unknown, revoked or expired one (`not_authenticated`, "
           "`authentication_failed`).",
    "403": "The key's role may not do this here (`permission_denied`).",
    "404": "No such object, or it (or the named namespace) belongs to a namespace the "
           "caller cannot see (`not_found`).",
    "409": "Conflict: an Idempotency-Key reused with another body, a name already taken, a "
           "write to an archived namespace (`conflict`).",
    "413": "The request body is over MEMORYWEB_MAX_BODY_BYTES (`payload_too_large`).",
    "415": "The body is not `application/json` (`unsupported_media_type`).",
    "429": "The rate limit is used up (`throttled`); `Retry-After` says when to retry.",
    "503": "A store the operation needs (the vector index) is unreachable "
           "(`unavailable`); retry shortly.",
}
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
#: Text that is not blank once Python's str.strip() has trimmed it: the schema's regex
#: dialect (ECMA 262) does not count \x1c-\x1f and NEL (\x85) as space; Python does
#: (every other character str.isspace() knows is in ECMA's \s).
NOT_BLANK = r"[^\s\x1c-\x1f\x85]"


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, for programs: invalid, not_found, …")
    message = serializers.CharField(help_text="For people: what was wrong.")
    field = serializers.CharField(required=False, help_text="The bad field's path, e.g. "
                                  "`content`, `filters.kind`, `memories[5].content`.")


class ErrorSerializer(serializers.Serializer):
    """``{"error": {"code", "message", "field"?}}``: the body of every MemoryWeb error."""

    error = ErrorDetailSerializer()


#: Seed 003's error shape (its drop-in door): ``{"error": message, "code", "field"?}``.
FLAT_ERROR_SCHEMA = {
    "type": "object",
    "description": "Seed 003's error shape: the message in `error`, MemoryWeb's `code` and "
                   "`field` beside it.",
    "properties": {"error": {"type": "string"}, "code": {"type": "string"},
                   "field": {"type": "string"}},
    "required": ["error", "code"],
}

#: JSON scalars as metadata holds them: numbers within 64 bits (SQL and the vector index
#: store no wider), strings without NUL.
_JSON_SCALARS = [
    {"type": "string"},
    {"type": "number", "minimum": -(2**63), "maximum": 2**63 - 1},
    {"type": "boolean"},
]


def _bounded_json_component(levels: int) -> dict[str, Any]:
    """A JSON value nesting at most ``levels`` arrays/objects (0: a scalar or null)."""
    branches: list[dict[str, Any]] = list(_JSON_SCALARS)
    if levels > 0:
        inner = {"$ref": f"#/components/schemas/JsonValue{levels - 1}"}
        branches += [{"type": "array", "items": inner},
                     {"type": "object", "additionalProperties": inner}]
    return {"anyOf": branches, "nullable": True,
            "description": f"Any JSON value nesting at most {levels} arrays or objects."}


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's AutoSchema with MemoryWeb's shared rules (see the module doc)."""

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is not None:
            self._add_error_responses(operation)
        return operation

    # --- error answers ---------------------------------------------------------------

    def _is_public(self) -> bool:
        return all(issubclass(p, AllowAny) for p in self.view.permission_classes)

    def _error_statuses(self, operation: dict[str, Any]) -> list[str]:
        public = self._is_public()
        has_body = "requestBody" in operation
        has_input = has_body or bool(operation.get("parameters"))
        statuses = []
        if not public or has_input:
            statuses.append("400")
        if not public:
            statuses += ["401", "403", "404"]
            if self.method in WRITE_METHODS:
                statuses.append("409")
        if self.method in WRITE_METHODS:
            statuses.append("413")
        if has_body and not any(p.media_type == "*/*" for p in self.view.get_parsers()):
            statuses.append("415")
        if not public or self.view.get_throttles():
            statuses.append("429")
        if not public:
            statuses.append("503")
        return statuses

    def _error_schema(self) -> dict[str, Any]:
        envelope = self.resolve_serializer(ErrorSerializer, "response").ref
        if getattr(self.view, "openapi_error_style", "envelope") != "flat":
            return envelope
        flat = ResolvedComponent(name="FlatError", type=ResolvedComponent.SCHEMA,
                                 schema=FLAT_ERROR_SCHEMA, object="FlatError")
        self.registry.register_on_missing(flat)
        # Refusals before the view (body size, malformed Content-Length) keep the envelope.
        return {"oneOf": [flat.ref, envelope]}

    def _add_error_responses(self, operation: dict[str, Any]) -> None:
        responses = operation["responses"]
        for status in self._error_statuses(operation):
            if status not in responses:
                responses[status] = {
                    "description": ERROR_DESCRIPTIONS[status],
                    "content": {"application/json": {"schema": self._error_schema()}},
                }

    # --- query parameters ----------------------------------------------------------

    def _get_filter_parameters(self):
        """django-filter reads an empty value (``?kind=``, ``?created_after=``) as "no
        filter"; the schema says so, or it would call those requests invalid."""
        parameters = super()._get_filter_parameters()
        for parameter in parameters:
            schema = parameter.get("schema", {})
            if "enum" in schema and "" not in schema["enum"]:
                schema["enum"] = [*schema["enum"], ""]
            elif schema.get("format") in ("date-time", "date"):
                parameter["schema"] = {"anyOf": [schema, {"type": "string", "maxLength": 0}]}
        return parameters

    # --- request bodies ------------------------------------------------------------

    def _get_request_body(self, direction="request"):
        """drf-spectacular documents bodies for POST, PUT and PATCH only, and a PATCH body
        as partial (nothing required). A DELETE whose view reads a body
        (``reads_delete_body``: seed 003's ``/v1/forget``) and a PATCH whose body is whole
        (``patch_body_is_whole``: ``/v1/update`` requires ``id``) are described as POSTs."""
        method = self.method
        if ((method == "DELETE" and getattr(self.view, "reads_delete_body", False))
                or (method == "PATCH" and getattr(self.view, "patch_body_is_whole", False))):
            self.method = "POST"
        try:
            body = super()._get_request_body(direction)
        finally:
            self.method = method
        if body and not body.get("required"):
            # One of several fields is required (oneOf): so is the body.
            serializer = self.get_request_serializer()
            candidates = serializer.values() if isinstance(serializer, dict) else [serializer]
            if any(getattr(s, "openapi_one_of_required", ()) for s in candidates):
                body["required"] = True
        return body

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        # A nested ``many=True`` serializer's bounds (drf-spectacular leaves them out).
        for name, field in serializer.fields.items():
            prop = schema.get("properties", {}).get(name)
            if isinstance(field, serializers.ListSerializer) and prop is not None:
                if field.min_length is not None:
                    prop["minItems"] = field.min_length
                if field.max_length is not None:
                    prop["maxItems"] = field.max_length
        if direction != "request":
            return schema
        if getattr(serializer, "refuses_unknown_fields", False):
            schema["additionalProperties"] = False
        # Exactly one, or at most one, of some fields is given (seed 000's gist, content,
        # text; a selector's subject).
        one_of = getattr(serializer, "openapi_one_of_required", ())
        if one_of:
            schema["oneOf"] = [self._given(schema, name) for name in one_of]
        at_most_one = getattr(serializer, "openapi_at_most_one_of", ())
        if at_most_one:
            schema["not"] = {"anyOf": [{"allOf": [self._given(schema, a), self._given(schema, b)]}
                                       for i, a in enumerate(at_most_one)
                                       for b in at_most_one[i + 1:]]}
        return schema

    @staticmethod
    def _given(schema: dict[str, Any], name: str) -> dict[str, Any]:
        """``name`` is given: present, not null, and (a list) not empty, which is how the
        views read such fields."""
        prop = schema.get("properties", {}).get(name, {})
        given: dict[str, Any] = {"type": prop["type"]} if "type" in prop else {}
        if prop.get("type") == "array":
            given["minItems"] = 1
        return {"required": [name], "properties": {name: given}} if given else {"required": [name]}

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        depth = getattr(field, "json_object_depth", None)
        if depth is not None and direction == "request":
            return self._bounded_json_object(field, depth)
        self._direction = direction  # for _insert_field_validators, which is not told
        return super()._map_serializer_field(field, direction, bypass_extensions)

    def _bounded_json_object(self, field, depth: int) -> dict[str, Any]:
        """An object whose values nest at most ``depth - 1`` levels (the object is one)."""
        for levels in range(depth):
            self.registry.register_on_missing(ResolvedComponent(
                name=f"JsonValue{levels}", type=ResolvedComponent.SCHEMA,
                schema=_bounded_json_component(levels), object=f"JsonValue{levels}"))
        schema: dict[str, Any] = {
            "type": "object",
            "additionalProperties": {"$ref": f"#/components/schemas/JsonValue{depth - 1}"},
        }
        if field.allow_null:
            schema["nullable"] = True
        if field.help_text:
            schema["description"] = str(field.help_text)
        return schema

    def _insert_field_validators(self, field, schema):
        super()._insert_field_validators(field, schema)
        if (getattr(self, "_direction", None) == "request"
                and isinstance(field, serializers.CharField) and schema.get("type") == "string"
                and field.trim_whitespace and not field.allow_blank
                and "pattern" not in schema and "enum" not in schema
                and "format" not in schema):
            # Some non-space character (trimmed before the blank check). Python also strips
            # \x1c-\x1f and \x85, which the schema's regex dialect does not count as space.
            schema["pattern"] = NOT_BLANK
