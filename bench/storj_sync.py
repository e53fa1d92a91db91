"""Benchmark: syncd (native `storj` remote) vs `rclone sync` and `rclone bisync` (rclone's
storj backend), on the local Storj network (tests/storj_network, built by .ci/storj.sh).

Two parts (``--parts tree,transfer``, both by default):

* tree: 1,000 files of 4-64 KB in 20 folders plus one 256 MiB file. Each tool gets its own
  fresh bucket and runs an initial upload and a no-change run.
* transfer: one file of ``--transfer-mib`` MiB (1 GiB by default), uploaded by syncd
  (``syncd now``, a folder holding it <-> an empty bucket) and by ``rclone copy``, then
  downloaded by each into an empty folder (syncd: a new pair of an empty folder and its
  bucket), ``--downloads`` times after an untimed one, the two tools taking turns going first; with more than one,
  the median and range of the ratios are printed too. The downloads are compared with the
  original byte for byte (not timed).

Each run's wall time, the child's CPU time (user + system, os.wait4) and peak RSS are
printed as tables with ratios to syncd.

    python bench/storj_sync.py [--parts tree,transfer] [--files 1000] [--big-mib 256]
                               [--transfer-mib 1024] [--concurrency 4] [--download-parts N] [--downloads N]
                               [--network-json PATH]   # reuse a running network's info file
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _tools import compile_syncd, require_rclone

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from syncd.remotes import _uplink as uplink  # noqa: E402
from syncd.remotes.storj import USER_AGENT  # noqa: E402

MiB = 1 << 20
RUN_TIMEOUT = 1800.0


@dataclass
class Sample:
    seconds: float
    max_rss_mb: float
    user_seconds: float
    sys_seconds: float
    load: float = 0.0  # the 1-minute load average when the run ended

    @property
    def cpu_seconds(self) -> float:
        """The child's user + system time."""
        return self.user_seconds + self.sys_seconds


