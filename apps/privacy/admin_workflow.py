"""The GDPR workflow's pages in the dashboard (issue 17, item 1): "Export" and "New
erasure request", reached from the privacy section, from the memory list (its current
filters prefill the form, its selection fills the ids) and from an erasure request
("Export before erasing").

Nothing here decides anything: the export is ``selectors.select`` + ``export.start``
streamed by the REST view's ``streaming`` (same audit entry, with its count), and a
request is ``erasure.create`` (same validation, namespaces, four-eyes and audit). A
namespace the person does not manage is not offered, and naming one anyway is refused
before any service runs; another tenant's erasure request is a 404.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from apps.core.confirm import plural
from apps.core.errors import InvalidInput, ServiceError
from apps.privacy import erasure, export, four_eyes
from apps.privacy.admin_forms import SUBJECT_LABELS, ErasureForm, ExportForm, SelectorForm
from apps.privacy.api.views import streaming
from apps.privacy.models import ErasureRequest, ErasureState
from apps.privacy.selectors import Selector, select
from apps.tenancy.principal import Principal

TEMPLATE = "admin/privacy/selector_form.html"
#: GET parameters that prefill the forms (the memory list's links use them).
PREFILL = ("namespace", *SUBJECT_LABELS, "reason")


def prefill(query: Mapping[str, str]) -> dict[str, Any]:
    """Initial values from a query string; ``ids`` comma-separated."""
    initial = {name: query[name] for name in PREFILL if query.get(name)}
    if "ids" in initial:
        initial["ids"] = "\n".join(part for part in initial["ids"].split(",") if part)
    return initial


def describe(selector: Mapping[str, Any]) -> str:
    """``data subject id "dana" in alpha``, ``3 memories chosen by id in alpha``."""
    slug = selector.get("namespace", "")
    for name, label in SUBJECT_LABELS.items():
        if name == "ids" and "ids" in selector:
            return f"{plural(len(selector['ids']), 'memory', 'memories')} chosen by id in {slug}"
        if name in selector:
            return f"{label.lower()} “{selector[name]}” in {slug}"
    return f"the whole namespace {slug}"


def stream_export(request: HttpRequest, principal: Principal, selector: Selector, *,
                  context: Mapping[str, Any] | None = None) -> HttpResponse:
    """The export as a download, exactly as ``GET /api/v1/export`` answers it."""
    subject = selector.subject[0] if selector.subject else "all"
    filename = f"memoryweb-{selector.namespace.slug}-{subject}.jsonl"
    return streaming(request, export.start(principal, selector, context=context), filename)


def form_page(request: HttpRequest, admin_site, form: SelectorForm, *, erasing: bool,
              status: int = 200, intro: str = "") -> TemplateResponse:
    """The export or new-request form, its fields grouped as the person reads them."""
    groups = [("Where", ["namespace"]),
              ("Whose memories — fill in one" + ("" if erasing else " (or none: the whole "
                                                 "namespace)"), list(SUBJECT_LABELS))]
    if erasing:
        groups.append(("Why", ["reason"]))
    context = {
        **admin_site.each_context(request),
        "title": "New erasure request" if erasing else "Export memories",
        "form": form, "erasing": erasing, "intro": intro,
        "groups": [(title, [form[name] for name in names]) for title, names in groups],
        "action_url": reverse("admin:privacy_erasure_new" if erasing else "admin:privacy_export"),
        "submit": "Request erasure" if erasing else "Download export (JSON lines)",
        "list_url": reverse("admin:privacy_erasurerequest_changelist"),
        "has_namespaces": bool(form.fields["namespace"].choices),
    }
    return TemplateResponse(request, TEMPLATE, context, status=status)


def _form(form_class: type[SelectorForm], request: HttpRequest, principal: Principal
          ) -> SelectorForm:
    """The export or request form: bound to a POST, else prefilled from the query string."""
    return form_class(request.POST if request.method == "POST" else None,
                      initial=prefill(request.GET), principal=principal)


def export_view(model_admin, request: HttpRequest) -> HttpResponse:
    """GET: the export form (prefilled from the query string). POST: validate, then stream
    the download; a POST naming ``erasure`` exports what that request selects."""
    principal = model_admin.principal(request)
    if request.method == "POST" and request.POST.get("erasure"):
        return _export_request(request, principal, request.POST["erasure"])
    form = _form(ExportForm, request, principal)
    status = 200
    if form.is_bound:
        status = 400
        if form.is_valid():
            try:
                selector = select(principal, form.selector_data())
                if not selector.memories().exists() and not selector.other_rows():
                    # an empty file would say nothing
                    raise InvalidInput(f"{describe(selector.describe())} matches no memory "
                                       "and nothing else: there is nothing to export.",
                                       field=selector.subject[0] if selector.subject else None)
                return stream_export(request, principal, selector)
            except ServiceError as exc:
                form.refused(exc)
                status = exc.status
    return form_page(request, model_admin.admin_site, form, erasing=False, status=status)


def _export_request(request: HttpRequest, principal: Principal, request_id: str) -> HttpResponse:
    """"Export before erasing": exactly the memories the request selects now."""
    found = visible_request(principal, request_id)
    back = reverse("admin:privacy_erasurerequest_change", args=[found.pk])
    if found.state in (ErasureState.EXECUTED, ErasureState.EXECUTING) or found.namespace is None:
        messages.error(request, "Nothing to export: the request's memories were erased.")
        return HttpResponseRedirect(back)
    try:
        selector = select(principal, found.selector)
    except ServiceError as exc:
        messages.error(request, f"Could not export: {exc.message}")
        return HttpResponseRedirect(back)
    return stream_export(request, principal, selector, context={"erasure_request": str(found.pk)})


def visible_request(principal: Principal, request_id: Any) -> ErasureRequest:
    """The request if the person may see it; anything else is a 404 (never say which)."""
    try:
        return erasure.get(principal, request_id)
    except ServiceError:
        raise Http404("erasure request not found.") from None


def new_request_view(model_admin, request: HttpRequest) -> HttpResponse:
    """GET: the new-request form (prefilled). POST: ``erasure.create``, then the request's
    review page; a refusal is shown on the form and nothing is created."""
    principal = model_admin.principal(request)
    form = _form(ErasureForm, request, principal)
    status = 200
    if form.is_bound:
        status = 400
        if form.is_valid():
            try:
                created = erasure.create(principal, form.selector_data())
            except ServiceError as exc:
                form.refused(exc)
                status = exc.status
            else:
                selected = Selector.described(created.namespace, created.selector)
                count, other = selected.memories().count(), sum(selected.other_rows().values())
                also = (f" and {plural(other, 'row', 'rows')} the gateway learned from the "
                        "subject" if other else "")
                who = ("another team admin or a system admin (four-eyes: not you)"
                       if four_eyes.enabled() else "a team admin or a system admin")
                messages.success(request, f"Erasure requested: {describe(created.selector)}, "
                                 f"{plural(count, 'memory', 'memories')}{also}. Next, {who} approves "
                                 "or rejects it.")
                return HttpResponseRedirect(reverse("admin:privacy_erasurerequest_change",
                                                    args=[created.pk]))
    return form_page(request, model_admin.admin_site, form, erasing=True, status=status)
