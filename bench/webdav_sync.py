"""Benchmark: syncd (``webdav`` files <-> ``dir`` bucket) vs ``rclone bisync`` (rclone's webdav
backend <-> a local folder) and the Nextcloud desktop client's engine (``nextcloudcmd``, Debian
``nextcloud-desktop-cmd``, Nextcloud server only), on Apache mod_dav and on our
Nextcloud-protocol test server.

Generates a tree (default 10,000 files of 100 B - 8 KB in 100 folders). For each server and
each tool, a fresh server is started. ``--direction down`` puts the tree on the server first
(written into Apache's DAV folder directly; PUT in parallel to the Nextcloud server, which keeps
its tree in memory) and the tools bring it down; ``--direction up`` puts it on the tool's other
side (syncd's ``dir`` bucket, rclone's and nextcloudcmd's local folder) and the server starts
empty, as a new account does. Then each tool runs, in one run each: the initial sync, a
no-change sync and a one-change sync (one file changed on the server by a PUT). Each run's wall
time and peak RSS (os.wait4, by a small launcher) are printed as a table with syncd / rclone
ratios; on the Nextcloud server, the HTTP requests of every run by method.

    python bench/webdav_sync.py [--files 10000] [--dirs 100] [--servers apache,nextcloud]
                                [--direction down|up] [--tools syncd,rclone,nextcloudcmd]
                                [--repeat 1]

Servers listen on 127.0.0.1 only; they come from tests/webdav/servers.py (Apache needs
apache2 + mod_dav, as .ci/webdav.sh installs) and tests/webdav/nextcloud_server.py.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests
from _tools import compile_syncd, require_rclone

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.webdav import nextcloud_server, servers  # noqa: E402
from tests.webdav.nextcloud_server import NextcloudServer  # noqa: E402

RUN_TIMEOUT = 1800.0  # seconds, one sync run
PHASES = ("initial", "no-change", "one-change")


@dataclass
class Sample:
    seconds: float
    max_rss_mb: float
    requests: Counter[str] | None = None  # Nextcloud server only
    note: str = ""


@dataclass
class Tree:
    files: dict[str, bytes]  # "dir000/file000000.txt" -> content
    dirs: list[str]
    changed: str = field(default="")


def make_tree(files: int, dirs: int, seed: int = 7) -> Tree:
    rng = random.Random(seed)
    content = {f"dir{i % dirs:03d}/file{i:06d}.txt": rng.randbytes(rng.randint(100, 8192)) for i in range(files)}
    return Tree(content, sorted({k.split("/")[0] for k in content}), changed="dir000/file000000.txt")


# The child of a big process reports that process's peak RSS as its own: Python spawns with
# vfork, and exec records the old (parent's) memory's high-water mark into the child's
# ru_maxrss. This bench holds the tree and the Nextcloud server's tree (~100 MB), so each tool is
# started by a small launcher process, which times it and reads its wait4 rusage.
LAUNCHER = r"""
import json, os, subprocess, sys, time
result, timeout, cmd = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
start = time.perf_counter()
proc = subprocess.Popen(cmd)
while True:
    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
    if pid:
        break
    if time.perf_counter() - start > timeout:
        proc.kill()
        _, status, usage = os.wait4(proc.pid, 0)
        break
    time.sleep(0.005)
elapsed = time.perf_counter() - start
with open(result, "w") as out:
    json.dump({"seconds": elapsed, "maxrss_kb": usage.ru_maxrss, "code": os.waitstatus_to_exitcode(status)}, out)
