import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.core.errors import ServiceError
from apps.core.roles import Role
from apps.tenancy.models import Namespace
from apps.tenancy.services import create_api_key


class Command(BaseCommand):
    help = (
        "Create an API key and print it once (only its hash is stored). Either "
        "--namespace SLUG --role reader|agent|admin --agent-id ID, or --system-admin."
    )

    def add_arguments(self, parser):
        parser.add_argument("--namespace", help="slug of the namespace the key is bound to")
        parser.add_argument("--role", choices=["reader", "agent", "admin"], default="agent")
        parser.add_argument("--agent-id", help="identity stored on every memory written with it")
        parser.add_argument("--system-admin", action="store_true",
                            help="a global key that names the namespace per request")
        parser.add_argument("--name", default="", help="a label for lists")
        parser.add_argument("--expires-at", help="ISO 8601 date-time after which it stops working")

    def handle(self, *args, **opts):
        expires_at = None
        if opts["expires_at"]:
            expires_at = parse_datetime(opts["expires_at"])
            if expires_at is None:
                raise CommandError("--expires-at must be an ISO 8601 date-time")
            if timezone.is_naive(expires_at):
                expires_at = timezone.make_aware(expires_at, datetime.UTC)
            if expires_at <= timezone.now():
                raise CommandError("--expires-at is in the past")
        if opts["system_admin"]:
            if opts["namespace"]:
                raise CommandError("--system-admin keys are global; drop --namespace")
            role, namespace = Role.SYSTEM, None
            agent_id = opts["agent_id"] or "system-admin"
        else:
            if not opts["namespace"] or not opts["agent_id"]:
                raise CommandError("--namespace and --agent-id are required (or --system-admin)")
            namespace = Namespace.objects.filter(slug=opts["namespace"]).first()
            if namespace is None:
                raise CommandError(f"no namespace {opts['namespace']!r}")
            role, agent_id = Role.from_label(opts["role"]), opts["agent_id"]
        try:
            _, raw = create_api_key(role=role, agent_id=agent_id, namespace=namespace,
                                    name=opts["name"], expires_at=expires_at)
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(raw)
