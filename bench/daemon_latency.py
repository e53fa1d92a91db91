"""Benchmark: how fast a local write reaches the bucket through the running daemon.

For each tree size (default 10,000 and 100,000 files of ~100 B in folders of 100), generates
the tree, starts ``syncd run`` on it (local files <-> ``dir`` bucket), and measures:

* start: time from starting the daemon to its socket answering (watches set up);
* full sync: the first complete sync of the tree through ``now`` (skip with --no-full-sync);
* latency: time from writing one new file to its object committed in the bucket, with no
  ``syncd now`` (watcher -> debounce -> hinted sync), median and max of --samples writes;
* peak RSS of the daemon process (VmHWM) with the whole tree watched.

    python bench/daemon_latency.py [--sizes 10000,100000] [--samples 10] [--quiet-period 0.5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _tools import compile_syncd, stop_daemon

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from syncd.control import DaemonUnavailable, Request, request_result  # noqa: E402

FILES_PER_DIR = 100


def make_tree(root: Path, files: int) -> None:
    for i in range(files):
        folder = root / f"d{i // FILES_PER_DIR:04d}"
        if i % FILES_PER_DIR == 0:
            folder.mkdir(parents=True)
        (folder / f"f{i:06d}.txt").write_bytes(b"x" * (64 + i % 64) + str(i).encode())


def write_config(base: Path) -> Path:
    config = base / "syncd.toml"
    config.write_text(
        '[daemon]\nstate_dir = "state"\nsocket = "control.sock"\ninterval = "7d"\ntransfers = 8\n'
        '[users.bench]\nfiles = { type = "local", path = "files" }\nbucket = { type = "dir", path = "bucket" }\n'
    )
    return config


def daemon_cmd() -> list[str]:
    """The command that starts the daemon (``syncd run`` follows it)."""
    return [sys.executable, "-m", "syncd"]


def wait_answer(sock: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited with {proc.returncode}")
        try:
            if request_result(sock, Request("status"), timeout=10).get("ok"):
                return
        except (DaemonUnavailable, OSError):
            pass
        time.sleep(0.05)
    raise SystemExit(f"the daemon did not answer within {timeout}s")


def wait_idle(sock: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:  # a daemon busy with a big run may answer a status late: ask again, within the deadline
            status = request_result(sock, Request("status"), timeout=10)
        except (DaemonUnavailable, OSError):
            time.sleep(0.2)
            continue
        if all(not p.get("running") and not p.get("dirty") for p in status.get("pairs", [])):
            return
        time.sleep(0.05)
    raise SystemExit(f"the daemon did not get idle within {timeout:.0f}s")


def object_committed(bucket: Path, key: str) -> bool:
    """The dir bucket commits a put by renaming the key's sidecar into place."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    return (bucket / "objects" / digest[:2] / f"{digest[2:34]}.json").exists()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench(files: int, samples: int, quiet: float, full_sync: bool) -> dict[str, float]:
    base = Path(tempfile.mkdtemp(prefix="sd-bench-", dir="/tmp"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        made = time.monotonic()
        make_tree(base / "files", files)
        print(f"  tree of {files} files made in {time.monotonic() - made:.1f}s", flush=True)
        config, sock = write_config(base), base / "control.sock"
        started = time.monotonic()
        with open(base / "daemon.log", "wb") as log:
            proc = subprocess.Popen(
                [
                    *daemon_cmd(),
                    "--config",
                    str(config),
                    "run",
                    "--quiet-period",
                    str(quiet),
                    "--first-run-within",
                    "604800",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        wait_answer(sock, proc, 600)
        figures = {"start_s": time.monotonic() - started}
        if full_sync:
            began = time.monotonic()
            # ``now`` streams progress lines every ~2 s: the timeout bounds each wait for a line.
            result = request_result(sock, Request("now"), timeout=300)
            figures["full_sync_s"] = time.monotonic() - began
            assert result.get("exit") == 0, result
        # The full sync's own bucket writes come back through the watcher: more than MAX_HINTS
        # keys, so one more full (no-op) run, ~20 s at 100,000 files on 2 busy cores.
        wait_idle(sock, max(120.0, files / 200))
        latencies = []
        for i in range(samples):
            key = f"d0000/new-{i}.txt"
            began = time.monotonic()
            (base / "files" / key).write_bytes(os.urandom(256))
            while not object_committed(base / "bucket", key):
                if time.monotonic() - began > 60:
                    raise SystemExit(f"{key} did not reach the bucket within 60s")
                time.sleep(0.002)
            latencies.append(time.monotonic() - began)
            time.sleep(quiet + 0.3)
            wait_idle(sock, 60)  # the echo of the bucket write: one no-op hinted run
        figures.update(
            latency_median_s=statistics.median(latencies),
            latency_max_s=max(latencies),
            peak_rss_mb=peak_rss_mb(proc.pid),
        )
        return figures
    finally:
        stop_daemon(proc, 60)
        if sys.exc_info()[0] is not None and (base / "daemon.log").exists():
            lines = (base / "daemon.log").read_text(errors="replace").splitlines()
            tail = [line for line in lines if "control: status" not in line][-30:]
            print("  daemon log (last lines):\n    " + "\n    ".join(tail), flush=True)
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--quiet-period", type=float, default=0.5, help="the daemon's debounce (default 0.5 s)")
    parser.add_argument("--no-full-sync", action="store_true", help="do not time the first full sync")
    args = parser.parse_args()
    compile_syncd()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        print(f"{size} files:", flush=True)
        figures = bench(size, args.samples, args.quiet_period, not args.no_full_sync)
        print("  " + ", ".join(f"{k}={v:.3f}" for k, v in figures.items()), flush=True)
        rows.append((size, figures))
    print(f"\nquiet period {args.quiet_period}s, {args.samples} writes per size, {os.cpu_count()} CPUs")
    print(f"{'files':>8} {'start s':>8} {'full sync s':>12} {'latency median s':>17} {'max s':>7} {'peak RSS MB':>12}")
    for size, f in rows:
        full = f"{f['full_sync_s']:.1f}" if "full_sync_s" in f else "-"
        print(
            f"{size:>8} {f['start_s']:>8.2f} {full:>12} {f['latency_median_s']:>17.3f} {f['latency_max_s']:>7.3f} "
            f"{f['peak_rss_mb']:>12.0f}"
        )


if __name__ == "__main__":
    main()
