"""Plain helpers shared by test modules: functions and constants, no fixtures.

Fixtures shared across directories live in pytest plugins (``tests/plugins/``, loaded
by ``tests/conftest.py``), so no test module imports another test module.
"""
