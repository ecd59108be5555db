"""Precise lookup in the dashboard's memory list (issue 17, item 2): the keyword index,
never ``LIKE``.

- Every word by default; ``?match=any`` (the "any word" box beside the search) for any
  of them. "Quoted phrases" and punctuated tokens (e-mail addresses, URLs, ids) match
  exactly as written (services.keyword_matches, lexical_lookup.parse_lookup).
- Across namespaces the rows are grouped by namespace (slug order), each namespace's
  best first: BM25 scores are per namespace (each has its own index statistics) and do
  not compare, so interleaving them put another tenant's weak match above a strong one.
- At most ``MEMORYWEB_DASHBOARD_SEARCH_LIMIT`` matches are listed. One more is looked
  for, so a capped search says "1,000+ matches — refine your search" instead of passing
  1,000 for an exact count, and "select all" across pages is refused while capped: it
  would act on an arbitrary cut of the matches.
- The content column shows the text around the first match with the matched terms in
  ``<mark>``, every piece of the (untrusted) text escaped.

What a search found travels from ``get_search_results`` (called by the ChangeList while
it builds its queryset) to the templates on the request (``request.memoryweb_lookup``),
then on the ChangeList (``cl.lookup``): the admin gives no other per-request channel.

Encrypted namespaces (issue 23) are searched the same way: their keyword index holds
blind tokens, and ``lexical.search`` blinds the search's words with each namespace's key
(lexical_lookup.py), so every word, any word, phrases and exact items work unchanged and
the highlights are made on the opened text. A namespace whose key is unavailable is left
out of the search with a message naming it, so the others' matches still list.

Other changelists whose searched text is sealed in encrypted namespaces (the gateway's
learned facts) use :class:`SealedTextSearchMixin`: SQL's ``icontains`` for the plain
namespaces' rows, and for the encrypted namespaces' rows the newest
:data:`SEALED_SCAN_ROWS` opened and matched in Python, plus an exact lookup by keyed hash
where the store has one (a fact's ``key``) that reaches past that cap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.db.models import Case, Count, IntegerField, Q, Value, When
from django.http import HttpResponseRedirect
from django.utils.html import escape, format_html, format_html_join
from django.utils.text import smart_split, unescape_string_literal

from apps.core import keystore, namespace_keys
from apps.core.key_providers import KeyUnavailable
from apps.memories import blind_tokens, lexical_lookup, services
from apps.memories.admin_filters import MetadataFilter, SubjectFilter
from apps.memories.models import Memory
from apps.tenancy.models import Namespace

#: The query parameter of the "any word" box (absent: every word).
MATCH_VAR = "match"
#: Query parameters that are not list filters: without any other, the search is not
#: narrowed by a candidate subquery (it costs more than the match itself).
UNFILTERED = {"q", "o", "p", MATCH_VAR, "_facets", "e", "all", "_popup", "_to_field"}
#: The content column: characters shown, and of context before the first match.
SNIPPET = 100
CONTEXT = 30
HELP = ("Every word, in any order (tick “any word” for any of them); "
        "“a quoted phrase” and e-mail addresses, URLs and ids match exactly as written.")


def search_limit() -> int:
    """Matches a search lists at most (read per request, so a test or an operator's
    change applies at once)."""
    return settings.MEMORYWEB_DASHBOARD_SEARCH_LIMIT


@dataclass
class LookupResult:
    """What one search found, for the notice, the counts and the select-all rule."""

    text: str
    match_all: bool
    parsed: lexical_lookup.Lookup
    #: Matches found, counting at most one past the cap.
    found: int
    cap: int
    #: (namespace slug, namespace id, rows listed) when rows of several namespaces are listed.
    groups: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def capped(self) -> bool:
        return self.found > self.cap

    @property
    def listed(self) -> int:
        return min(self.found, self.cap)

    @property
    def cap_label(self) -> str:
        return f"{self.cap:,}"

    @property
    def listed_label(self) -> str:
        return f"{self.listed:,}"


class LookupChangeList(ChangeList):
    """The memory list's ChangeList: ``match`` is the search's option, not a field
    lookup; ``lookup`` and ``match_any`` are what the templates read; each listed row
    gets the parsed search (``lookup_query``) for the content column's highlights."""

    def get_filters_params(self, params=None):
        lookup_params = super().get_filters_params(params)
        lookup_params.pop(MATCH_VAR, None)
        return lookup_params

    def get_results(self, request):
        super().get_results(request)
        self.match_any = request.GET.get(MATCH_VAR) == "any"
        self.lookup_help = HELP
        self.lookup: LookupResult | None = getattr(request, "memoryweb_lookup", None)
        if self.lookup is not None:
            for obj in self.result_list:  # evaluates the page once; the template reuses it
                obj.lookup_query = self.lookup.parsed


