"""Create or upgrade a SQLite index in a child process: ``python -m syncd.index.migrate PATH``.

Alembic and SQLAlchemy add about 25 MB to a process that imports them, for the rest of
its life. A ``syncd now`` or a daemon that has not loaded them migrates through this
child instead (see :func:`syncd.index.store.upgrade_sqlite`): a first run's peak memory,
e.g. while it uploads a large file, is then that of any later run.
Exit 0 when the index is at head; otherwise the reason on one line of stderr and exit 1.
"""

from __future__ import annotations

import sys

from syncd.errors import FatalError
from syncd.index.store import upgrade_url


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m syncd.index.migrate INDEX.db", file=sys.stderr)
        return 2
    try:
        upgrade_url(f"sqlite:///{argv[0]}")
    except FatalError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
