"""Benchmark: one ``syncd run`` serving many users (local tree <-> ``dir`` bucket each).

Generates ``--users`` users of ``--files`` small files each (folders of 50), starts one daemon
for all of them and measures:

* initial: time from start until every pair's first sync ended ``ok``;
* the daemon's RSS (now and peak), threads, open files, inotify instances and watches;
* idle CPU: the daemon's CPU time over ``--quiet-s`` seconds in which nothing changes (pairs
  run every ``--interval``, default 5m: ``--quiet-s 300`` covers one whole interval), with
  the scheduled runs started in that window and the most of them that started within one
  ``--bucket-s`` window (are they spread?). The window starts once no pair runs or waits (at
  most ``--settle-s`` after the initial syncs; ``busy`` says if it had to start earlier);
* latency: time from a local write to its object committed in the bucket, for the first,
  middle and last user (watcher -> debounce -> hinted run; no ``syncd now``).

``--kind webdav-s3`` serves each user's files from the Nextcloud-protocol test server (in this
process) and their bucket prefix from ``rclone serve s3`` (both on 127.0.0.1, as the tests
start them); nothing is watched there, so the latency columns are the time of ``syncd now``
for one user after a file was PUT, and the idle window also counts the WebDAV requests the
daemon made (``--sole-writer`` sets ``sole_writer = true`` for every user).

    python bench/many_users.py --users 300 [--users 1000] [--quiet-s 300] [--interval 5m]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _tools import compile_syncd, stop_daemon

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # syncd and, for --kind webdav-s3, the test servers

from syncd.control import DaemonUnavailable, Request, request_result  # noqa: E402

FILES_PER_DIR = 50
STAMP_RE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) INFO (\S+): run started \((schedule)")


def user_name(i: int) -> str:
    return f"u{i:05d}"


def make_users(base: Path, users: int, files: int) -> None:
    for u in range(users):
        root = base / "users" / user_name(u) / "files"
        for i in range(files):
            folder = root / f"d{i // FILES_PER_DIR:02d}"
            if i % FILES_PER_DIR == 0:
                folder.mkdir(parents=True)
            (folder / f"f{i:04d}.txt").write_bytes(b"x" * (64 + i % 64) + str(i).encode())
        (base / "users" / user_name(u) / "bucket").mkdir()


def write_config(base: Path, users: int, interval: str, extra: str, sides: Any = None) -> Path:
    lines = [
        "[daemon]",
        'state_dir = "state"',
        'socket = "control.sock"',
        f'interval = "{interval}"',
        *([extra] if extra else []),
    ]
    for u in range(users):
        name = user_name(u)
        if sides is not None:
            lines += [f"[users.{name}]", *sides(name)]
            continue
        lines += [
            f"[users.{name}]",
            f'files = {{ type = "local", path = "users/{name}/files" }}',
            f'bucket = {{ type = "dir", path = "users/{name}/bucket" }}',
        ]
    config = base / "syncd.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def status(sock: Path) -> dict[str, Any] | None:
    try:
        result = request_result(sock, Request("status"), timeout=60)
    except (DaemonUnavailable, OSError):
        return None
    return result if result.get("ok") else None


def wait_until(what: str, test: Any, proc: subprocess.Popen[bytes], timeout: float, every: float = 0.5) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited with {proc.returncode} while waiting for {what}")
        if test():
            return time.monotonic() - began
        time.sleep(every)
    raise SystemExit(f"{what}: not within {timeout:.0f}s")


def all_synced(sock: Path, users: int) -> bool:
    found = status(sock)
    if found is None:
        return False
    done = [p for p in found["pairs"] if (p.get("last") or {}).get("outcome") == "ok"]
    return len(done) == users


def idle(sock: Path) -> bool:
    found = status(sock)
    return found is not None and all(not p.get("running") and not p.get("dirty") for p in found["pairs"])


def object_committed(bucket: Path, key: str) -> bool:
    """The dir bucket commits a put by renaming the key's sidecar into place."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    return (bucket / "objects" / digest[:2] / f"{digest[2:34]}.json").exists()


