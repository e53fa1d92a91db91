"""``syncd install-service`` puts the service in place below a temporary root, and the wheel
carries what it installs.

The units it writes must pass ``systemd-analyze verify`` (skipped where that cannot run, a
failure with SYNCD_REQUIRE_SYSTEMD=1, as in tests/daemon/test_systemd_units.py); the wheel is
built as tests/index builds it (no isolation), installed in a fresh venv, and that venv's
``syncd install-service`` names that venv's syncd in ``ExecStart=``.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from syncd import __version__
from syncd.cli import build_parser
from syncd.service_install import next_steps, this_syncd
from syncd.shell_docs import bash_completion, describe, man_page, zsh_completion

REPO = Path(__file__).resolve().parents[2]
PACKAGING = REPO / "packaging"
# What the wheel ships (syncd/share/...) and where each came from.
SHIPPED = {
    "systemd/syncd.service": PACKAGING / "systemd" / "syncd.service",
    "systemd/syncd@.service": PACKAGING / "systemd" / "syncd@.service",
    "systemd/syncd.sysusers": PACKAGING / "systemd" / "syncd.sysusers",
    "systemd/syncd.tmpfiles": PACKAGING / "systemd" / "syncd.tmpfiles",
    "syncd.toml": PACKAGING / "examples" / "syncd.toml",
    "README-service.md": PACKAGING / "README-service.md",
}


def install_service(*args: str, syncd: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(syncd or [sys.executable, "-m", "syncd"]), "install-service", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _analyze() -> str | None:
    tool = shutil.which("systemd-analyze")
    reason = None
    if tool is None:
        reason = "systemd-analyze is not installed (apt-get install -y systemd)"
    elif subprocess.run([tool, "--version"], capture_output=True, timeout=30, check=False).returncode != 0:
        reason = "systemd-analyze does not run here"
    if reason is not None and os.environ.get("SYNCD_REQUIRE_SYSTEMD") == "1":
        pytest.fail(f"SYNCD_REQUIRE_SYSTEMD=1 but {reason}")
    return tool if reason is None else None


def verify_units(unit_dir: Path, tmp_path: Path) -> bool:
    """``systemd-analyze verify`` on the written units (the template as one of its instances).
    :returns: False when systemd-analyze is not available here."""
    tool = _analyze()
    if tool is None:
        return False
    checked = tmp_path / "verify"
    checked.mkdir()
    shutil.copy(unit_dir / "syncd.service", checked / "syncd.service")
    shutil.copy(unit_dir / "syncd@.service", checked / "syncd@alice.service")
    for unit in ("syncd.service", "syncd@alice.service"):
        out = subprocess.run(
            [tool, "verify", str(checked / unit)], capture_output=True, text=True, timeout=60, check=False, cwd=checked
        )
        assert out.returncode == 0 and out.stderr.strip() == "", (unit, out.stderr)
    return True


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_install_service_puts_everything_in_place(tmp_path: Path) -> None:
    root = tmp_path / "root"
    done = install_service("--prefix", str(root))
    assert done.returncode == 0, done.stderr
    executable = this_syncd()
    units = root / "etc/systemd/system"
    for name in ("syncd.service", "syncd@.service"):
        text = (units / name).read_text()
        assert f"\nExecStart={executable} --config /etc/syncd/syncd.toml run" in text
        assert "/usr/bin/syncd" not in text and "SYNCD_LIBUPLINK" not in text
        source = (PACKAGING / "systemd" / name).read_text()  # the rest of the unit as shipped
        assert text.endswith(source.replace("ExecStart=/usr/bin/syncd ", f"ExecStart={executable} "))
        assert _mode(units / name) == 0o644
    assert "run --only %i" in (units / "syncd@.service").read_text()
    verify_units(units, tmp_path)
    same = {
        "etc/sysusers.d/syncd.conf": PACKAGING / "systemd" / "syncd.sysusers",
        "etc/tmpfiles.d/syncd.conf": PACKAGING / "systemd" / "syncd.tmpfiles",
        "etc/syncd/syncd.toml": PACKAGING / "examples" / "syncd.toml",
        "usr/local/share/doc/syncd/README-service.md": PACKAGING / "README-service.md",
    }
    for target, source in same.items():
        assert (root / target).read_bytes() == source.read_bytes(), target
    assert _mode(root / "etc/syncd/syncd.toml") == 0o640
    cli = describe(build_parser())
    assert (root / "usr/local/share/man/man1/syncd.1").read_text() == man_page(cli, __version__)
    assert (root / "usr/local/share/bash-completion/completions/syncd").read_text() == bash_completion(cli, __version__)
    assert (root / "usr/local/share/zsh/site-functions/_syncd").read_text() == zsh_completion(cli, __version__)
    link = root / "usr/local/bin/syncd"
    assert link.is_symlink() and Path(os.readlink(link)) == executable
    out = done.stdout
    assert f"wrote {units / 'syncd.service'}" in out
    assert "systemctl daemon-reload" in out and "systemctl enable --now syncd" in out
    assert "systemd-sysusers /etc/sysusers.d/syncd.conf" in out

    again = install_service("--prefix", str(root))  # idempotent: nothing to rewrite
    assert again.returncode == 0, again.stderr
    assert "wrote" not in again.stdout and "linked" not in again.stdout
    assert f"unchanged {units / 'syncd.service'}" in again.stdout


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    done = install_service("--prefix", str(root), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert not root.exists()
    for target in ("etc/systemd/system/syncd.service", "etc/syncd/syncd.toml", "usr/local/share/man/man1/syncd.1"):
        assert f"would write {root / target}" in done.stdout
    assert f"would link {root / 'usr/local/bin/syncd'}" in done.stdout


def test_an_existing_config_is_never_overwritten(tmp_path: Path) -> None:
    config = tmp_path / "root" / "etc" / "syncd" / "syncd.toml"
    config.parent.mkdir(parents=True)
    config.write_text("# the admin's own config\n")
    config.chmod(0o600)
    done = install_service("--prefix", str(tmp_path / "root"))
    assert done.returncode == 0, done.stderr
    assert config.read_text() == "# the admin's own config\n" and _mode(config) == 0o600
    assert f"kept {config} (it exists" in done.stdout


def test_libuplink_is_installed_and_named_in_the_units(tmp_path: Path) -> None:
    library = tmp_path / "libuplink.so"
    library.write_bytes(b"\x7fELF not really")
    root = tmp_path / "root"
    done = install_service("--prefix", str(root), "--libuplink", str(library))
    assert done.returncode == 0, done.stderr
    assert (root / "usr/local/lib/syncd/libuplink.so").read_bytes() == library.read_bytes()
    units = root / "etc/systemd/system"
    for name in ("syncd.service", "syncd@.service"):
        text = (units / name).read_text()
        assert "\nEnvironment=SYNCD_LIBUPLINK=/usr/local/lib/syncd/libuplink.so\nExecStart=" in text
    verify_units(units, tmp_path)


def test_bad_input_is_one_line_and_exit_4(tmp_path: Path) -> None:
    missing = install_service("--prefix", str(tmp_path / "root"), "--libuplink", str(tmp_path / "nope.so"))
    assert missing.returncode == 4
    assert missing.stderr == f"syncd: error: {tmp_path / 'nope.so'}: --libuplink: no such file\n"
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    blocked = install_service("--prefix", str(not_a_folder))
    assert blocked.returncode == 4
    assert blocked.stderr.startswith(f"syncd: error: {not_a_folder}/etc/systemd/system/syncd.service: cannot write: ")
    assert blocked.stderr.count("\n") == 1


@pytest.mark.slow
def test_the_wheel_carries_the_service_files_and_installs_them(tmp_path: Path) -> None:
    """Build the wheel, check it holds packaging/'s files, install it in a fresh venv, and let
    that venv's syncd install the service: ExecStart= names the venv's syncd."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(REPO)],
        check=True,
        timeout=300,
    )
    wheel = next(dist.glob("syncd-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        for name, source in SHIPPED.items():
            assert archive.read(f"syncd/share/{name}") == source.read_bytes(), name
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)],
        check=True,
        timeout=300,
    )
    root = tmp_path / "root"
    done = install_service("--prefix", str(root), syncd=[str(venv / "bin" / "syncd")])
    assert done.returncode == 0, done.stderr
    unit = (root / "etc/systemd/system/syncd.service").read_text()
    assert f"\nExecStart={venv / 'bin' / 'syncd'} --config /etc/syncd/syncd.toml run\n" in unit
    assert (root / "etc/tmpfiles.d/syncd.conf").read_bytes() == SHIPPED["systemd/syncd.tmpfiles"].read_bytes()
    verify_units(root / "etc/systemd/system", tmp_path)


def test_the_installed_example_config_is_valid() -> None:
    """The config install-service puts in place loads as it is (the admin then edits it)."""
    from syncd.config import load_config

    config = load_config(PACKAGING / "examples" / "syncd.toml")
    assert [pair.key for pair in config.pairs] == ["alice/default", "bob/default", "bob/backup"]


def test_the_next_steps_warn_of_an_installation_the_service_cannot_see() -> None:
    """ProtectHome=yes hides /root and /home from the service: a syncd installed there is named."""
    hidden = next_steps(Path("/root/venv/bin/syncd"), Path("/"))
    assert hidden[0].startswith("warning: /root/venv/bin/syncd is below /root, which the units' ProtectHome=yes")
    visible = next_steps(Path("/opt/syncd/bin/syncd"), Path("/"))
    assert visible[0] == "Next steps:"
    assert any(line.strip().startswith("systemctl enable --now syncd") for line in visible)
