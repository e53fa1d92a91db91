"""`syncd init`: the config it writes loads, `syncd check` reads it, secrets are 0600 and say
what belongs in them, and an existing config is never overwritten."""

from __future__ import annotations

import stat
from pathlib import Path

from syncd.config import load_config
from syncd.outcomes import ExitCode
from syncd.remotes.settings import secret_text
from tests.integration.cli_helpers import syncd


def test_datadir_with_bucket_dirs_is_checked_and_syncs(tmp_path: Path) -> None:
    datadir, config = tmp_path / "data", tmp_path / "etc" / "syncd.toml"
    for user in ("alice", "bob"):
        (datadir / user / "files").mkdir(parents=True)
    (datadir / "alice" / "files" / "hello.txt").write_text("hi")
    args = ["--datadir", str(datadir), "--user", "alice", "--user", "bob", "--bucket-dir", str(tmp_path / "buckets")]
    done = syncd(config, "init", *args, "--state-dir", str(tmp_path / "state"), "--socket", str(tmp_path / "s.sock"))
    assert done.returncode == ExitCode.OK, done.stderr
    assert "1. nothing secret to fill in" in done.stdout and "syncd check --config" in done.stdout
    loaded = load_config(config)
    assert [(p.key, p.files.type, p.bucket.type) for p in loaded.pairs] == [
        ("alice/default", "local", "dir"),
        ("bob/default", "local", "dir"),
    ]
    assert not (config.parent / "secrets").exists()
    checked = syncd(config, "check")
    assert checked.returncode == ExitCode.OK, checked.stderr
    assert "alice/default bucket: reachable" in checked.stdout
    synced = syncd(config, "now", "alice")
    assert synced.returncode == ExitCode.OK, synced.stderr
    listing = list((tmp_path / "buckets" / "alice").rglob("*.json"))
    assert len(listing) == 1  # hello.txt went up


def test_nextcloud_with_storj_writes_commented_secret_files(tmp_path: Path) -> None:
    config = tmp_path / "syncd.toml"
    done = syncd(
        config,
        "init",
        "--nextcloud",
        "https://cloud.example.com/",
        "--user",
        "alice",
        "--user",
        "bob.smith@example.com",
        "--state-dir",
        str(tmp_path / "state"),
    )
    assert done.returncode == ExitCode.OK, done.stderr
    loaded = load_config(config)
    alice, bob = loaded.pairs
    assert alice.files.url == "https://cloud.example.com/remote.php/dav/files/alice/"  # type: ignore[attr-defined]
    assert bob.bucket.bucket == "nextcloud-bob-smith-example-com"  # type: ignore[attr-defined]
    secrets = sorted((tmp_path / "secrets").iterdir())
    assert [s.name for s in secrets] == [
        "alice.access",
        "alice.webdav",
        "bob.smith@example.com.access",
        "bob.smith@example.com.webdav",
    ]
    for secret in secrets:
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        text = secret.read_text()
        assert text.startswith("# ") and secret_text(text) == ""  # a comment, and no secret yet
        assert str(secret) in done.stdout
    assert "app password" in (tmp_path / "secrets" / "alice.webdav").read_text()
    assert "access grant" in (tmp_path / "secrets" / "alice.access").read_text()
    checked = syncd(config, "check")  # reads the config; the empty secrets are what it reports
    assert checked.returncode == ExitCode.FATAL
    assert "valid, 2 pair(s)" in checked.stdout
    assert "secret file" in checked.stderr and "alice.webdav is empty" in checked.stderr


def test_an_existing_config_is_never_overwritten(tmp_path: Path) -> None:
    config = tmp_path / "syncd.toml"
    config.write_text("# mine\n")
    done = syncd(config, "init", "--datadir", str(tmp_path), "--user", "alice", "--bucket-dir", str(tmp_path / "b"))
    assert done.returncode == ExitCode.FATAL
    assert done.stderr.count("\n") == 1 and "exists already" in done.stderr
    assert config.read_text() == "# mine\n"


def test_bad_choices_are_usage_errors(tmp_path: Path) -> None:
    config = tmp_path / "syncd.toml"
    bad_name = syncd(config, "init", "--datadir", str(tmp_path), "--user", "../x")
    assert bad_name.returncode == ExitCode.USAGE and "not a valid user name" in bad_name.stderr
    both = syncd(config, "init", "--datadir", str(tmp_path), "--nextcloud", "https://x", "--user", "a")
    assert both.returncode == ExitCode.USAGE  # argparse: one or the other
    not_url = syncd(config, "init", "--nextcloud", "cloud.example.com", "--user", "a")
    assert not_url.returncode == ExitCode.USAGE and "not an http(s) URL" in not_url.stderr
    assert not config.exists()
