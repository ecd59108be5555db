"""django-allauth adapter: sign-up is closed unless MEMORYWEB_OPEN_SIGNUP is on; the login
limits key on the same client address as every other per-address limit; a fresh login
counts as a recent authentication."""

from __future__ import annotations

import time

from allauth.account import app_settings as account_settings
from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.authentication import get_authentication_records
from django.conf import settings
from django.core.exceptions import PermissionDenied

from apps.core.client_address import client_address

#: The authentication records a login leaves in the session (allauth's names): the
#: password, then the TOTP or recovery code when one is set up. A password *reset* is not
#: one (it proves access to the mailbox, not knowledge of the password).
LOGIN_METHODS = frozenset({"password", "mfa"})


def logged_in_recently(request) -> bool:
    """True if the session's person typed their password (or code) at most
    ACCOUNT_REAUTHENTICATION_TIMEOUT seconds ago, at login or when re-authenticating.

    allauth's own check only counts re-authentications, so turning on TOTP right after
    logging in asked for the password a second time; the login is as fresh a proof."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return False
    times = [record.get("at") for record in get_authentication_records(request, user)
             if record.get("method") in LOGIN_METHODS]
    times = [at for at in times if isinstance(at, (int, float))]
    return bool(times) and time.time() - max(times) < account_settings.REAUTHENTICATION_TIMEOUT


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request) -> bool:
        # People are invited (manage.py add_member, the admin); an open server would let
        # anyone create an account, even if it grants no namespace.
        return settings.MEMORYWEB_OPEN_SIGNUP

    def is_reauthentication_required(self, *, app: str, **kwargs) -> bool:
        """What allauth asks before a sensitive account change (turning on TOTP, new
        recovery codes): the password again, unless the login itself is recent enough.
        A session older than the timeout still re-authenticates, as before."""
        if not super().is_reauthentication_required(app=app, **kwargs):
            return False
        return not logged_in_recently(self.request)

    def get_client_ip(self, request) -> str:
        """The login limits' address: the same rule as every other per-address limit
        (MEMORYWEB_TRUSTED_PROXIES), so X-Forwarded-For is believed no further."""
        address = client_address(request)
        if not address:
            raise PermissionDenied("Unable to determine client IP address")
        return address
