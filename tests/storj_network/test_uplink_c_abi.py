"""Our ctypes binding against uplink-c as Storj builds it, not only against our own build.

The rest of the suite loads ``packaging/libuplink/build/libuplink.so``: our own Go library
exporting the uplink-c ABI. A binding checked only against it could share a mistake with it
(a struct's field order, a return type, an error code) and still pass. The ``storj-uplink``
wheel, a test dependency, ships ``libuplink.so`` as Storj builds it (uplink-c, uplink v1.13.1,
x86-64 Linux only); it is also where :func:`syncd.remotes._uplink.library_path` falls back to.

A process loads libuplink once, so the Storj contract suite and the binding's own tests run
again in a child pytest with ``$SYNCD_LIBUPLINK`` set to the wheel's library, against this
session's network (``$SYNCD_STORJ_NETWORK_JSON``, reused by the fixture without restarting it).
The child reports which libuplink it really mapped.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

from syncd.remotes import _uplink
from tests.storj_network.fixture import ENV_NETWORK_JSON, StorjNetwork

REPO = Path(__file__).resolve().parents[2]
# What the child runs: everything that drives the binding against the network.
SUITES = ("tests/remotes/test_storj_remote.py", "tests/storj_network/test_uplink_binding.py")
CHILD_TIMEOUT = 600.0  # seconds; the child takes ~20 s here
MAPPED = "syncd-libuplink-mapped: "

# The child: pytest, then the libuplink files this process mapped (from /proc/self/maps).
CHILD = f"""\
import sys
from pathlib import Path

import pytest

code = pytest.main(sys.argv[1:])
for line in Path("/proc/self/maps").read_text().splitlines():
    fields = line.split(maxsplit=5)
    if len(fields) == 6 and "libuplink" in fields[5]:
        print({MAPPED!r} + fields[5])
sys.exit(int(code))
"""

# pytest -q's closing line, e.g. "66 passed, 2 skipped in 15.52s".
SUMMARY = re.compile(r"^=*\s*((?:\d+ \w+, )*\d+ \w+) in [\d.]+s\b", re.MULTILINE)


def _installed_wheel_library() -> Path:
    """The wheel's libuplink.so, from the installed files of the distribution."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        here = f"{sys.platform}/{platform.machine()}"
        pytest.skip(f"the storj-uplink wheel's libuplink.so is for x86-64 Linux only, not {here}")
    try:
        files = importlib.metadata.files("storj-uplink") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    found = [f for f in files if f.as_posix() == "storj_uplink/libuplink.so"]
    lib = Path(str(found[0].locate())).resolve() if found else None
    if lib is None or not lib.is_file():
        message = "storj-uplink (uplink-c as Storj builds it) is not installed: pip install -e '.[test]'"
        if os.environ.get("SYNCD_REQUIRE_STORJ") == "1":
            pytest.fail(message + " (SYNCD_REQUIRE_STORJ=1)", pytrace=False)
        pytest.skip(message)
    return lib


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def test_library_path_falls_back_to_the_wheel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lib = _installed_wheel_library()
    monkeypatch.delenv("SYNCD_LIBUPLINK", raising=False)
    monkeypatch.setattr(_uplink, "_BUILT_LIBRARY", tmp_path / "not-built" / "libuplink.so")
    assert _uplink.library_path().resolve() == lib
    monkeypatch.setenv("SYNCD_LIBUPLINK", "/elsewhere/libuplink.so")  # the variable still wins
    assert _uplink.library_path() == Path("/elsewhere/libuplink.so")


def test_binding_suites_pass_against_storj_built_uplink_c(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    lib = _installed_wheel_library()  # before the network: skip without starting one
    network: StorjNetwork = request.getfixturevalue("storj_network")
    env = {
        **os.environ,
        "SYNCD_LIBUPLINK": str(lib),
        ENV_NETWORK_JSON: str(network.info_path),
        # The network and the library are there: nothing in the child may skip for want of them.
        "SYNCD_REQUIRE_STORJ": "1",
    }
    cmd = [sys.executable, "-c", CHILD, "-q", "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'child'}", *SUITES]
    try:
        child = subprocess.run(
            cmd,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"the child pytest did not finish in {CHILD_TIMEOUT:.0f} s:\n{_tail(out)}", pytrace=False)
    output = child.stdout + child.stderr
    assert child.returncode == 0, f"child pytest exited {child.returncode} with {lib}:\n{_tail(output)}"

    summaries = SUMMARY.findall(child.stdout)
    assert summaries, f"no pytest summary in the child's output:\n{_tail(output)}"
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", summaries[-1])}
    assert counts.get("passed", 0) > 0, summaries[-1]
    assert counts.get("failed", 0) == 0 and counts.get("error", 0) == 0 and counts.get("errors", 0) == 0

    mapped = {Path(line.removeprefix(MAPPED)).resolve() for line in output.splitlines() if line.startswith(MAPPED)}
    assert mapped == {lib}, f"the child mapped {sorted(map(str, mapped))}, not only {lib}:\n{_tail(output)}"
    # Shown with -rP / -s: what ran, and why anything did not.
    print(f"uplink-c from the storj-uplink wheel ({lib}): {summaries[-1]}")
    print("\n".join(line for line in child.stdout.splitlines() if line.startswith("SKIPPED")))
