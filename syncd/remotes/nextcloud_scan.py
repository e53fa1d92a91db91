"""Telling Nextcloud about files written into its data directory behind its back.

Nextcloud does not see files written straight into ``<datadir>/<user>/files`` until
``occ files:scan`` runs for them. After a run changed such a tree, the folders it touched are
reduced to the fewest covering folders (a scan is recursive) and the configured command runs
once per folder, or once for the user's whole tree when they are many.
"""

from __future__ import annotations

import subprocess
from collections.abc import Collection
from pathlib import Path

MAX_SEPARATE_SCANS = 20  # more changed folders than this: one scan of the user's whole tree
SCAN_TIMEOUT_S = 3600.0


def nextcloud_user(root: Path) -> str | None:
    """``alice`` for ``<datadir>/alice/files``; None if the path is not shaped so."""
    return root.parent.name if root.name == "files" and root.parent.name else None


def folders_to_scan(paths: Collection[str]) -> list[str]:
    """The fewest folders (relative, "" = the root) that cover the parents of ``paths``."""
    folders = sorted({p.rpartition("/")[0] for p in paths})
    kept: list[str] = []
    for folder in folders:  # sorted: an ancestor comes before its descendants
        if not any(folder == k or folder.startswith(k + "/") or k == "" for k in kept):
            kept.append(folder)
    if len(kept) > MAX_SEPARATE_SCANS:
        return [""]
    return kept


def scan_path(user: str, folder: str) -> str:
    """The ``--path`` occ expects: ``alice/files/sub/folder``."""
    return f"{user}/files/{folder}".rstrip("/")


def run_scans(command: list[str], user: str, paths: Collection[str]) -> list[str]:
    """Run ``command`` (its ``{path}`` replaced) for each folder to scan. :returns: failures."""
    failures = []
    for folder in folders_to_scan(paths):
        argv = [part.replace("{path}", scan_path(user, folder)) for part in command]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=SCAN_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            failures.append(f"nextcloud files:scan for {scan_path(user, folder)!r} could not run: {exc}")
            continue
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            failures.append(
                f"nextcloud files:scan for {scan_path(user, folder)!r} failed (exit {done.returncode}): {last[0]}; "
                "Nextcloud will not show these changes until a scan succeeds"
            )
    return failures
