"""Limit/offset pagination with the documented page-size cap."""

import re

from django.conf import settings
from rest_framework.pagination import LimitOffsetPagination as DRFLimitOffsetPagination

from apps.core.errors import InvalidInput

_DIGITS = re.compile(r"\d{1,9}", re.ASCII)
MAX_OFFSET = 999_999_999


class LimitOffsetPagination(DRFLimitOffsetPagination):
    """``?limit=&offset=``; ``count``, ``next``, ``previous``, ``results``.

    DRF quietly falls back to the defaults for a limit or offset it cannot read
    (``offset=null`` listed the first page); here that is a 400 naming the parameter, as
    the schema says. A limit over the cap is still capped (documented in docs/api.md).
    """

    max_limit = settings.MEMORYWEB_LIMITS["max_page_size"]

    def _integer(self, request, name: str, low: int) -> int | None:
        raw = request.query_params.get(name)
        if raw is None:
            return None
        if not _DIGITS.fullmatch(raw) or int(raw) < low:
            raise InvalidInput(f"{name} must be an integer from {low} to {MAX_OFFSET}.",
                               field=name)
        return int(raw)

    def get_limit(self, request):
        limit = self._integer(request, self.limit_query_param, 1)
        return self.default_limit if limit is None else min(limit, self.max_limit)

    def get_offset(self, request):
        return self._integer(request, self.offset_query_param, 0) or 0

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        bounds = {self.limit_query_param: {"minimum": 1, "maximum": MAX_OFFSET},
                  self.offset_query_param: {"minimum": 0, "maximum": MAX_OFFSET}}
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        if parameters and parameters[0]["name"] == self.limit_query_param:
            parameters[0]["description"] = (f"Page size; more than {self.max_limit:,} "
                                            f"gives {self.max_limit:,}.")
        return parameters
