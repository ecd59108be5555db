"""Invitations: a team admin offers a role, the person accepts (issue 16, item 4)."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("tenancy", "0009_apikey_rotation_recorded"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Invitation",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("invitee", models.CharField(max_length=254)),
                ("by_email", models.BooleanField(default=False, help_text="invitee is an e-mail address.")),
                ("role", models.CharField(choices=[("reader", "Reader"), ("agent", "Agent"), ("admin", "Admin")], max_length=16)),
                ("status", models.CharField(choices=[("pending", "Pending"), ("accepted", "Accepted"), ("declined", "Declined"), ("revoked", "Revoked")], default="pending", max_length=16)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ("created_by", models.CharField(editable=False, help_text="The principal that sent the invitation.", max_length=200)),
                ("expires_at", models.DateTimeField()),
                ("decided_at", models.DateTimeField(blank=True, help_text="When it was accepted, declined or revoked.", null=True)),
                ("namespace", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="invitations", to="tenancy.namespace")),
                ("user", models.ForeignKey(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to=settings.AUTH_USER_MODEL)),
            ],
            options={
                "ordering": ["-created_at", "-pk"],
                "indexes": [models.Index(fields=["user", "status"], name="invitation_user_idx")],
                "constraints": [models.UniqueConstraint(condition=models.Q(("status", "pending")), fields=("namespace", "invitee", "by_email"), name="invitation_one_pending_per_invitee")],
            },
        ),
    ]
