"""The suite's module order (tests/plugins/order.py) names modules that exist."""

from pathlib import Path

from tests.plugins.order import LONGEST

ROOT = Path(__file__).resolve().parent.parent


def test_every_module_listed_as_longest_exists():
    missing = [module for module in LONGEST if not (ROOT / module).is_file()]
    assert missing == [], f"renamed or removed; update tests/plugins/order.py: {missing}"


def test_the_longest_modules_are_collected_first(pytester):
    pytester.makeconftest('pytest_plugins = ["tests.plugins.order"]')
    pytester.makepyfile(test_zz_many="def test_a(): pass\ndef test_b(): pass\n",
                        test_aa_one="def test_c(): pass\n")
    # LONGEST names paths under tests/; a module not listed goes after, by size.
    result = pytester.runpytest("--collect-only", "-q", "-p", "no:cacheprovider")
    lines = [line for line in result.outlines if "::" in line]
    assert lines == ["test_zz_many.py::test_a", "test_zz_many.py::test_b",
                     "test_aa_one.py::test_c"]
