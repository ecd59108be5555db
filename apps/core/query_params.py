"""Unknown query parameters are refused: one mechanism for every route of the API and the
drop-in doors.

A misspelt filter used to be ignored: ``GET /api/v1/memories?agent=nobody`` (the filter is
``agent_id``) answered every memory, which reads as "nobody's memories" to the caller. A
body's unknown field was already a 400 (``StrictSerializer``); a query string's now is too.

Each view says what its handlers read (``query_params``: one set for the whole view, or
a mapping from action or method name to a set). A generic list adds what its machinery
reads, so the list cannot drift from what it takes: the filterset's fields (ordering
included) and the paginator's parameters. DRF's ``?format=`` (URL_FORMAT_OVERRIDE) is
always taken. The check runs after authentication and permissions (an anonymous caller
still gets 401) and raises ``InvalidInput``, so each door answers in its own error shape.
``tests/core/test_query_params.py`` fails for any route of the API or a drop-in door whose
view does not use this mixin.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from rest_framework.settings import api_settings

from apps.core.errors import InvalidInput

#: The actions of generic views: where the filterset and the paginator apply.
LIST_ACTIONS = frozenset({"list"})


def _always() -> set[str]:
    return {api_settings.URL_FORMAT_OVERRIDE} if api_settings.URL_FORMAT_OVERRIDE else set()


def _paginator_params(paginator) -> set[str]:
    """The query parameters a DRF paginator reads (limit/offset, page/page_size, cursor)."""
    names = ("limit_query_param", "offset_query_param", "page_query_param",
             "page_size_query_param", "cursor_query_param")
    return {value for name in names if (value := getattr(paginator, name, None))}


class KnownQueryParams:
    """View mixin: a query parameter the route does not read is a 400 naming it.

    ``query_params`` lists what the view's handlers read, for every action (a set) or per
    action / HTTP method (a mapping; a missing key means none).
    """

    query_params: Collection[str] | Mapping[str, Collection[str]] = ()

    def allowed_query_params(self, request) -> set[str]:
        declared = self.query_params
        action = getattr(self, "action", None) or request.method.lower()
        if isinstance(declared, Mapping):
            declared = declared.get(action, ())
        allowed = _always() | set(declared)
        if action in LIST_ACTIONS:
            filterset = getattr(self, "filterset_class", None)
            if filterset is not None:
                allowed |= set(filterset.base_filters)
            paginator = getattr(self, "paginator", None)
            if paginator is not None:
                allowed |= _paginator_params(paginator)
        return allowed

    def check_query_params(self, request) -> None:
        allowed = self.allowed_query_params(request)
        unknown = sorted(set(request.query_params) - allowed)
        if not unknown:
            return
        shown = sorted(allowed - _always())
        takes = f"it takes {', '.join(shown)}" if shown else "it takes none"
        names = ", ".join(repr(name) for name in unknown)
        raise InvalidInput(f"unknown query parameter{'s' if len(unknown) > 1 else ''} {names} "
                           f"for this route; {takes}.", field=unknown[0])

    def initial(self, request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)  # authentication and permissions first
        if hasattr(self, request.method.lower()):  # an unsupported method stays a 405
            self.check_query_params(request)


#: How a boolean query parameter may be written (anything else is a 400 naming it).
_TRUE, _FALSE = frozenset({"true", "1", "yes"}), frozenset({"false", "0", "no"})


def flag(params: Mapping[str, str], name: str, default: bool = False) -> bool:
    """A boolean query parameter: absent is ``default``; true/false (1/0, yes/no, any case)
    otherwise; an empty or other value is a 400 naming it."""
    raw = params.get(name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise InvalidInput(f"{name} must be true or false.", field=name)


_DIGITS = re.compile(r"\d{1,9}", re.ASCII)


def integer(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """``?name=`` as an integer in ``low..high`` (ASCII digits only), else a 400."""
    raw = params.get(name)
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise InvalidInput(f"{name} must be an integer from {low} to {high}.", field=name)
    return int(raw)
