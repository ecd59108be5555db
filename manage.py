#!/usr/bin/env python
"""Django's command-line utility for MemoryWeb."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "memoryweb.settings")
    from django.core.management import execute_from_command_line

    from apps.core.conf import prepare_data_dir

    # The data directory and the generated secret key, before Django starts (settings
    # create nothing at import).
    prepare_data_dir()
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
