"""The certificate as proof in the dashboard (issue 17, item 4): "Verify now", which runs
``manage.py verify_certificate``'s checks (apps/privacy/certificates.py) inside the
server process, and a printable page for the data subject.

Inside the server is where the checks can run while the server holds the embedded
vector store. Both pages need the request to be visible to the person (a 404 otherwise)
and executed.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from apps.core.errors import ServiceError
from apps.privacy.admin_story import certificate_card, role_of
from apps.privacy.admin_workflow import describe, visible_request
from apps.privacy.certificates import NotACertificate, store_labels, verify_certificate
from apps.privacy.erasure import FORMAT
from apps.privacy.models import ErasureRequest, ErasureState


def _executed(request: HttpRequest, model_admin, object_id) -> ErasureRequest | HttpResponse:
    found = visible_request(model_admin.principal(request), object_id)
    if found.state != ErasureState.EXECUTED or not found.certificate:
        messages.error(request, "No certificate: the request has not been executed.")
        return HttpResponseRedirect(reverse("admin:privacy_erasurerequest_change",
                                            args=[found.pk]))
    return found


def verify_view(model_admin, request: HttpRequest, object_id) -> HttpResponse:
    """POST: every check of ``verify_certificate`` on the stored certificate, now, with
    each result. Changes nothing (a POST because it walks the whole audit chain)."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    found = _executed(request, model_admin, object_id)
    if isinstance(found, HttpResponse):
        return found
    system = model_admin.principal(request).is_system_admin
    error, checks, status, verified = None, [], 200, False
    try:
        result = verify_certificate(found.certificate)
    except (NotACertificate, ServiceError) as exc:
        error = f"Could not verify: {getattr(exc, 'message', str(exc))}"
        status = getattr(exc, "status", 400)
    else:
        verified = result.ok
        labels = store_labels()
        for check in result.checks:
            store = check.name.removeprefix("store ")
            label = f"store: {labels[store]}" if store in labels else check.name
            checks.append({"name": check.name, "label": label, "ok": check.ok,
                           "detail": check.detail_for(system)})
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Certificate verification", "original": found, "opts": model_admin.model._meta,
        "checks": checks, "verified": verified, "error": error,
        "passed": sum(1 for check in checks if check["ok"]),
        "back": reverse("admin:privacy_erasurerequest_change", args=[found.pk]),
    }
    return TemplateResponse(request, "admin/privacy/erasurerequest/verify.html", context,
                            status=status)


def print_view(model_admin, request: HttpRequest, object_id) -> HttpResponse:
    """A clean page for the data subject: what was erased, when, by whom (roles), the
    certificate's hash and how to verify it. No dashboard chrome; print CSS."""
    found = _executed(request, model_admin, object_id)
    if isinstance(found, HttpResponse):
        return found
    certificate = found.certificate
    ns = found.namespace_id
    card = certificate_card(certificate)
    erased = certificate.get("erased") or []
    context = {
        "original": found, "certificate": certificate, "card": card,
        "memories": (certificate.get("counts") or {}).get("memories", len(erased)),
        "also": [(label, count) for label, count in card["counts"]
                 if label != "memories" and count],
        "subject": describe(found.selector), "format": FORMAT,
        "requested_by": role_of(found.requested_by, ns),
        "approved_by": role_of(found.decided_by, ns),
        "executed_by": role_of(found.executed_by, ns),
        "erased": erased,
        "site_url": request.build_absolute_uri("/"),
    }
    return TemplateResponse(request, "admin/privacy/erasurerequest/certificate_print.html",
                            context)
