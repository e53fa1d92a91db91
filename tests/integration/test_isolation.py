"""Isolation: no code is imported from where syncd is run, and no user's files reach another
user's place (a shared folder, bucket prefix or WebDAV tree is refused when the config loads)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.integration.cli_helpers import syncd, write_local_pair

REPO = Path(__file__).resolve().parents[2]


def installed_syncd() -> list[str]:
    """The ``syncd`` command as installed: its script does not put the cwd on the import path.
    (``python -m syncd`` would, and would run a planted package itself: the admin's own doing.)"""
    script = Path(sys.executable).parent / "syncd"
    return [str(script)] if script.exists() else [sys.executable, "-P", "-m", "syncd"]


def run_syncd(*args: str, cwd: Path, config: Path) -> subprocess.CompletedProcess[str]:
    return syncd(config, *args, command=installed_syncd(), cwd=cwd)


def fresh_pair(root: Path) -> Path:
    """A config whose state folder does not exist yet: the first run migrates a new index."""
    (root / "files").mkdir(parents=True)
    (root / "files" / "a.txt").write_text("a\n")
    return write_local_pair(root)


def test_a_syncd_package_planted_in_the_cwd_never_runs(tmp_path: Path) -> None:
    """A first run migrates its index in a child (`python -m syncd.index.migrate`): with `-m`
    alone, Python put the cwd first on the child's path and ran the planted package."""
    marker = tmp_path / "planted-code-ran"
    hostile = tmp_path / "world-writable"
    for package in ("syncd", "syncd/index", "alembic", "sqlalchemy"):
        (hostile / package).mkdir(parents=True)
        (hostile / package / "__init__.py").write_text(f"open({str(marker)!r}, 'a').write({package!r} + '\\n')\n")
    (hostile / "syncd" / "index" / "migrate.py").write_text(f"open({str(marker)!r}, 'a').write('migrate\\n')\n")
    config = fresh_pair(tmp_path / "pair")

    result = run_syncd("now", cwd=hostile, config=config)

    assert not marker.exists(), f"code from the cwd ran: {marker.read_text()}"
    assert result.returncode == 0, result.stderr
    assert "alice/default: ok: 1 copy" in result.stdout


def test_a_first_run_from_the_source_checkout_migrates(tmp_path: Path) -> None:
    """From the checkout, `-m` found ./syncd but not syncd.migrations (mapped to ./migrations
    only by the installed package): "No module named 'syncd.migrations'"."""
    config = fresh_pair(tmp_path / "pair")
    result = run_syncd("now", cwd=REPO, config=config)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "pair" / "state" / "alice" / "default" / "index.db").exists()


# -- users never share a place -------------------------------------------------------------------

TWO_USERS = """
[daemon]
state_dir = "state"
[users.alice]
files  = {{ type = "local", path = "alice" }}
bucket = {alice}
[users.bob]
files  = {{ type = "local", path = "bob" }}
bucket = {bob}
"""


def two_users(tmp_path: Path, alice: str, bob: str) -> Path:
    for user in ("alice", "bob"):
        (tmp_path / user).mkdir(exist_ok=True)
    (tmp_path / "alice" / "a.txt").write_text("alice's own\n")
    config = tmp_path / "syncd.toml"
    config.write_text(TWO_USERS.format(alice=alice, bob=bob))
    return config


def test_two_users_on_one_bucket_folder_are_refused_before_any_file_moves(tmp_path: Path) -> None:
    """alice's a.txt reached bob's tree, and `check` said 0."""
    shared = '{ type = "dir", path = "bucket" }'
    config = two_users(tmp_path, shared, shared)
    for command in ("now", "check", "status"):
        result = run_syncd(command, cwd=tmp_path, config=config)
        assert result.returncode == 4, (command, result.stdout, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("syncd: error: "), lines
        assert "alice/default bucket" in lines[0] and "bob/default bucket" in lines[0], lines[0]
        assert f"folder {(tmp_path / 'bucket').resolve()}" in lines[0]
        assert "one user's files would reach another user" in lines[0]
    assert not (tmp_path / "bob" / "a.txt").exists()
    assert not (tmp_path / "bucket").exists()


def test_a_bucket_prefix_inside_another_users_is_refused(tmp_path: Path) -> None:
    """bob's prefix "alice/bob/" is inside alice's "alice/": bob's tree would show in alice's."""
    bucket = (
        '{{ type = "s3", bucket = "shared", endpoint = "http://127.0.0.1:9", prefix = "{}", '
        'access_key_id_env = "K", secret_access_key_env = "S" }}'
    )
    config = two_users(tmp_path, bucket.format("alice"), bucket.format("alice/bob/"))
    result = run_syncd("check", cwd=tmp_path, config=config)
    assert result.returncode == 4, result.stderr
    assert "prefix 'alice/'" in result.stderr and "prefix 'alice/bob/'" in result.stderr
    config.write_text(config.read_text().replace('"alice/bob/"', '"bob/"'))  # distinct prefixes: fine
    result = run_syncd("status", cwd=tmp_path, config=config)
    assert result.returncode == 0, result.stderr


def test_one_users_pairs_may_share_a_place_only_when_both_say_so(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    config = tmp_path / "syncd.toml"
    text = """
[daemon]
state_dir = "state"
[users.alice]
files  = { type = "local", path = "docs" }
bucket = { type = "dir", path = "bucket-main" }
ALLOW
[users.alice.pairs.backup]
files  = { type = "local", path = "docs" }
bucket = { type = "dir", path = "bucket-backup" }
"""
    config.write_text(text.replace("ALLOW", ""))
    refused = run_syncd("status", cwd=tmp_path, config=config)
    assert refused.returncode == 4 and "set allow_overlap = true on both pairs" in refused.stderr
    config.write_text(text.replace("ALLOW", "allow_overlap = true"))  # in [users.alice]: both pairs inherit it
    allowed = run_syncd("now", cwd=tmp_path, config=config)
    assert allowed.returncode == 0, allowed.stderr
