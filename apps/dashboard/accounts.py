"""django-allauth adapter: sign-up is closed unless MEMORYWEB_OPEN_SIGNUP is on; the login
limits key on the same client address as every other per-address limit."""

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.core.exceptions import PermissionDenied

from apps.core.client_address import client_address


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request) -> bool:
        # People are invited (manage.py add_member, the admin); an open server would let
        # anyone create an account, even if it grants no namespace.
        return settings.MEMORYWEB_OPEN_SIGNUP

    def get_client_ip(self, request) -> str:
        """The login limits' address: the same rule as every other per-address limit
        (MEMORYWEB_TRUSTED_PROXIES), so X-Forwarded-For is believed no further."""
        address = client_address(request)
        if not address:
            raise PermissionDenied("Unable to determine client IP address")
        return address
