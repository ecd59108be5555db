from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from apps.core.errors import ServiceError
from apps.core.roles import Role
from apps.tenancy.members import set_role
from apps.tenancy.models import Namespace

MEMBER_ROLES = ["reader", "agent", "admin"]


class Command(BaseCommand):
    help = ("Give a person a role in a namespace (creating the user if missing), or take it "
            "away with --remove. Roles: reader (recall, read), agent (also store), admin "
            "(team admin: also edit, delete, manage members and keys).")

    def add_arguments(self, parser):
        parser.add_argument("slug", help="the namespace")
        parser.add_argument("username", help="the person's username")
        parser.add_argument("--role", choices=MEMBER_ROLES, default="reader",
                            help="the role to hold (default: reader); replaces any earlier role")
        parser.add_argument("--password", help="set this password (a new user without one "
                            "cannot log in until a password is set)")
        parser.add_argument("--email", default="", help="e-mail address for a new user")
        parser.add_argument("--remove", action="store_true", help="end the membership instead")

    def handle(self, slug, username, role, password, email, remove, **options):
        namespace = Namespace.objects.filter(slug=slug).first()
        if namespace is None:
            raise CommandError(f"namespace {slug!r} not found.")
        users = get_user_model()
        user = users.objects.filter(**{users.USERNAME_FIELD: username}).first()
        if user is None:
            if remove:
                raise CommandError(f"user {username!r} not found.")
            user = users.objects.create_user(username=username, email=email, password=password)
            self.stdout.write(f"created user {username}")
        elif password:
            user.set_password(password)
            user.save(update_fields=["password"])
        try:
            set_role(namespace, user, None if remove else Role.from_label(role))
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"{username} is no longer a member of {slug}" if remove
                          else f"{username} is {role} in {slug}")
