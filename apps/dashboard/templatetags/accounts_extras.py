"""Template helpers for the account pages (templates/account/)."""

from __future__ import annotations

from allauth.account.adapter import get_adapter
from django import template

register = template.Library()


@register.simple_tag(takes_context=True)
def signup_open(context) -> bool:
    """Whether sign-up is open (the adapter's rule, MEMORYWEB_OPEN_SIGNUP): the login page
    invites a sign-up only then, not one that would answer "Sign Up Closed"."""
    return bool(get_adapter().is_open_for_signup(context.get("request")))