class MemorySearchMixin:
    """Search, the content column and the select-all rule for
    :class:`apps.memories.admin.MemoryAdmin`."""

    #: The sidebar's lookup filters (MemoryAdmin.list_filter lists them after the tags).
    lookup_filters = (SubjectFilter, MetadataFilter)

    @admin.display(description="content")
    def snippet(self, obj):
        """The start of the content, or with a search the text around its first match,
        matched terms in ``<mark>``; every piece of content escaped (format_html)."""
        content = obj.content
        query: lexical_lookup.Lookup | None = getattr(obj, "lookup_query", None)
        spans = query.spans(content) if query is not None else []
        if not spans:
            return content[:80] + ("…" if len(content) > 80 else "")
        start = 0 if len(content) <= SNIPPET else max(0, spans[0][0] - CONTEXT)
        if start:  # begin at a word, unless that is far back
            space = content.rfind(" ", 0, start + 1)
            start = space + 1 if 0 <= start - space <= 20 else start
        end = min(len(content), max(start + SNIPPET, spans[0][1]))
        parts = ["…"] if start else []
        position = start
        for first, last in spans:
            first, last = max(first, position), min(last, end)
            if first >= end:
                break
            if last <= first:
                continue
            parts += [escape(content[position:first]), format_html("<mark>{}</mark>", content[first:last])]
            position = last
        parts.append(escape(content[position:end]))
        if end < len(content):
            parts.append("…")
        return format_html_join("", "{}", ((part,) for part in parts))

    def get_changelist(self, request, **kwargs):
        return LookupChangeList

    def get_search_results(self, request, queryset, search_term):
        """Keyword-index matches in the person's namespaces, within the list's filters;
        grouped by namespace, best first, unless a column sort is chosen."""
        request.memoryweb_lookup = None
        if not search_term.strip():
            return queryset, False
        match = "any" if request.GET.get(MATCH_VAR) == "any" else "all"
        cap = search_limit()
        # The namespaces and which are encrypted in one query (the page's query count is
        # pinned: one keyword lookup per namespace, nothing per row).
        held = list(queryset.order_by().values_list(
            "namespace_id", "namespace__encrypted", "namespace__slug").distinct())
        namespace_ids = searchable(request, [pk for pk, _, _ in held],
                                   {pk: slug for pk, sealed, slug in held if sealed})
        filtered = bool(set(request.GET) - UNFILTERED)
        try:
            ids = services.keyword_matches(self.principal(request), search_term, cap + 1,
                                           namespace_ids=namespace_ids, match=match,
                                           candidates=queryset.order_by() if filtered else None)
        except (KeyUnavailable, keystore.KeystoreError) as exc:  # lost since the check above
            messages.error(request, f"Not searched: {exc}")
            ids = []
        result = LookupResult(search_term, match == "all",
                              lexical_lookup.parse_lookup(search_term, match_all=match == "all"),
                              found=len(ids), cap=cap)
        ids = ids[:cap]
        queryset = queryset.filter(pk__in=ids)
        if len(namespace_ids) > 1 and ids:
            rows = (Memory.objects.filter(pk__in=ids).values("namespace_id", "namespace__slug")
                    .annotate(n=Count("pk")).order_by("namespace__slug"))
            result.groups = [(row["namespace__slug"], row["namespace_id"], row["n"]) for row in rows]
        request.memoryweb_lookup = result
        if "o" not in request.GET and ids:  # no column sort chosen: keep the lookup's order
            rank = Case(*[When(pk=pk, then=Value(i)) for i, pk in enumerate(ids)],
                        output_field=IntegerField())
            queryset = queryset.annotate(search_rank=rank).order_by("search_rank")
        return queryset, False

    def response_action(self, request, queryset):
        """Refuse "select all" (``select_across``) while the search is capped: it would
        act on the listed cut of the matches, not on what the person searched for."""
        lookup: LookupResult | None = getattr(request, "memoryweb_lookup", None)
        if request.POST.get("select_across") == "1" and lookup is not None and lookup.capped:
            messages.error(request, f"Nothing was done: the search matches more than "
                           f"{lookup.cap_label} memories, so “select all” would take an "
                           f"arbitrary {lookup.cap_label} of them. Refine the search (more "
                           f"words, a “quoted phrase”, a filter) or select rows on the page.")
            return HttpResponseRedirect(request.get_full_path())
        return super().response_action(request, queryset)


# --- encrypted namespaces ---------------------------------------------------------------

