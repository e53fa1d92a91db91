"""Times as the index keeps them: integer nanoseconds since the epoch, in 64 bits.

A file system or a remote may report a time that does not fit (a file dated 2300, an object
whose ``rclone:mtime`` says 9999-12-31): SQLite and PostgreSQL hold signed 64-bit integers,
which end in April 2262. Every remote passes the times it reads through :func:`clamp_ns`, so a
listing and the index always agree on the value, and such a file syncs like any other.
"""

from __future__ import annotations

NS_MIN = -(1 << 63)  # 1677-09-21
NS_MAX = (1 << 63) - 1  # 2262-04-11


def clamp_ns(ns: int) -> int:
    """``ns`` if the index can hold it exactly, else the nearest time it can hold."""
    return NS_MIN if ns < NS_MIN else NS_MAX if ns > NS_MAX else ns
