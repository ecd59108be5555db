"""``python3 -m memoryweb_capture`` and ``python3 /path/to/memoryweb_capture``.

Run as a directory, the package has no ``__package__`` and its own directory is
``sys.path[0]``: the parent goes there instead, so the package imports as itself and
its modules never shadow anything as top-level names.
"""

import os
import sys


def _run() -> int:
    if not __package__:
        here = os.path.dirname(os.path.abspath(__file__))
        if sys.path and os.path.abspath(sys.path[0] or ".") == here:
            sys.path[0] = os.path.dirname(here)
        else:
            sys.path.insert(0, os.path.dirname(here))
    from memoryweb_capture.cli import main

    return main()


if __name__ == "__main__":
    sys.exit(_run())