#: Rows of encrypted namespaces one search of a sealed-text changelist opens at most
#: (:class:`SealedTextSearchMixin`), newest first: ~0.1 ms each, so well under a second.
SEALED_SCAN_ROWS = 5000


def unreadable(encrypted: dict[int, str]) -> dict[int, tuple[str, str]]:
    """``{id: (slug, why)}`` of the encrypted namespaces (``encrypted``: id -> slug, as
    the caller's own query read them) whose key cannot be used (shredded, missing, a wrong
    KEK): searching them would fail closed."""
    found = {}
    for pk, slug in encrypted.items():
        try:
            namespace_keys.data_key(pk)
            namespace_keys.subkey(pk, blind_tokens.PURPOSE)
        except (KeyUnavailable, keystore.KeystoreError) as exc:
            found[pk] = (slug, str(exc))
    return found


def searchable(request: Any, namespace_ids: list[int], encrypted: dict[int, str]) -> list[int]:
    """``namespace_ids`` without the encrypted namespaces whose key is unavailable, each
    left out with an error message naming it (the page still lists the others' matches,
    instead of the 503 the whole search would be). ``encrypted``: id -> slug of the
    encrypted ones among them."""
    left_out = unreadable(encrypted)
    for slug, why in left_out.values():
        messages.error(request, f"Not searched: namespace “{slug}” — its encryption key is "
                                f"not available ({why}). Its rows are left out of the results.")
    return [pk for pk in namespace_ids if pk not in left_out]


def search_words(search_term: str) -> list[str]:
    """The admin's reading of a search box (``smart_split``: "quoted phrases" kept
    whole), case-folded: every one must be in the text."""
    words = []
    for bit in smart_split(search_term):
        if bit.startswith(('"', "'")) and bit[0] == bit[-1] and len(bit) > 1:
            bit = unescape_string_literal(bit)
        if bit.strip():
            words.append(bit.casefold())
    return words


class SealedTextSearchMixin:
    """The search box of a changelist whose ``search_fields`` are sealed text
    (``sealing.SealedText``) in encrypted namespaces, where SQL's ``icontains`` would
    compare ciphertext and find nothing.

    Plain namespaces' rows: the admin's own search. Encrypted namespaces' rows (of the
    list's queryset, so the person's scope and the filters hold): the newest
    :data:`SEALED_SCAN_ROWS` (``sealed_scan_order``) opened and matched in Python as the
    admin does (every word, any case, in any searched field), plus
    :meth:`sealed_exact_lookup` (a keyed hash of the whole term) past that cap; a notice
    says when the cap cut the scan. A namespace whose key is unavailable is left out,
    with a message naming it."""

    sealed_scan_order: tuple[str, ...] = ("-pk",)

    def sealed_exact_lookup(self, search_term: str, namespace: Namespace) -> Q | None:
        """Rows of an encrypted namespace found by a keyed hash of the whole term."""
        return None

    def get_search_results(self, request, queryset, search_term):
        namespace_ids = set(queryset.order_by().values_list("namespace_id", flat=True).distinct())
        encrypted = list(Namespace.objects.filter(pk__in=namespace_ids, encrypted=True))
        words = search_words(search_term)
        if not words or not encrypted:
            return super().get_search_results(request, queryset, search_term)
        sealed = {ns.pk for ns in encrypted}
        found, duplicates = super().get_search_results(
            request, queryset.exclude(namespace_id__in=sealed), search_term)
        kept = searchable(request, list(sealed), {ns.pk: ns.slug for ns in encrypted})
        readable = [ns for ns in encrypted if ns.pk in kept]
        matched = Q(pk__in=found.values("pk"))
        scanned, hits = 0, []
        rows = queryset.filter(namespace_id__in=[ns.pk for ns in readable]).order_by(
            *self.sealed_scan_order)
        for row in rows[:SEALED_SCAN_ROWS + 1].iterator(chunk_size=500):
            if scanned == SEALED_SCAN_ROWS:
                messages.warning(request, (
                    f"Encrypted namespaces: only the newest {SEALED_SCAN_ROWS:,} rows were "
                    "searched (their text is sealed, so it is opened and read here rather "
                    "than searched in SQL), plus exact matches of the whole text. Narrow the "
                    "list with a filter to search the rest."))
                break
            scanned += 1
            text = " ".join(str(getattr(row, name.lstrip("^=@")) or "")
                            for name in self.get_search_fields(request)).casefold()
            if all(word in text for word in words):
                hits.append(row.pk)
        matched |= Q(pk__in=hits)
        for ns in readable:
            exact = self.sealed_exact_lookup(search_term, ns)
            if exact is not None:
                matched |= Q(namespace_id=ns.pk) & exact
        return queryset.filter(matched), duplicates
