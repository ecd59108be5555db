"""manage.py rotate_keys: a new key-encryption key, or a new data key for one namespace.

Two rotations of envelope encryption (docs/encryption.md#rotation):

- ``--kek``: every namespace's data key re-wrapped under a new KEK at once. The data keys,
  and so every ciphertext, stay; only the wrapping in ``namespace-keys.json`` changes, in
  one locked rewrite of the file, while the server runs (it unwraps afresh from the file).
- ``--namespace SLUG``: a new data key version for one namespace, made current (new values
  are sealed under it). ``encrypt_namespace SLUG --reseal`` then re-seals what the older
  versions sealed under the new one and retires them: until it has run they stay and still
  open it, so a leaked old data key stays harmful for old data until then.

In apps/server (the top layer) rather than core: it looks namespaces up by slug and audits.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from apps.audit.log import record as audit
from apps.core import key_providers, keystore, namespace_keys
from apps.core.key_providers import KeyUnavailable
from apps.tenancy.models import Namespace

ACTOR = "system:manage.py rotate_keys"


class Command(BaseCommand):
    help = ("Rotate encryption-at-rest keys (docs/encryption.md). --kek: re-wrap every "
            "namespace's data key under a new key-encryption key (file provider: a new KEK "
            "file is made and the old one deleted once nothing is wrapped under it; env "
            "provider: set the new KEK in MEMORYWEB_KEK and the old one in "
            "MEMORYWEB_KEK_PREVIOUS first; a KMS provider: under its current key). "
            "--namespace SLUG: a new data key version for that namespace, used for new "
            "values; encrypt_namespace SLUG --reseal then re-seals older values under it and "
            "retires the older versions. Safe while the server runs; audited.")

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--kek", action="store_true",
                           help="re-wrap every data key under a new key-encryption key")
        which.add_argument("--namespace", metavar="SLUG",
                           help="make a new data key version for this encrypted namespace")

    def handle(self, *args: Any, kek: bool = False, namespace: str | None = None,
               **options: Any) -> None:
        try:
            if kek:
                self._kek()
            else:
                self._namespace(namespace or "")
        except (KeyUnavailable, keystore.KeystoreError, OSError) as exc:
            raise CommandError(str(exc)) from None

    # --- the key-encryption key ------------------------------------------------------

    def _kek(self) -> None:
        provider = str(getattr(settings, "MEMORYWEB_KEY_PROVIDER", "file") or "file")
        if problems := namespace_keys.problems():  # rotate nothing on keys that do not open
            raise CommandError("the data keys do not all open, nothing was rotated:\n  "
                               + "\n  ".join(problems))
        total = sum(len(found.versions) for found in namespace_keys.status())
        old = new = ""
        if provider == "file":
            if not key_providers.kek_file().exists() and not total:
                self.stdout.write("nothing to rotate: no data key and no KEK yet (the first "
                                  "encrypted namespace makes the KEK).")
                return
            key_providers.provider(create=False)  # a KEK that cannot be read stops us here
            old, new = key_providers.rotate_file_kek()
            self.stdout.write(f"new key-encryption key {new} in {key_providers.kek_file()} "
                              f"(the previous one, {old}, kept as retired until the re-wrap)")
        else:
            new = key_providers.provider(create=False).key_id()
        rewrapped = self._rewrap(total)
        forgotten: list[str] = []
        if provider == "file":
            forgotten = key_providers.forget_retired(namespace_keys.kek_ids_in_use())
        with transaction.atomic():
            audit(ACTOR, "encryption.rotate_kek", summary={
                "provider": provider if provider in {"file", "env"} else "custom",
                "kek": new, "previous": old, "rewrapped": rewrapped, "keys": total,
                "retired_deleted": forgotten})
        self.stdout.write(f"{rewrapped} of {total} data keys re-wrapped under {new}; "
                          f"{total - rewrapped} were already under it")
        for kek_id in forgotten:
            self.stdout.write(f"retired KEK {kek_id} deleted: no data key is wrapped under it")
        if provider == "env":
            self._env_advice(rewrapped)

    def _rewrap(self, total: int) -> int:
        with tqdm(desc="re-wrap", total=total, unit="key", disable=None,
                  file=self.stderr._out) as bar:
            done = namespace_keys.rewrap_all(progress=bar.update)
            bar.update(total - done)  # the ones already under the current KEK
        return done

    def _env_advice(self, rewrapped: int) -> None:
        """The env provider's KEKs are the operator's: what to do with them next."""
        if os.environ.get("MEMORYWEB_KEK_PREVIOUS", "").strip():
            self.stdout.write("every data key is wrapped under MEMORYWEB_KEK now: remove "
                              "MEMORYWEB_KEK_PREVIOUS from the environment (and destroy that "
                              "key) and restart the server.")
        elif not rewrapped:
            self.stdout.write("MEMORYWEB_KEY_PROVIDER=env: to rotate, put the new KEK in "
                              "MEMORYWEB_KEK and the current one in MEMORYWEB_KEK_PREVIOUS, "
                              "then run rotate_keys --kek again.")

    # --- one namespace's data key ------------------------------------------------------

    def _namespace(self, slug: str) -> None:
        found = Namespace.objects.filter(slug=slug).first()
        if found is None:
            raise CommandError(f"--namespace: no namespace {slug!r}.")
        if not namespace_keys.has_key(found.pk):
            raise CommandError(f"--namespace: {slug!r} has no data key (it is not encrypted; "
                               "create_namespace --encrypted makes one).")
        version = namespace_keys.new_version(found.pk)
        older = [v for v in next(s for s in namespace_keys.status()
                                 if s.namespace_id == found.pk).versions if v != version]
        with transaction.atomic():
            audit(ACTOR, "encryption.new_data_key", namespace=found,
                  summary={"version": version, "older_versions": older})
        self.stdout.write(
            f"{slug}: data key version {version} is current; new values are sealed under it. "
            f"Values sealed under version(s) {', '.join(map(str, older))} stay under them and "
            "still open until `manage.py encrypt_namespace "
            f"{slug} --reseal` re-seals them under it and retires the older versions "
            "(docs/encryption.md#turning-encryption-on).")