def run_measured(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Sample:
    """Run ``cmd``; wall time and the child's own peak RSS. :raises SystemExit: on failure."""
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = start + RUN_TIMEOUT
        while True:  # bounded wait, then wait4 for the rusage
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            log.seek(0)
            raise SystemExit(f"{' '.join(cmd[:4])} ... exited {code}:\n{log.read().decode(errors='replace')[-2000:]}")
    return Sample(elapsed, usage.ru_maxrss / 1024, usage.ru_utime, usage.ru_stime, os.getloadavg()[0])


def make_tree(root: Path, files: int, big_mib: int, seed: int = 11) -> int:
    rng = random.Random(seed)
    total = 0
    for i in range(files):
        path = root / f"d{i % 20:02d}" / f"f{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        size = rng.randint(4 * 1024, 64 * 1024)
        path.write_bytes(rng.randbytes(size))
        total += size
    if big_mib:
        block = os.urandom(MiB)
        with (root / "big.bin").open("wb") as out:
            for i in range(big_mib):
                out.write(block[:-8] + i.to_bytes(8, "big"))
        total += big_mib * MiB
    return total


class Network:
    """The local Storj network: started here (and stopped at exit) or read from a JSON file."""

    def __init__(self, info_json: Path | None, work: Path) -> None:
        self.proc = None
        if info_json is not None:
            raw = json.loads(info_json.read_text())
        else:
            from tests.storj_network import fixture

            work.mkdir(parents=True, exist_ok=True)
            for binary in (fixture.NETWORK_BIN, fixture.GATEWAY_BIN):
                if not os.access(binary, os.X_OK):
                    raise SystemExit(f"{binary} not built: run `bash .ci/storj.sh`")
            reason = fixture._check_postgres(fixture._postgres_url())
            if reason:
                raise SystemExit(reason)
            self.proc, info_path, log_path = fixture._start(work)
            deadline = time.monotonic() + fixture.START_TIMEOUT
            while not info_path.exists():
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise SystemExit(f"the Storj network did not start; see {log_path}")
                time.sleep(0.2)
            raw = json.loads(info_path.read_text())
        self.grant: str = raw["access_grant"]

    def new_bucket(self) -> str:
        name = "bench-" + secrets.token_hex(5)
        with uplink.Access.parse(self.grant) as access, access.open_project(user_agent=USER_AGENT) as project:
            project.ensure_bucket(name)
        return name

    def delete(self, bucket: str, key: str) -> None:
        """Free the nodes' space (a reused network's nodes fill up after a few GiB)."""
        with uplink.Access.parse(self.grant) as access, access.open_project(user_agent=USER_AGENT) as project:
            project.delete_object(bucket, key)

    def close(self) -> None:
        if self.proc is not None:
            from tests.storj_network import fixture

            fixture._stop(self.proc)
            self.proc = None


def rclone_env(grant: str) -> dict[str, str]:
    return {
        **os.environ,
        "RCLONE_CONFIG": "/nonexistent",
        "RCLONE_CONFIG_SJ_TYPE": "storj",
        "RCLONE_CONFIG_SJ_ACCESS_GRANT": grant,
    }


# Extra keys of syncd's bucket (`--download-parts`), e.g. ", download_parts = 1".
BUCKET_EXTRA = {"keys": ""}


def syncd_now(net: Network, tree: Path, bucket: str, work: Path, concurrency: int) -> list[str]:
    """The command of a ``syncd now`` pairing ``tree`` with ``bucket``; its config and state in ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "grant").write_text(net.grant)
    config = work / "syncd.toml"
    config.write_text(
        f'[daemon]\nstate_dir = "state"\nsocket = "state/control.sock"\ntransfers = {concurrency}\n\n'
        f'[users.bench]\nfiles = {{ type = "local", path = "{tree}" }}\n'
        f'bucket = {{ type = "storj", access_grant_file = "grant", bucket = "{bucket}"{BUCKET_EXTRA["keys"]} }}\n'
    )
    return [sys.executable, "-m", "syncd", "--config", str(config), "now"]


def bench_syncd(net: Network, tree: Path, work: Path, concurrency: int) -> dict[str, Sample]:
    cmd = syncd_now(net, tree, net.new_bucket(), work, concurrency)
    return {"initial": run_measured(cmd, cwd=REPO), "no-change": run_measured(cmd, cwd=REPO)}


def bench_rclone_sync(net: Network, tree: Path, work: Path, concurrency: int) -> dict[str, Sample]:
    bucket = net.new_bucket()
    cmd = [require_rclone(), "sync", str(tree), f"sj:{bucket}"]
    cmd += [f"--transfers={concurrency}", f"--checkers={concurrency}"]
    env = rclone_env(net.grant)
    return {"initial": run_measured(cmd, env), "no-change": run_measured(cmd, env)}


def bench_rclone_bisync(net: Network, tree: Path, work: Path, concurrency: int) -> dict[str, Sample]:
    bucket = net.new_bucket()
    base = [
        require_rclone(),
        "bisync",
        str(tree),
        f"sj:{bucket}",
        f"--workdir={work / 'bisync'}",
        f"--transfers={concurrency}",
        f"--checkers={concurrency}",
    ]
    env = rclone_env(net.grant)
    return {"initial": run_measured([*base, "--resync"], env), "no-change": run_measured(base, env)}


TOOLS: dict[str, Callable[[Network, Path, Path, int], dict[str, Sample]]] = {
    "syncd (storj)": bench_syncd,
    "rclone sync": bench_rclone_sync,
    "rclone bisync": bench_rclone_bisync,
}


def settled(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Sample:
    """:func:`run_measured` after the page cache's dirty pages are written: no tool pays for
    writing back the file the one before it wrote (or for the source just made)."""
    os.sync()
    return run_measured(cmd, env, cwd)


def bench_transfer(
    net: Network, work: Path, mib: int, concurrency: int, downloads: int
) -> dict[str, dict[str, Sample]]:
    """One file of ``mib`` MiB up, then down ``downloads`` times, by syncd and by ``rclone copy``
    (the two take turns going first): {run: {tool: sample}}, runs "upload", "download 1", ..."""
    source = work / "up"
    source.mkdir(parents=True)
    make_tree(source, 0, mib, seed=13)
    big = source / "big.bin"
    rclone = [require_rclone(), "copy", f"--transfers={concurrency}", f"--checkers={concurrency}"]
    env = rclone_env(net.grant)
    syncd_bucket, rclone_bucket = net.new_bucket(), net.new_bucket()
    table: dict[str, dict[str, Sample]] = {"upload": {}}
    try:
        table["upload"]["syncd"] = settled(syncd_now(net, source, syncd_bucket, work / "s-up", concurrency), cwd=REPO)
        table["upload"]["rclone"] = settled([*rclone, str(source), f"sj:{rclone_bucket}"], env)
        print("transfer: uploads done", flush=True)
        # An untimed download first: the first one after the uploads (syncd's, going first) ran
        # 1.3-1.8x as long as its later ones, with more system time (this VM's host takes free
        # memory back; the first run after the uploads faults in cold memory for what it caches).
        warm = work / "down-warm-up"
        warm.mkdir()
        settled([*rclone, f"sj:{rclone_bucket}", str(warm)], env)
        (warm / "big.bin").unlink()
        for i in range(1, downloads + 1):
            run = table[f"download {i}"] = {}
            for tool in ("syncd", "rclone") if i % 2 else ("rclone", "syncd"):
                down = work / f"down-{tool}-{i}"
                down.mkdir()
                if tool == "syncd":
                    cmd = syncd_now(net, down, syncd_bucket, work / f"s-down-{i}", concurrency)
                    run[tool] = settled(cmd, cwd=REPO)
                else:
                    run[tool] = settled([*rclone, f"sj:{rclone_bucket}", str(down)], env)
                if not filecmp.cmp(big, down / "big.bin", shallow=False):
                    raise SystemExit(f"{tool}'s download differs from the file uploaded")
                (down / "big.bin").unlink()  # the disk holds one copy at a time
            print(f"transfer: download {i} of {downloads} done (load {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        for bucket in (syncd_bucket, rclone_bucket):
            with contextlib.suppress(uplink.UplinkError):
                net.delete(bucket, "big.bin")
    return table


def print_transfer(table: dict[str, dict[str, Sample]], mib: int) -> None:
    print(f"\none file of {mib} MiB (CPU: user + sys of the child; load: 1-minute average at the end of the run)")
    print(
        f"{'run':<11} {'syncd s':>8} {'rclone s':>9} {'time syncd/rclone':>18} {'syncd CPU':>16} "
        f"{'rclone CPU':>16} {'CPU syncd/rclone':>17} {'RSS MB syncd':>13} {'rclone':>7} {'load':>5}"
    )
    for run, tools in table.items():
        ours, theirs = tools["syncd"], tools["rclone"]
        print(
            f"{run:<11} {ours.seconds:>8.2f} {theirs.seconds:>9.2f} {ours.seconds / theirs.seconds:>18.2f} "
            f"{ours.cpu_seconds:>6.2f} ({ours.user_seconds:.1f}+{ours.sys_seconds:.1f}) "
            f"{theirs.cpu_seconds:>6.2f} ({theirs.user_seconds:.1f}+{theirs.sys_seconds:.1f}) "
            f"{ours.cpu_seconds / theirs.cpu_seconds:>17.2f} {ours.max_rss_mb:>13.0f} {theirs.max_rss_mb:>7.0f} "
            f"{max(ours.load, theirs.load):>5.1f}"
        )
    downs = [tools for run, tools in table.items() if run.startswith("download")]
    if len(downs) > 1:

        def spread(values: list[float], digits: int = 2) -> str:
            return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"

        time_ratio = [t["syncd"].seconds / t["rclone"].seconds for t in downs]
        cpu_ratio = [t["syncd"].cpu_seconds / t["rclone"].cpu_seconds for t in downs]
        rss = {tool: [t[tool].max_rss_mb for t in downs] for tool in ("syncd", "rclone")}
        print(
            f"downloads: median (range) of {len(downs)}: time syncd/rclone {spread(time_ratio)}, "
            f"CPU syncd/rclone {spread(cpu_ratio)}, peak RSS MB syncd {spread(rss['syncd'], 0)} "
            f"rclone {spread(rss['rclone'], 0)}, load {spread([t['syncd'].load for t in downs], 1)}"
        )


def print_table(table: dict[str, dict[str, Sample]]) -> None:
    ref = table["syncd (storj)"]
    print(
        f"{'tool':<15} {'run':<10} {'seconds':>9} {'CPU s':>7} {'peak RSS MB':>12} {'time / syncd':>13} "
        f"{'RSS / syncd':>12}"
    )
    for tool, runs in table.items():
        for run, sample in runs.items():
            print(
                f"{tool:<15} {run:<10} {sample.seconds:>9.2f} {sample.cpu_seconds:>7.2f} {sample.max_rss_mb:>12.0f} "
                f"{sample.seconds / ref[run].seconds:>13.2f} {sample.max_rss_mb / ref[run].max_rss_mb:>12.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="tree,transfer", help="comma-separated: tree, transfer")
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--big-mib", type=int, default=256)
    parser.add_argument("--transfer-mib", type=int, default=1024, help="size of the transfer part's file")
    parser.add_argument("--concurrency", type=int, default=4, help="syncd transfers / rclone --transfers (1-16)")
    parser.add_argument("--download-parts", type=int, help="syncd's download_parts (default: the setting's)")
    parser.add_argument("--downloads", type=int, default=1, help="download the transfer file this many times each")
    parser.add_argument("--network-json", type=Path, help="info file of a running local network")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if not parts or parts - {"tree", "transfer"}:
        parser.error("--parts: tree, transfer or both")
    if args.download_parts is not None:
        BUCKET_EXTRA["keys"] = f", download_parts = {args.download_parts}"
    compile_syncd()
    concurrency = max(1, min(16, args.concurrency))
    require_rclone()
    table: dict[str, dict[str, Sample]] = {}
    transfer: dict[str, dict[str, Sample]] = {}
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        work = Path(tmp)
        net = Network(args.network_json, work / "network")
        try:
            if "tree" in parts:
                tree = work / "tree"
                tree.mkdir()
                total = make_tree(tree, args.files, args.big_mib)
                print(
                    f"tree: {args.files} files of 4-64 KB + {args.big_mib} MiB file = {total / MiB:.0f} MiB; "
                    f"concurrency {concurrency}",
                    flush=True,
                )
                for name, bench in TOOLS.items():
                    scratch = work / name.split()[1 if name.startswith("rclone") else 0].strip("()")
                    scratch.mkdir(exist_ok=True)
                    table[name] = bench(net, tree, scratch, concurrency)
                    print(f"{name}: done", flush=True)
            if "transfer" in parts:
                transfer = bench_transfer(
                    net, work / "transfer", args.transfer_mib, concurrency, max(1, args.downloads)
                )
        finally:
            net.close()
    if table:
        print_table(table)
    if transfer:
        print_transfer(transfer, args.transfer_mib)


if __name__ == "__main__":
    main()
