"""Config loading: the DESIGN.md shape works as written; bad input gets one clear line that
names the file, the key and the problem; secrets are read by reference and never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.config import load_config, parse_duration
from syncd.errors import ConfigError, FatalError
from syncd.models import ConflictPolicy, Mode
from syncd.remotes.settings import read_secret

GOOD = """
[daemon]
state_dir = "state"
interval = "10m"

[users.alice]
files  = { type = "local", path = "alice-files" }
bucket = { type = "dir", path = "buckets/alice" }
conflict = "newer"
exclude = ["*.iso"]

[users.alice.pairs.dumps]
files  = { type = "local", path = "/var/backups/db" }
bucket = { type = "dir", path = "buckets/dumps" }
mode   = "upload-only"

[users.bob]
files  = { type = "local", path = "bob" }
bucket = { type = "dir", path = "buckets/bob" }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "syncd.toml"
    path.write_text(text)
    return path


def test_design_shape_loads_with_pairs_inheriting_user_settings(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    pairs = {p.key: p for p in config.pairs}
    assert set(pairs) == {"alice/default", "alice/dumps", "bob/default"}
    dumps = pairs["alice/dumps"]
    assert dumps.mode is Mode.UPLOAD_ONLY
    assert dumps.policy is ConflictPolicy.NEWER  # inherited from the user
    assert dumps.excludes("x/big.iso") and dumps.excludes("a.part")  # user's + defaults
    assert pairs["bob/default"].policy is ConflictPolicy.KEEP_BOTH
    assert pairs["alice/default"].interval_s == 600
    assert pairs["alice/default"].state_dir == (tmp_path / "state" / "alice" / "default").resolve()
    files = pairs["alice/default"].files
    assert files.path == (tmp_path / "alice-files").resolve()  # relative to the config


def test_select_by_user_and_pair(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert [p.key for p in config.select("alice")] == ["alice/default", "alice/dumps"]
    assert [p.key for p in config.select("alice/dumps")] == ["alice/dumps"]
    with pytest.raises(ConfigError, match="no pair 'carol'"):
        config.select("carol")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[users.a\nfiles = 1", "not valid TOML"),
        (
            "[users.a]\nfiles = { type = 'local', path = 'x' }\nbucket = { type = 'dir', path = 'y' }\ncolour = 1",
            "users.a.colour: unknown key",
        ),
        (
            "[users.a]\nfiles = { type = 'ftp', path = 'x' }\nbucket = { type = 'dir', path = 'y' }",
            "users.a.files.type: 'ftp' is not a remote type",
        ),
        (
            "[users.a]\nfiles = { type = 'local' }\nbucket = { type = 'dir', path = 'y' }",
            "users.a.files.path: missing (required)",
        ),
        (
            "[users.a]\nfiles = { type = 'local', path = 'x', speed = 3 }\nbucket = { type = 'dir', path = 'y' }",
            "users.a.files.speed: unknown key",
        ),
        ("[users.a]\nfiles = { type = 'local', path = 'x' }", "users.a.bucket: missing"),
        (
            "[users.a]\nfiles = { type = 'local', path = 'x' }\nbucket = { type = 'dir', path = 'y' }\n"
            "conflict = 'coin'",
            "users.a.conflict",
        ),
        ("[daemon]\ninterval = 'soon'", "daemon.interval"),
        (
            "[users.'../etc']\nfiles = { type = 'local', path = 'x' }\nbucket = { type = 'dir', path = 'y' }",
            "not a valid name",
        ),
        (
            "[users.a]\nfiles = { type = 'local', path = 'x' }\nbucket = { type = 'dir', path = 'y' }\n"
            "max_delete_ratio = 3",
            "users.a.max_delete_ratio",
        ),
    ],
)
def test_bad_config_names_file_key_and_problem(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message
    assert expected in message
    assert "\n" not in message


def test_missing_config_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_secret_from_file_env_and_credentials_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    assert read_secret(file=tmp_path / "pw", env=None, what="x") == "s3cret"
    monkeypatch.setenv("SYNCD_TEST_PW", "from-env")
    assert read_secret(file=None, env="SYNCD_TEST_PW", what="x") == "from-env"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "alice.webdav").write_text("from-systemd")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert read_secret(file=Path("alice.webdav"), env=None, what="x") == "from-systemd"


def test_missing_secret_names_the_reference_never_a_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FatalError, match=r"secret file .*/missing does not exist"):
        read_secret(file=tmp_path / "missing", env=None, what="alice files")
    monkeypatch.delenv("SYNCD_NOPE", raising=False)
    with pytest.raises(FatalError, match="environment variable SYNCD_NOPE is not set"):
        read_secret(file=None, env="SYNCD_NOPE", what="alice files")


