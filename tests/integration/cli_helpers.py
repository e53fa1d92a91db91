"""The `syncd` command run as an admin runs it, and the smallest pair to run it on, for the
tests that judge what the command prints and how it exits."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from syncd.remotes.dirbucket import DirBucket

# One `report` line per pair ends `syncd now --json`, in process and through the daemon alike.
REPORT_KEYS = {
    "event",
    "pair",
    "outcome",
    "message",
    "reported",
    "done",
    "errors",
    "error_count",
    "skipped",
    "skipped_count",
    "skipped_new",
    "bytes",
    "seconds",
    "plan",
}

# syncd from this checkout; the tests that need the installed script say so.
SYNCD_MODULE = (sys.executable, "-m", "syncd")


def syncd(
    config: Path | None,
    *args: str,
    command: Sequence[str] = SYNCD_MODULE,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``command [--config config] args`` to its end (bounded), with no terminal on stdin;
    ``env`` is added to this process's environment. :returns: its exit code and output."""
    options = [] if config is None else ["--config", str(config)]
    return subprocess.run(
        [*command, *options, *args],
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def write_local_pair(root: Path) -> Path:
    """``root/syncd.toml``: alice's files in the `local` folder ``root/files``, her bucket the
    `dir` bucket ``root/bucket``, state in ``root/state``. :returns: the config's path."""
    config = root / "syncd.toml"
    config.write_text(
        '[daemon]\nstate_dir = "state"\n[users.alice]\n'
        'files = { type = "local", path = "files" }\nbucket = { type = "dir", path = "bucket" }\n'
    )
    return config


def put_named(bucket: Path, key: str) -> None:
    """An object ``key`` in the `dir` bucket at ``bucket`` whose bytes are its own name."""
    data = key.encode()
    DirBucket(bucket).write(
        key,
        io.BytesIO(data),
        size=len(data),
        mtime_ns=1_700_000_000_000_000_000,
        content_hash=hashlib.sha256(data).hexdigest(),
    )


def on_terminal(command: Sequence[str], *, cwd: Path | None = None, timeout: float = 120) -> tuple[int, str]:
    """Run ``command`` with stdin, stdout and stderr on a pseudo-terminal (160 columns), as
    an admin at a shell would, to its end (bounded). :returns: its exit code and everything
    it wrote to the terminal, escape sequences included."""
    import fcntl
    import pty
    import select
    import struct
    import termios
    import time

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "50"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal's other end closed it
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", errors="replace")
