from django.core.management.base import BaseCommand, CommandError

from apps.core.errors import ServiceError
from apps.core.key_providers import KeyUnavailable
from apps.tenancy.services import create_namespace


class Command(BaseCommand):
    help = "Create a namespace (a tenant). Prints its slug."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="lowercase letters, digits, '-' or '_'")
        parser.add_argument("--name", default="", help="human-readable name (default: the slug)")
        parser.add_argument(
            "--encrypted", action="store_true",
            help="seal its memories at rest under its own data key, wrapped by the key "
            "provider's KEK in MEMORYWEB_KEYSTORE_DIR (docs/encryption.md); cannot be undone")

    def handle(self, slug, name, encrypted=False, **options):
        try:
            namespace = create_namespace(slug, name, encrypted=encrypted)
        except (ServiceError, KeyUnavailable) as exc:
            raise CommandError(getattr(exc, "message", str(exc))) from None
        self.stdout.write(namespace.slug)
