"""The Go unit tests of our libuplink build (packaging/libuplink/*_test.go: deadlines, the
read-ahead's wake-ups), run with ``go test`` so that CI runs them with the rest."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "packaging" / "libuplink"
GO_TEST_TIMEOUT = 600.0  # seconds: compiling the package's tests on a loaded 2-core machine


def _go() -> str:
    go = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")
    if go is None:
        if os.environ.get("SYNCD_REQUIRE_STORJ"):
            pytest.fail("Go not found (SYNCD_REQUIRE_STORJ is set): run `bash .ci/storj.sh`")
        pytest.skip("Go not found: run `bash .ci/storj.sh`")
    return go


def test_go_unit_tests_of_libuplink_pass() -> None:
    env = {**os.environ, "CGO_ENABLED": "1", "GOFLAGS": "-mod=readonly"}
    done = subprocess.run(
        [_go(), "test", "-count=1", "."],
        cwd=PACKAGE,
        env=env,
        capture_output=True,
        text=True,
        timeout=GO_TEST_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
