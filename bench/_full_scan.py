"""A daemon's full scan of one unchanged pair, measured: ``python bench/_full_scan.py CONFIG N``
syncs the config's first pair once (not counted), then N times in this process, and prints one
JSON line ``[[cpu_s, ...], [wall_s, ...]]`` (CPU: user + system of this process per run). Every
counted run must end ok having done nothing, or this exits non-zero."""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from syncd.config import load_config
from syncd.engine.sync import RunOptions, sync_pair


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    pair = load_config(Path(sys.argv[1])).pairs[0]
    sync_pair(pair, RunOptions())
    cpu, wall = [], []
    for _ in range(int(sys.argv[2])):
        c, w = cpu_s(), time.perf_counter()
        report = sync_pair(pair, RunOptions())
        cpu.append(cpu_s() - c)
        wall.append(time.perf_counter() - w)
        if report.outcome.value != "ok" or sum(report.done.values()):
            raise SystemExit(f"not a no-change run: {report.outcome.value} {dict(report.done)}")
    print(json.dumps([cpu, wall]))


if __name__ == "__main__":
    main()