def test_durations() -> None:
    assert [parse_duration(x) for x in ("90", "30s", "5m", "2h", "1d")] == [90, 30, 300, 7200, 86400]
    with pytest.raises(ValueError):
        parse_duration("5 minutes")


# DESIGN.md's config example, verbatim: an admin following that page must get a working config.
DESIGN_EXAMPLE = """
[daemon]
state_dir = "/var/lib/syncd"
socket = "/run/syncd/control.sock"
interval = "5m"

[users.alice]
files  = { type = "webdav", url = "https://cloud.example.com/remote.php/dav/files/alice/",
           username = "alice", password_file = "/etc/syncd/secrets/alice.webdav" }
bucket = { type = "storj", access_grant_file = "/etc/syncd/secrets/alice.access",
           bucket = "nextcloud", prefix = "alice/" }
conflict = "keep-both"
exclude = ["*.part", ".~lock.*#", "Thumbs.db"]

[users.alice.pairs.dumps]          # more pairs of one user; the user's own files/bucket is pair "default"
files  = { type = "local", path = "/var/backups/nextcloud-db" }
bucket = { type = "storj", access_grant_file = "/etc/syncd/secrets/alice.access", bucket = "db", prefix = "alice/" }
mode   = "upload-only"             # two-way (default) | upload-only | download-only

[users.demo]                       # the embedded default: no credentials
files  = { type = "local", path = "./demo/files" }
bucket = { type = "dir",   path = "./demo/bucket" }
"""


def test_the_design_example_config_loads_as_written(tmp_path: Path) -> None:
    # One thing in it cannot work: Storj bucket names have 3 to 63 characters. syncd says so
    # when it reads the config, naming the key, rather than when it first meets the satellite.
    with pytest.raises(ConfigError, match=r"users.alice.pairs.dumps.bucket.bucket: expected `str` of length >= 3"):
        load_config(write(tmp_path, DESIGN_EXAMPLE))
    config = load_config(write(tmp_path, DESIGN_EXAMPLE.replace('bucket = "db"', 'bucket = "dbs"')))
    assert [p.key for p in config.pairs] == ["alice/default", "alice/dumps", "demo/default"]
    assert config.daemon.state_dir == Path("/var/lib/syncd")
    alice = config.pairs[0]
    assert alice.files.type == "webdav" and alice.files.username == "alice"
    assert alice.bucket.prefix == "alice/"
    assert config.pairs[1].mode is Mode.UPLOAD_ONLY
    assert config.pairs[2].files.path == (tmp_path / "demo" / "files").resolve()


def test_the_readme_and_packaged_example_configs_load(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    readme = (repo / "README.md").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    assert load_config(write(tmp_path, block)).pairs
    for example in (repo / "packaging" / "examples").glob("*.toml"):
        assert load_config(example).pairs, example


# -- no two users share a place ----------------------------------------------------------------

STORJ = '{{ type = "storj", access_grant_env = "G", bucket = "{bucket}", prefix = "{prefix}" }}'
WEBDAV = '{{ type = "webdav", url = "{url}", username = "{user}", password_env = "P" }}'


def two_users(alice_bucket: str, bob_bucket: str, *, alice_files: str = "", bob_files: str = "") -> str:
    alice_files = alice_files or '{ type = "local", path = "alice" }'
    bob_files = bob_files or '{ type = "local", path = "bob" }'
    return (
        f'[daemon]\nstate_dir = "state"\n[users.alice]\nfiles = {alice_files}\nbucket = {alice_bucket}\n'
        f"[users.bob]\nfiles = {bob_files}\nbucket = {bob_bucket}\n"
    )


def storj(bucket: str, prefix: str) -> str:
    return STORJ.format(bucket=bucket, prefix=prefix)


@pytest.mark.parametrize(
    ("alice", "bob"),
    [("", ""), ("", "bob/"), ("bob", ""), ("alice/", "alice/"), ("team/", "team/bob/"), ("team/bob", "team")],
)
def test_overlapping_bucket_prefixes_of_two_users_are_refused_both_ways(tmp_path: Path, alice: str, bob: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, two_users(storj("shared", alice), storj("shared", bob))))
    message = str(caught.value)
    assert "alice/default bucket" in message and "bob/default bucket" in message
    assert "storj bucket 'shared'" in message and "one user's files would reach another user" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("alice", "bob"),
    [
        (storj("shared", "alice/"), storj("shared", "bob/")),
        (storj("shared", "alice/"), storj("shared", "alice2/")),
        (storj("one", ""), storj("two", "")),
    ],
)
def test_distinct_buckets_or_prefixes_are_fine(tmp_path: Path, alice: str, bob: str) -> None:
    assert len(load_config(write(tmp_path, two_users(alice, bob))).pairs) == 2


