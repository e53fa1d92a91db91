"""Safety guards, checked on the plan before anything changes. Pure: no I/O.

Each guard is a small named function that raises a :class:`GuardError` subclass; the run then
ends with zero changes and the admin reads why (``--force`` overrides, on purpose only).
"""

from __future__ import annotations

from syncd.errors import SideLooksEmpty, TooManyDeletes
from syncd.models import Plan, Side

DEFAULT_MAX_DELETE_RATIO = 0.5


def check_side_not_empty(base_count: int, counts: dict[Side, int]) -> None:
    """A side that lists no files while the index knows files is far more often an unmounted
    disk, an emptied mount point or a wrong account than a user who deleted everything.

    :raises SideLooksEmpty:
    """
    if base_count == 0:
        return
    for side, count in counts.items():
        if count == 0:
            raise SideLooksEmpty(
                f"the {side.value} side lists no files but the index knows {base_count}; "
                "is it mounted and reachable? Nothing was changed (use --force if it really is empty)"
            )


def check_mass_delete(plan: Plan, base_count: int, max_ratio: float = DEFAULT_MAX_DELETE_RATIO) -> None:
    """Refuse a plan that deletes more than ``max_ratio`` of the pair's files.
    Detected moves are MOVE actions, not deletes, so they do not count.

    :raises TooManyDeletes:
    """
    deletes = len(plan.deletes())
    if base_count == 0 or deletes == 0:
        return
    if deletes > max_ratio * base_count:
        raise TooManyDeletes(
            f"the plan deletes {deletes} of {base_count} files ({deletes / base_count:.0%}), "
            f"more than the limit of {max_ratio:.0%}; nothing was changed "
            "(check both sides, then run with --force or raise max_delete_ratio)"
        )