"""


def run_measured(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[Sample, str]:
    """Run ``cmd`` to completion (bounded); its wall time and peak RSS, measured by a launcher."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        launcher = [sys.executable, "-I", "-S", "-c", LAUNCHER, str(result), str(RUN_TIMEOUT), *cmd]
        proc = subprocess.Popen(
            launcher, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        try:
            proc.wait(RUN_TIMEOUT + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        out.seek(0)
        text = out.read().decode(errors="replace")
        if not result.exists():
            raise SystemExit(f"{' '.join(cmd)}: the launcher failed ({proc.returncode}):\n{text[-3000:]}")
        figures = json.loads(result.read_text())
    if figures["code"] != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({figures['code']}) after {figures['seconds']:.1f}s:\n{text[-3000:]}")
    return Sample(figures["seconds"], figures["maxrss_kb"] / 1024), text


# -- servers ---------------------------------------------------------------------------------


@dataclass
class Server:
    kind: str  # "apache" | "nextcloud"
    url: str
    username: str
    password: str
    vendor: str  # rclone's --webdav-vendor
    nextcloud: NextcloudServer | None = None

    def session(self) -> requests.Session:
        session = requests.Session()
        session.auth = (self.username, self.password)
        return session

    def change_one(self, tree: Tree) -> None:
        """Append a line to one file through the server (a new etag, as any client would make)."""
        with self.session() as session:
            url = self.url + tree.changed
            got = session.get(url, timeout=30)
            got.raise_for_status()
            put = session.put(url, data=got.content + b"one more line\n", timeout=30)
            put.raise_for_status()

    def read(self, key: str) -> bytes:
        with self.session() as session:
            got = session.get(self.url + key, timeout=30)
            got.raise_for_status()
            return got.content

    def reset_counts(self) -> None:
        if self.nextcloud is not None:
            self.nextcloud.reset_counts()

    def counts(self) -> Counter[str] | None:
        if self.nextcloud is None:
            return None
        with self.nextcloud.lock:
            return Counter(self.nextcloud.counts)


@contextmanager
def apache_with(tree: Tree | None) -> Iterator[Server]:
    dav = servers.start_apache()
    try:
        assert dav.data_dir is not None
        owner = dav.data_dir.stat()
        for folder in tree.dirs if tree is not None else []:
            (dav.data_dir / folder).mkdir()
            os.chown(dav.data_dir / folder, owner.st_uid, owner.st_gid)
        for key, data in tree.files.items() if tree is not None else []:
            path = dav.data_dir / key
            path.write_bytes(data)
            os.chown(path, owner.st_uid, owner.st_gid)  # Apache's worker user must be able to write it
        yield Server("apache", dav.url, dav.username, dav.password, "other")
    finally:
        dav.stop()


@contextmanager
def nextcloud_with(tree: Tree | None, workers: int = 8) -> Iterator[Server]:
    user, password = servers.USER, servers.PASSWORD
    with NextcloudServer({user: password}) as nc:
        server = Server("nextcloud", nc.files_url(user), user, password, "nextcloud", nc)
        servers.wait_until_ready(server.url, (user, password), None, "nextcloud test server")
        if tree is not None:
            _put_tree(server, tree, workers)
        nc.reset_counts()
        yield server


def _put_tree(server: Server, tree: Tree, workers: int) -> None:
    with server.session() as session:
        for folder in tree.dirs:
            session.request("MKCOL", server.url + folder + "/", timeout=30).raise_for_status()
    keys = list(tree.files)

    def put_slice(part: list[str]) -> None:
        with server.session() as session:
            for key in part:
                session.put(server.url + key, data=tree.files[key], timeout=30).raise_for_status()

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(put_slice, [keys[i::workers] for i in range(workers)]))


def write_tree(folder: Path, tree: Tree) -> None:
    for key, data in tree.files.items():
        path = folder / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


SERVERS: dict[str, Callable[[Tree | None], AbstractContextManager[Server]]] = {
    "apache": apache_with,
    "nextcloud": nextcloud_with,
}


# -- tools -----------------------------------------------------------------------------------


class Tool:
    name = ""
    servers = ("apache", "nextcloud")  # the kinds of server it can sync with

    def __init__(self, work: Path, server: Server, seed: Tree | None) -> None:
        """``seed``: the tree this tool's other side holds before the initial sync (up)."""
        self.work, self.server = work, server
        work.mkdir(parents=True)

    def run(self, phase: str) -> Sample:
        raise NotImplementedError

    def check(self, phase: str, tree: Tree) -> None:
        """Raise SystemExit when the run did not do what it should (the figures would be void)."""


class Syncd(Tool):
    name = "syncd"

    def __init__(self, work: Path, server: Server, seed: Tree | None) -> None:
        super().__init__(work, server, seed)
        (work / "password").write_text(server.password)
        self.config = work / "syncd.toml"
        self.config.write_text(
            '[daemon]\nstate_dir = "state"\n[users.bench]\n'
            f'files = {{ type = "webdav", url = "{server.url}", username = "{server.username}", '
            'password_file = "password" }\nbucket = { type = "dir", path = "bucket" }\n'
        )
        self.report: dict[str, object] = {}
        if seed is not None:
            write_tree(work / "seed", seed)
            with tempfile.TemporaryDirectory() as state:
                seeder = work / "seed.toml"
                seeder.write_text(
                    f'[daemon]\nstate_dir = "{state}"\n[users.seed]\n'
                    'files = { type = "local", path = "seed" }\nbucket = { type = "dir", path = "bucket" }\n'
                )
                subprocess.run(
                    [sys.executable, "-m", "syncd", "--config", str(seeder), "now"], cwd=REPO, check=True, timeout=600
                )
            shutil.rmtree(work / "seed")

    def run(self, phase: str) -> Sample:
        cmd = [sys.executable, "-m", "syncd", "--config", str(self.config), "now", "--json"]
        sample, output = run_measured(cmd, cwd=REPO)
        events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        reports = [e for e in events if e.get("event") == "report"]
        if len(reports) != 1:
            raise SystemExit(f"syncd printed {len(reports)} report events:\n{output[-3000:]}")
        self.report = reports[0]
        return sample

    def check(self, phase: str, tree: Tree) -> None:
        done = self.report.get("done", {})
        assert isinstance(done, dict)
        expected = {"initial": {"copy": len(tree.files)}, "no-change": {}, "one-change": {"copy": 1}}[phase]
        if self.report.get("outcome") != "ok" or done != expected:
            raise SystemExit(f"syncd {phase} on {self.server.kind}: expected {expected}, got {self.report}")


class LocalFolderTool(Tool):
    """A tool that syncs the server with a local folder, ``work/local`` (seeded for an upload)."""

    own_files: tuple[str, ...] = ()  # name prefixes of the tool's own files in the folder's top

    def __init__(self, work: Path, server: Server, seed: Tree | None) -> None:
        super().__init__(work, server, seed)
        self.local = work / "local"
        self.local.mkdir()
        if seed is not None:
            write_tree(self.local, seed)

    def check(self, phase: str, tree: Tree) -> None:
        """Every file of the tree in the folder, and after the one change, its new content."""
        names = {p.relative_to(self.local).as_posix() for p in self.local.rglob("*") if p.is_file()}
        count = sum(1 for name in names if not name.startswith(self.own_files))
        failed = f"{self.name} {phase} on {self.server.kind}"
        if count != len(tree.files):
            raise SystemExit(f"{failed}: {count} local files, not {len(tree.files)}")
        if phase == "one-change" and (self.local / tree.changed).read_bytes() != self.server.read(tree.changed):
            raise SystemExit(f"{failed}: {tree.changed} not updated")


class RcloneBisync(LocalFolderTool):
    name = "rclone bisync"

    def __init__(self, work: Path, server: Server, seed: Tree | None) -> None:
        super().__init__(work, server, seed)
        (work / "rclone.conf").write_text("")
        obscured = subprocess.run(
            [require_rclone(), "obscure", server.password], capture_output=True, text=True, check=True, timeout=60
        ).stdout.strip()
        self.env = {
            **os.environ,
            "RCLONE_CONFIG": str(work / "rclone.conf"),
            "RCLONE_CONFIG_DAV_TYPE": "webdav",
            "RCLONE_CONFIG_DAV_URL": server.url,
            "RCLONE_CONFIG_DAV_VENDOR": server.vendor,
            "RCLONE_CONFIG_DAV_USER": server.username,
            "RCLONE_CONFIG_DAV_PASS": obscured,
        }

    def run(self, phase: str) -> Sample:
        cmd = [require_rclone(), "bisync", "dav:", str(self.local), "--workdir", str(self.work / "wd"), "-q"]
        if phase == "initial":
            cmd.append("--resync")
        return run_measured(cmd, env=self.env)[0]


class NextcloudCmd(LocalFolderTool):
    """The Nextcloud desktop client's sync engine, run once per phase as ``nextcloudcmd``."""

    name = "nextcloudcmd"
    servers = ("nextcloud",)
    own_files = (".sync_", ".nextcloudsync")  # its journal and its logs

    def run(self, phase: str) -> Sample:
        binary = shutil.which("nextcloudcmd")
        if binary is None:
            raise SystemExit("nextcloudcmd not installed (apt-get install nextcloud-desktop-cmd)")
        origin = self.server.url.split("/remote.php/")[0]
        cmd = [binary, "--non-interactive", "--silent", "-u", self.server.username, "-p", self.server.password]
        return run_measured([*cmd, "--max-sync-retries", "1", str(self.local), origin])[0]


def measure(
    kind: str, tool_cls: type[Tool], tree: Tree, scratch: Path, repeat: int, direction: str
) -> dict[str, Sample]:
    results: dict[str, list[Sample]] = {p: [] for p in PHASES}
    for i in range(repeat):
        prepared = time.perf_counter()
        with SERVERS[kind](tree if direction == "down" else None) as server:
            held = len(tree.files) if direction == "down" else 0
            print(f"  {kind} server with {held} files ready in {time.perf_counter() - prepared:.1f}s", flush=True)
            seed = tree if direction == "up" else None
            tool = tool_cls(scratch / f"{kind}-{tool_cls.__name__}-{i}", server, seed)
            for phase in PHASES:
                if phase == "one-change":
                    server.change_one(tree)
                server.reset_counts()
                sample = tool.run(phase)
                sample.requests = server.counts()
                tool.check(phase, tree)
                results[phase].append(sample)
                reqs = "" if sample.requests is None else "  requests: " + fmt_counts(sample.requests)
                print(
                    f"    {tool.name:<14} {phase:<11} {sample.seconds:8.3f}s {sample.max_rss_mb:5.0f}MB{reqs}",
                    flush=True,
                )
            shutil.rmtree(tool.work, ignore_errors=True)
    return {p: median(v) for p, v in results.items()}


def median(samples: list[Sample]) -> Sample:
    middle = sorted(samples, key=lambda s: s.seconds)[len(samples) // 2]
    return Sample(statistics.median(s.seconds for s in samples), max(s.max_rss_mb for s in samples), middle.requests)


def fmt_counts(counts: Counter[str]) -> str:
    return " ".join(f"{m}={n}" for m, n in sorted(counts.items())) or "none"


def print_table(kind: str, table: dict[str, dict[str, Sample]]) -> None:
    print(f"\n[{kind}]")
    print(f"{'tool':<15}" + "".join(f"{p:>22}" for p in PHASES))
    for name, row in table.items():
        cells = "".join(f"{row[p].seconds:>12.3f}s {row[p].max_rss_mb:>6.0f}MB" for p in PHASES)
        print(f"{name:<15}{cells}")
    for peer in ("rclone bisync", "nextcloudcmd"):
        if "syncd" in table and peer in table:
            ratios = {p: table["syncd"][p].seconds / table[peer][p].seconds for p in PHASES}
            rss = {p: table["syncd"][p].max_rss_mb / table[peer][p].max_rss_mb for p in PHASES}
            print(f"syncd / {peer} (time): " + ", ".join(f"{p} {r:.2f}x" for p, r in ratios.items()))
            print(f"syncd / {peer} (RSS):  " + ", ".join(f"{p} {r:.2f}x" for p, r in rss.items()))
    if any(row[p].requests is not None for row in table.values() for p in PHASES):
        print("HTTP requests by method:")
        for name, row in table.items():
            for p in PHASES:
                counts = row[p].requests
                if counts is not None:
                    print(f"  {name:<14} {p:<11} {fmt_counts(counts)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--dirs", type=int, default=100)
    parser.add_argument("--servers", default="apache,nextcloud", help="comma-separated: apache, nextcloud")
    parser.add_argument("--tools", default="syncd,rclone", help="comma-separated: syncd, rclone, nextcloudcmd")
    parser.add_argument(
        "--direction", choices=("down", "up"), default="down", help="where the tree is before the initial sync"
    )
    parser.add_argument("--repeat", type=int, default=1, help="fresh server per run; median time, max RSS")
    parser.add_argument(
        "--nextcloud-nagle",
        action="store_true",
        help="keep the test server's Nagle on (it writes headers and body apart: ~40 ms per response)",
    )
    args = parser.parse_args()
    compile_syncd()
    # The Nextcloud-protocol test server (http.server) flushes the headers, then writes the body,
    # without TCP_NODELAY: every response waits for the client's delayed ACK (~40 ms on Linux).
    # Apache, nginx and PHP-FPM in front of a real Nextcloud set TCP_NODELAY; so does this bench.
    nextcloud_server._Handler.disable_nagle_algorithm = not args.nextcloud_nagle
    kinds = [k for k in args.servers.split(",") if k]
    for kind in kinds:
        if kind not in SERVERS:
            parser.error(f"--servers: unknown server {kind!r}")
    tools: dict[str, type[Tool]] = {"syncd": Syncd, "rclone": RcloneBisync, "nextcloudcmd": NextcloudCmd}
    chosen = [tools[t] for t in args.tools.split(",") if t]
    tree = make_tree(args.files, args.dirs)
    print(
        f"tree: {args.files} files (100 B - 8 KB, {sum(map(len, tree.files.values())) / 1e6:.1f} MB) "
        f"in {args.dirs} folders, synced {args.direction}; {args.repeat} run(s) per tool, a fresh server each; "
        f"{os.cpu_count()} CPUs; "
        f"Nextcloud server TCP_NODELAY {not args.nextcloud_nagle}; "
        f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    tables: dict[str, dict[str, dict[str, Sample]]] = {}
    with tempfile.TemporaryDirectory(prefix="syncd-bench-dav-") as tmp:
        for kind in kinds:
            tables[kind] = {}
            for tool_cls in chosen:
                if kind not in tool_cls.servers:
                    continue
                print(f"{kind}: {tool_cls.name} ...", flush=True)
                try:
                    tables[kind][tool_cls.name] = measure(kind, tool_cls, tree, Path(tmp), args.repeat, args.direction)
                except servers.ServerUnavailable as exc:
                    print(f"  {kind} server unavailable: {exc}")
                    break
    for kind, table in tables.items():
        if table:
            print_table(kind, table)
    print(f"\nload at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