def test_same_dir_bucket_or_nested_files_roots_are_refused(tmp_path: Path) -> None:
    dir_bucket = '{ type = "dir", path = "buckets/shared" }'
    with pytest.raises(ConfigError, match=r"alice/default bucket \(folder .*buckets/shared\) and bob/default bucket"):
        load_config(write(tmp_path, two_users(dir_bucket, dir_bucket)))
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")  # one folder under two names
    nested = two_users(
        '{ type = "dir", path = "b1" }',
        '{ type = "dir", path = "b2" }',
        alice_files='{ type = "local", path = "real" }',
        bob_files='{ type = "local", path = "alias/bob" }',
    )
    with pytest.raises(ConfigError, match=r"alice/default files .* and bob/default files"):
        load_config(write(tmp_path, nested))


def test_webdav_trees_overlap_by_url_and_user(tmp_path: Path) -> None:
    base = "https://cloud.example.com/remote.php/dav/files/"
    bucket = ('{ type = "dir", path = "b1" }', '{ type = "dir", path = "b2" }')
    alias = "https://CLOUD.example.com:443/remote.php/dav/files/alice"  # the same folder, written otherwise
    same = two_users(
        *bucket,
        alice_files=WEBDAV.format(url=base + "alice/", user="alice"),
        bob_files=WEBDAV.format(url=alias, user="alice"),
    )
    with pytest.raises(ConfigError, match="webdav"):
        load_config(write(tmp_path, same))
    nested = two_users(
        *bucket,
        alice_files=WEBDAV.format(url=base + "alice/", user="alice"),
        bob_files=WEBDAV.format(url=base + "alice/Shared/", user="bob"),
    )
    with pytest.raises(ConfigError, match="webdav"):
        load_config(write(tmp_path, nested))
    # Pydio Cells serves each user their own tree at one URL: the username tells them apart
    cells = two_users(
        *bucket,
        alice_files=WEBDAV.format(url="https://cells.example.com/dav/", user="alice"),
        bob_files=WEBDAV.format(url="https://cells.example.com/dav/", user="bob"),
    )
    assert len(load_config(write(tmp_path, cells)).pairs) == 2


def test_a_pair_never_syncs_into_itself_nor_into_the_state_folder(tmp_path: Path) -> None:
    inside = '[users.a]\nfiles = { type = "local", path = "tree" }\nbucket = { type = "dir", path = "tree/bucket" }\n'
    with pytest.raises(ConfigError, match=r"a/default files .* and a/default bucket .* would sync into itself"):
        load_config(write(tmp_path, inside))
    holds_state = (
        '[daemon]\nstate_dir = "tree/state"\n[users.a]\nfiles = { type = "local", path = "tree" }\n'
        'bucket = { type = "dir", path = "bucket" }\n'
    )
    with pytest.raises(ConfigError, match=r"a/default files .* and the state folder .* overlap: syncd's indexes"):
        load_config(write(tmp_path, holds_state))


def test_allow_overlap_is_for_one_users_own_pairs_only(tmp_path: Path) -> None:
    own = """
[users.alice]
files  = { type = "local", path = "docs" }
bucket = { type = "storj", access_grant_env = "G", bucket = "main" }
allow_overlap = true
[users.alice.pairs.mirror]
files  = { type = "local", path = "docs" }
bucket = { type = "storj", access_grant_env = "G", bucket = "mirror" }
"""
    assert len(load_config(write(tmp_path, own)).pairs) == 2
    with pytest.raises(ConfigError, match="set allow_overlap = true on both pairs"):
        load_config(write(tmp_path, own.replace("allow_overlap = true", "")))
    across = (
        two_users(storj("shared", ""), storj("shared", "")).replace("[users.bob]", "allow_overlap = true\n[users.bob]")
        + "allow_overlap = true\n"
    )
    with pytest.raises(ConfigError, match="one user's files would reach another user"):
        load_config(write(tmp_path, across))


def test_every_remote_type_has_an_overlap_rule() -> None:
    from syncd.config import LOCATIONS
    from syncd.remotes import REMOTE_MODULES

    assert set(LOCATIONS) == set(REMOTE_MODULES)


def test_a_folder_or_unreadable_path_as_config_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder, not a config file"):
        load_config(tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="cannot read the config file: Not a directory"):
        load_config(tmp_path / "file" / "syncd.toml")
