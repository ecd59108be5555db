"""Refuse imports of another app's private names (``_name``), which import-linter cannot see.

An app's underscore names are free to change; a second app reaching for one (``from
apps.memories.services import _delete_memories``) makes them part of an interface no one
declared. This reads every module under ``apps/`` (imports inside functions too) and
reports, for each app, ``from apps.<other> ... import _name`` and ``<module>._name`` where
``<module>`` was imported from another app. Exit status 1 when anything is found.

Run by ``make lint`` and the pre-commit hook: ``python tools/private_imports.py [ROOT]``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path


def _app_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "apps" else None


def violations(root: Path) -> Iterator[str]:
    """``path:line: message`` for every private name one app takes from another."""
    for path in sorted((root / "apps").rglob("*.py")):
        relative = path.relative_to(root)
        if "migrations" in relative.parts:
            continue
        own = relative.parts[1]
        tree = ast.parse(path.read_text(), filename=str(path))
        foreign_aliases: dict[str, str] = {}  # local name -> the other app's module
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                app = _app_of(node.module)
                if app is None or app == own:
                    continue
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        yield f"{relative}:{node.lineno}: imports {node.module}.{alias.name}"
                    foreign_aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                if any(part.startswith("_") and not part.startswith("__")
                       for part in node.module.split(".")):
                    yield f"{relative}:{node.lineno}: imports the private module {node.module}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    app = _app_of(alias.name)
                    if app is not None and app != own and alias.asname:
                        foreign_aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in foreign_aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                yield (f"{relative}:{node.lineno}: uses {foreign_aliases[node.value.id]}"
                       f".{node.attr}")


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    found = list(violations(root))
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} private name(s) taken from another app: make them public in "
              "their app, or move the code (docs/architecture.md).", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
