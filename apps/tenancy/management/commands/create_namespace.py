from django.core.management.base import BaseCommand, CommandError

from apps.core.errors import ServiceError
from apps.tenancy.services import create_namespace


class Command(BaseCommand):
    help = "Create a namespace (a tenant). Prints its slug."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="lowercase letters, digits, '-' or '_'")
        parser.add_argument("--name", default="", help="human-readable name (default: the slug)")

    def handle(self, slug, name, **options):
        try:
            namespace = create_namespace(slug, name)
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(namespace.slug)
