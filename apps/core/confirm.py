"""One confirmation step for the dashboard's irreversible one-click actions (issue 17, item 3).

Revert, erasure approve / reject / execute and member removal each answer a GET (or a
POST without ``confirm=yes``) with a page that names the effect ("Erase 62 memories in
support-bot") and a red button; only the confirming POST (CSRF-checked by Django's
middleware) acts. Cancel is a plain link back, so it cannot change anything. Where a
slip would be costly the page asks the user to type a word (the namespace slug).
"""

from __future__ import annotations

from collections.abc import Sequence

from django.http import HttpRequest
from django.template.response import TemplateResponse

TEMPLATE = "admin/mw_confirm.html"


def confirmed(request: HttpRequest) -> bool:
    """Whether this is the confirming POST (the page's own form), not a first click."""
    return request.method == "POST" and request.POST.get("confirm") == "yes"


def typed_matches(request: HttpRequest, expected: str) -> bool:
    """Whether the user typed ``expected`` exactly (surrounding spaces aside)."""
    return request.POST.get("typed", "").strip() == expected


def confirmation_page(request: HttpRequest, admin_site, *, title: str, effect: str, button: str,
                      cancel_url: str, details: Sequence[str] = (), typed: str | None = None,
                      reason: bool = False, error: str | None = None, can_confirm: bool = True,
                      status: int = 200, text: tuple[str, str] | None = None) -> TemplateResponse:
    """The confirmation page: ``effect`` in words, a danger ``button`` naming it, Cancel.

    ``typed``: a word the user must type to confirm; ``reason``: a required reason field;
    ``error``: why the last attempt was refused (shown as a form error, nothing changed);
    ``can_confirm`` False shows the page without the button (the action is refused);
    ``text``: ``(label, value)`` of a text the user may edit before confirming (posted as
    ``text``; the posted value is shown again after a refusal)."""
    context = {
        **admin_site.each_context(request),
        "title": title, "effect": effect, "button": button, "cancel_url": cancel_url,
        "details": list(details), "typed": typed, "reason": reason, "error": error,
        "can_confirm": can_confirm, "reason_value": request.POST.get("reason", ""),
        "text_label": text[0] if text else None,
        "text_value": request.POST.get("text", text[1]) if text else None,
    }
    return TemplateResponse(request, TEMPLATE, context, status=status)


def plural(count: int, one: str, many: str) -> str:
    """``1 memory``, ``62 memories``, ``1,027 memories``."""
    return f"{count:,} {one if count == 1 else many}"
