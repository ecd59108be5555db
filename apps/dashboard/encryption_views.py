"""The dashboard's Encryption and Erasure ledger pages (issue 23, item 6): system admins only.

*Encryption* lists every namespace: whether it is encrypted, its data key's version, age
and last rotation, and the KEK (by id) that wraps it; namespaces that are gone from SQL
but still have a key; the shredded keys; and whatever is wrong with the key store (an
unreadable file, a key that does not unwrap), shown rather than answered with a 500.
*Erasure ledger* pages through the ledger newest first, with the hash chain's verdict.

Both read apps/privacy/encryption_status.py, as the REST routes do, and so show the
same fields and never key material or a selector in clear. The key store spans every
namespace, so a team admin gets a 403 page that says so and leads back (the Tools do not
list these pages for them); readers and agents never reach the dashboard.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse
from django.utils.http import urlencode

from apps.core import erasure_ledger
from apps.core.errors import ServiceError
from apps.dashboard.views import _page, system_admin_only
from apps.privacy import encryption_status as services
from apps.tenancy.principal import Principal

#: Ledger entries on one page, newest first.
PAGE_SIZE = 50
#: Namespace rows on one page of the Encryption page.
NAMESPACES_PER_PAGE = 100


def urls(admin_view: Callable) -> list[URLPattern]:
    """The pages, as the dashboard's site registers them (apps/dashboard/sites.py)."""
    return [
        path("dashboard/encryption/", admin_view(encryption), name="encryption"),
        path("dashboard/erasure-ledger/", admin_view(ledger), name="erasure_ledger"),
    ]


def _system_admin(request: HttpRequest, title: str) -> Principal | HttpResponse:
    return system_admin_only(
        request, title, "is",
        "The key store holds every namespace's data keys and the record of every erasure, "
        "so only a system admin follows encryption keys, their rotation and the erasure "
        "ledger.", "Ask a system admin if you need to know whether a namespace is encrypted.")


def encryption(request: HttpRequest) -> HttpResponse:
    """Every namespace's encryption and keys, the shredded keys, the key store's problems."""
    principal = _system_admin(request, "Encryption")
    if isinstance(principal, HttpResponse):
        return principal
    report = services.report(principal)
    rows = [{"slug": row.slug, "id": row.namespace_id, "in_database": row.in_database,
             "encrypted": row.encrypted, "keys": row} for row in report.namespaces]
    rows += [{"slug": row["slug"], "id": row["pk"], "in_database": True,
              "encrypted": row["encrypted"], "keys": None}
             for row in services.plain_namespaces()]
    rows.sort(key=lambda row: (not row["in_database"], row["slug"], row["id"]))
    page = Paginator(rows, NAMESPACES_PER_PAGE).get_page(request.GET.get("page"))
    return _page(request, "dashboard/encryption.html", "Encryption", report=report,
                 page_obj=page, rows=page.object_list,
                 keyed=len(report.namespaces),
                 encrypted=sum(1 for row in rows if row["encrypted"]))


def ledger(request: HttpRequest) -> HttpResponse:
    """``?kind=&page=``: the erasure ledger, newest first, 50 a page."""
    principal = _system_admin(request, "Erasure ledger")
    if isinstance(principal, HttpResponse):
        return principal
    kind = request.GET.get("kind", "")
    if kind and kind not in erasure_ledger.KINDS:
        messages.warning(request, f"Showing every entry: ?kind= is one of "
                         f"{', '.join(erasure_ledger.KINDS)} ({kind[:20]} was asked for).")
        kind = ""
    problem = None
    try:
        entries = services.ledger_entries(principal, kind=kind or None)
    except ServiceError as exc:  # the ledger cannot be read: say so on the page
        entries, problem = [], exc.message
    verdict = services.ledger_verdict() if problem is None else None
    page = Paginator(entries, PAGE_SIZE).get_page(request.GET.get("page"))
    base = reverse("admin:erasure_ledger")
    filters = [("", "All", base)] + [
        (value, value.replace("_", " ").capitalize(), f"{base}?{urlencode({'kind': value})}")
        for value in erasure_ledger.KINDS]
    return _page(request, "dashboard/erasure_ledger.html", "Erasure ledger", page_obj=page,
                 entries=page.object_list, kind=kind, filters=filters, problem=problem,
                 verdict=verdict, path=erasure_ledger.path())
