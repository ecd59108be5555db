"""django-allauth adapter: sign-up is closed unless MEMORYWEB_OPEN_SIGNUP is on."""

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request) -> bool:
        # People are invited (manage.py add_member, the admin); an open server would let
        # anyone create an account, even if it grants no namespace.
        return settings.MEMORYWEB_OPEN_SIGNUP