def proc_figures(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.split()
    fds = os.listdir(f"/proc/{pid}/fd")
    instances = watches = 0
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:inotify":
                continue
            instances += 1
            with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                watches += sum(1 for line in info if line.startswith("inotify wd:"))
        except OSError:
            continue
    return {
        "rss_mb": int(fields["VmRSS"][0]) / 1024,
        "peak_rss_mb": int(fields["VmHWM"][0]) / 1024,
        "threads": int(fields["Threads"][0]),
        "open_files": len(fds),
        "inotify_instances": instances,
        "inotify_watches": watches,
    }


def cpu_seconds(pid: int) -> float:
    parts = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def scheduled_starts(log: Path, since: float, until: float, bucket_s: float) -> tuple[int, int]:
    """Scheduled runs started in [since, until) (epoch s), and the most within one bucket."""
    starts = []
    for line in log.read_text(errors="replace").splitlines():
        match = STAMP_RE.match(line)
        if match:
            when = time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S"))
            if since - 1 <= when < until:
                starts.append(when)
    buckets = Counter(int(s // bucket_s) for s in starts)
    return len(starts), max(buckets.values(), default=0)


def write_latency(base: Path, user: int, sample: int, proc: subprocess.Popen[bytes]) -> float:
    name = user_name(user)
    key = f"d00/new-{sample}.txt"
    (base / "users" / name / "files" / key).write_bytes(os.urandom(256))
    bucket = base / "users" / name / "bucket"
    return wait_until(f"{name}/{key} in the bucket", lambda: object_committed(bucket, key), proc, 120, every=0.002)


def daemon_cmd(config: Path, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable,
        "-m",
        "syncd",
        "--config",
        str(config),
        "run",
        "--quiet-period",
        str(args.quiet_period),
        *args.daemon_arg,
    ]


def bench(users: int, args: argparse.Namespace) -> dict[str, float]:
    base = Path(tempfile.mkdtemp(prefix="sd-many-", dir=args.tmp))
    proc: subprocess.Popen[bytes] | None = None
    log = base / "daemon.log"
    try:
        made = time.monotonic()
        make_users(base, users, args.files)
        print(f"  {users} users x {args.files} files made in {time.monotonic() - made:.1f}s", flush=True)
        config, sock = write_config(base, users, args.interval, args.config_extra), base / "control.sock"
        with open(log, "wb") as out:
            proc = subprocess.Popen(daemon_cmd(config, args), stdout=out, stderr=subprocess.STDOUT, cwd=base)
        figures = initial_and_idle(proc, sock, log, users, args)
        for label, user in (("first", 0), ("middle", users // 2), ("last", users - 1)):
            wait_until("idle", lambda: idle(sock), proc, 600)
            figures[f"latency_{label}_s"] = write_latency(base, user, 0, proc)
        figures.update({k: v for k, v in proc_figures(proc.pid).items() if k == "peak_rss_mb"})
        return figures
    finally:
        stop_daemon(proc, 120)
        if sys.exc_info()[0] is not None and log.exists():
            lines = log.read_text(errors="replace").splitlines()
            print("  daemon log (last lines):\n    " + "\n    ".join(lines[-30:]), flush=True)
        if args.keep:
            print(f"  kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def initial_and_idle(
    proc: subprocess.Popen[bytes],
    sock: Path,
    log: Path,
    users: int,
    args: argparse.Namespace,
    before_window: Any = None,
) -> dict[str, float]:
    """Initial syncs, the daemon's figures once idle, and the quiet window's CPU and runs."""
    figures: dict[str, float] = {}
    figures["initial_s"] = wait_until("every initial sync", lambda: all_synced(sock, users), proc, 3600, 1.0)
    print(f"  every initial sync done in {figures['initial_s']:.1f}s", flush=True)
    try:
        figures["settle_s"] = wait_until("idle", lambda: idle(sock), proc, args.settle_s)
    except SystemExit:
        figures["busy"] = 1
    figures.update(proc_figures(proc.pid))
    if before_window is not None:
        before_window()
    quiet_from, cpu_from = time.time(), cpu_seconds(proc.pid)
    time.sleep(args.quiet_s)
    figures["idle_cpu_pct"] = 100 * (cpu_seconds(proc.pid) - cpu_from) / args.quiet_s
    started, crowd = scheduled_starts(log, quiet_from, time.time(), args.bucket_s)
    figures["scheduled_runs"], figures["most_in_bucket"] = started, crowd
    print(f"  idle CPU {figures['idle_cpu_pct']:.1f}% over {args.quiet_s:.0f}s", flush=True)
    return figures


# -- WebDAV <-> S3: the test servers -------------------------------------------------------------


def seed_webdav(nextcloud: Any, names: list[str], files: int) -> None:
    """PUT each user's tree to the Nextcloud-protocol server, 8 users at a time."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    def seed(name: str) -> None:
        with requests.Session() as http:
            http.auth = (name, "pw-of-every-user")
            url = nextcloud.files_url(name)
            for i in range(files):
                folder = f"{url}d{i // FILES_PER_DIR:02d}/"
                if i % FILES_PER_DIR == 0:
                    http.request("MKCOL", folder, timeout=30).raise_for_status()
                body = b"x" * (64 + i % 64) + str(i).encode()
                http.put(f"{folder}f{i:04d}.txt", data=body, timeout=30).raise_for_status()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(seed, names))


def webdav_s3(users: int, args: argparse.Namespace) -> dict[str, float]:
    import requests

    from tests.s3 import fixture as s3_fixture
    from tests.webdav.nextcloud_server import NextcloudServer

    base = Path(tempfile.mkdtemp(prefix="sd-many-dav-", dir=args.tmp))
    (base / "s3" / "many").mkdir(parents=True)
    s3_proc, s3 = s3_fixture.start(base / "s3", base / "s3.log")
    (base / "s3-id").write_text(s3.access_key)
    (base / "s3-secret").write_text(s3.secret_key)
    (base / "dav-password").write_text("pw-of-every-user")
    names = [user_name(u) for u in range(users)]
    nextcloud = NextcloudServer(dict.fromkeys(names, "pw-of-every-user"))
    nextcloud.start()
    proc: subprocess.Popen[bytes] | None = None
    try:
        made = time.monotonic()
        seed_webdav(nextcloud, names, args.files)
        print(f"  {users} users x {args.files} files PUT in {time.monotonic() - made:.1f}s", flush=True)

        def sides(name: str) -> list[str]:
            return [
                f'files = {{ type = "webdav", url = "{nextcloud.files_url(name)}", username = "{name}", '
                'password_file = "dav-password", preset = "nextcloud" }',
                f'bucket = {{ type = "s3", endpoint = "{s3.endpoint}", bucket = "many", prefix = "{name}/", '
                'access_key_id_file = "s3-id", secret_access_key_file = "s3-secret" }',
                *(["sole_writer = true"] if args.sole_writer else []),
            ]

        config = write_config(base, users, args.interval, args.config_extra, sides)
        sock = base / "control.sock"
        log = base / "daemon.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(daemon_cmd(config, args), stdout=out, stderr=subprocess.STDOUT, cwd=base)
        figures = initial_and_idle(proc, sock, log, users, args, before_window=nextcloud.reset_counts)
        with nextcloud.lock:
            figures["webdav_requests"] = sum(nextcloud.counts.values())
        for label, user in (("first", 0), ("middle", users // 2), ("last", users - 1)):
            name = names[user]
            with requests.Session() as http:
                http.auth = (name, "pw-of-every-user")
                http.put(nextcloud.files_url(name) + "d00/new.txt", data=b"new", timeout=30).raise_for_status()
            began = time.monotonic()
            result = request_result(sock, Request("now", target=name), timeout=120)
            figures[f"latency_{label}_s"] = time.monotonic() - began
            assert result.get("exit") == 0, result
            assert (base / "s3" / "many" / name / "d00" / "new.txt").exists()
        figures.update({k: v for k, v in proc_figures(proc.pid).items() if k == "peak_rss_mb"})
        return figures
    finally:
        stop_daemon(proc, 120)
        nextcloud.stop()
        s3_fixture.stop(s3_proc)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


COLUMNS = (
    ("users", "{:>6}"),
    ("initial_s", "{:>9.1f}"),
    ("rss_mb", "{:>7.0f}"),
    ("peak_rss_mb", "{:>8.0f}"),
    ("threads", "{:>8.0f}"),
    ("open_files", "{:>6.0f}"),
    ("inotify_instances", "{:>6.0f}"),
    ("inotify_watches", "{:>8.0f}"),
    ("idle_cpu_pct", "{:>7.1f}"),
    ("scheduled_runs", "{:>6.0f}"),
    ("most_in_bucket", "{:>6.0f}"),
    ("latency_first_s", "{:>6.2f}"),
    ("latency_middle_s", "{:>6.2f}"),
    ("latency_last_s", "{:>6.2f}"),
)
HEADERS = ("users", "init s", "RSS MB", "peak MB", "threads", "fds", "inot", "watches", "idle%")
HEADERS += ("sched", "crowd", "1st s", "mid s", "last s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, action="append", help="users served by the daemon (repeatable)")
    parser.add_argument("--files", type=int, default=200, help="files per user (default 200)")
    parser.add_argument("--interval", default="5m", help="every pair's interval (default 5m)")
    parser.add_argument("--settle-s", type=float, default=300.0, help="longest wait for idle (default 300 s)")
    parser.add_argument("--quiet-s", type=float, default=60.0, help="idle window measured (default 60 s)")
    parser.add_argument("--bucket-s", type=float, default=10.0, help="window of the crowd figure (default 10 s)")
    parser.add_argument("--quiet-period", type=float, default=0.5, help="the daemon's debounce (default 0.5 s)")
    parser.add_argument("--config-extra", default="", help="more [daemon] lines, e.g. 'full_scan_interval = \"1h\"'")
    parser.add_argument("--daemon-arg", action="append", default=[], help="one more `syncd run` argument")
    parser.add_argument("--tmp", default="/tmp", help="where the trees are made (default /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the trees and the daemon log")
    parser.add_argument("--kind", choices=("local-dir", "webdav-s3"), default="local-dir", help="the pairs' sides")
    parser.add_argument("--sole-writer", action="store_true", help="webdav-s3: sole_writer = true for every user")
    args = parser.parse_args()
    compile_syncd()
    rows = []
    for users in args.users or [300]:
        print(f"{users} users:", flush=True)
        figures = bench(users, args) if args.kind == "local-dir" else webdav_s3(users, args)
        print("  " + ", ".join(f"{k}={v:.3f}" for k, v in figures.items()), flush=True)
        rows.append({"users": users, **figures})
    if args.kind == "webdav-s3":
        print("webdav-s3: the latency columns are `syncd now USER` after a PUT; WebDAV requests in the idle window:")
        print("  " + ", ".join(f"{row['users']} users: {row.get('webdav_requests', 0):.0f}" for row in rows))
    print(
        f"\n{args.files} files per user, interval {args.interval}, quiet window {args.quiet_s:.0f}s, "
        f"crowd = most scheduled runs started within {args.bucket_s:.0f}s, {os.cpu_count()} CPUs"
    )
    print(" ".join(f"{h:>{len(fmt.format(0))}}" for h, (_, fmt) in zip(HEADERS, COLUMNS, strict=True)))
    for row in rows:
        print(" ".join(fmt.format(row.get(name, float("nan"))) for name, fmt in COLUMNS))


if __name__ == "__main__":
    main()
