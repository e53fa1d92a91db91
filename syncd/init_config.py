"""``syncd init``: a commented config for the users given, and their empty secret files.

:func:`render_config` is pure (text from choices); :func:`write_config` writes the config
(never over an existing one) and the secret files (mode 0600, holding only a comment that
says what to put there: lines starting with ``#`` are not part of a secret).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from syncd.errors import ConfigError


@dataclass(frozen=True, slots=True)
class InitChoices:
    users: tuple[str, ...]
    nextcloud: str | None = None  # https://cloud.example.com (WebDAV) ...
    datadir: Path | None = None  # ... or a local Nextcloud data dir (<datadir>/<user>/files)
    bucket_dir: Path | None = None  # embedded `dir` buckets (<bucket_dir>/<user>) instead of Storj
    state_dir: Path = Path("/var/lib/syncd")
    socket: Path = Path("/run/syncd/control.sock")
    secrets_dir: Path = Path("secrets")  # relative: next to the config file


@dataclass(frozen=True, slots=True)
class SecretFile:
    path: Path  # as written in the config (relative to the config's folder when not absolute)
    comment: str  # what to put there


def bucket_name(user: str) -> str:
    """A Storj bucket name for ``user``: lowercase letters, digits and dashes, 3-63 long."""
    slug = re.sub(r"[^a-z0-9-]+", "-", user.lower()).strip("-") or "user"
    return f"nextcloud-{slug}"[:63].rstrip("-")


def dav_url(nextcloud: str, user: str) -> str:
    """``https://cloud.example.com`` -> ``https://cloud.example.com/remote.php/dav/files/USER/``."""
    base = nextcloud.rstrip("/")
    if "/remote.php/" in base:
        base = base.split("/remote.php/", 1)[0]
    return f"{base}/remote.php/dav/files/{user}/"


def _toml(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _secret(choices: InitChoices, name: str) -> Path:
    return choices.secrets_dir / name


def secret_files(choices: InitChoices) -> list[SecretFile]:
    """The secret files the config refers to, with what each must hold."""
    files = []
    for user in choices.users:
        if choices.nextcloud is not None:
            files.append(
                SecretFile(
                    _secret(choices, f"{user}.webdav"),
                    f"# The Nextcloud app password of {user} (Settings > Security > Devices & sessions),\n"
                    "# on one line below. Lines starting with # are ignored.\n",
                )
            )
        if choices.bucket_dir is None:
            files.append(
                SecretFile(
                    _secret(choices, f"{user}.access"),
                    f"# The Storj access grant for bucket {bucket_name(user)} (Storj console > Access >\n"
                    "# Create access grant, or `uplink share`), on one line below.\n"
                    "# Lines starting with # are ignored.\n",
                )
            )
    return files


def render_config(choices: InitChoices, today: date) -> str:
    """The config text: the daemon section and one section per user, commented."""
    check_choices(choices)
    lines = [
        f"# syncd config, written by `syncd init` on {today.isoformat()} for {', '.join(choices.users)}.",
        "# Each [users.NAME] section is one pair: the user's files (side A) and a bucket (side B).",
        "# Secrets are never in this file: *_file keys name files (relative to this file's folder,",
        "# or systemd's $CREDENTIALS_DIRECTORY). After editing: `syncd check --config THIS_FILE`.",
        "",
        "[daemon]",
        f"state_dir = {_toml(choices.state_dir)}  # indexes, locks, the local trash: one folder per user and pair",
        f"socket = {_toml(choices.socket)}  # `syncd now`, `status`, `pause` talk to the service here",
        'interval = "5m"  # each pair syncs this often, and at once on local changes and `syncd now`',
        "# transfers = 4  # files moved at once per pair",
        '# bwlimit = "8M"  # bytes/s for all pairs together; "10M:1M" up:down; a timetable: "08:00,512K 19:00,off"',
        "",
    ]
    for user in choices.users:
        lines += _user_section(choices, user)
    return "\n".join(lines)


def _user_section(choices: InitChoices, user: str) -> list[str]:
    key = user if re.fullmatch(r"[A-Za-z0-9_-]+", user) else _toml(user)  # TOML's bare keys
    lines = [f"[users.{key}]"]
    if choices.nextcloud is not None:
        password = _secret(choices, f"{user}.webdav")
        lines += [
            "# Nextcloud over WebDAV: an app password, not the login password.",
            f'files = {{ type = "webdav", url = {_toml(dav_url(choices.nextcloud, user))}, '
            f"username = {_toml(user)}, password_file = {_toml(password)} }}",
        ]
    else:
        assert choices.datadir is not None
        folder = choices.datadir / user / "files"
        lines += [
            "# The user's folder in the Nextcloud data dir. So that Nextcloud sees what syncd writes, add:",
            f'files = {{ type = "local", path = {_toml(folder)} }}',
            '# files = { type = "local", path = "...", scan_command = ["sudo", "-u", "www-data", "php",',
            '#          "/var/www/nextcloud/occ", "files:scan", "--path={path}"] }',
        ]
    if choices.bucket_dir is not None:
        lines += [
            "# A bucket kept in a local folder (the embedded default; for trying syncd out).",
            f'bucket = {{ type = "dir", path = {_toml(choices.bucket_dir / user)} }}',
        ]
    else:
        grant = _secret(choices, f"{user}.access")
        lines += [
            "# Storj (native libuplink): one bucket per user; create_bucket makes it on the first run.",
            f'bucket = {{ type = "storj", bucket = {_toml(bucket_name(user))}, '
            f"access_grant_file = {_toml(grant)}, create_bucket = true }}",
        ]
    lines += [
        'conflict = "keep-both"  # or "newer", "prefer-files", "prefer-bucket"',
        "# trash_retention_days = 30  # deleted and overwritten versions are kept this long (`syncd restore`)",
        '# bwlimit = "off"  # this pair\'s own limit (bytes/s or a timetable), on top of [daemon] bwlimit',
        "",
    ]
    return lines


def check_choices(choices: InitChoices) -> None:
    """:raises ConfigError: no users, a bad user name, or not exactly one files source."""
    from syncd.config import NAME_RE

    if not choices.users:
        raise ConfigError("init: give at least one --user")
    for user in choices.users:
        if not NAME_RE.match(user):
            raise ConfigError(f"init: {user!r} is not a valid user name (letters, digits, . _ @ -)")
    if len(set(choices.users)) != len(choices.users):
        raise ConfigError("init: a --user is given twice")
    if (choices.nextcloud is None) == (choices.datadir is None):
        raise ConfigError("init: give either --nextcloud URL or --datadir PATH")
    if choices.nextcloud is not None and not re.match(r"^https?://[^/\s]+", choices.nextcloud):
        raise ConfigError(f"init: --nextcloud {choices.nextcloud!r} is not an http(s) URL")


def write_config(path: Path, choices: InitChoices, today: date) -> list[Path]:
    """Write the config at ``path`` (never over an existing file) and each secret file that
    does not exist yet (0600, a comment of what to put there). :returns: the secret files
    created. :raises ConfigError: ``path`` exists, or cannot be written."""
    text = render_config(choices, today)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8") as out:
            out.write(text)
    except FileExistsError:
        raise ConfigError(f"{path}: exists already; syncd init never overwrites a config (move it first)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the config: {exc.strerror or exc}") from None
    return _write_secrets(path.parent, secret_files(choices))


def _write_secrets(folder: Path, files: Sequence[SecretFile]) -> list[Path]:
    created = []
    for secret in files:
        target = secret.path if secret.path.is_absolute() else folder / secret.path
        try:
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue  # an existing secret is kept as it is
        except OSError as exc:
            raise ConfigError(f"{target}: cannot create the secret file: {exc.strerror or exc}") from None
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(secret.comment)
        os.chmod(target, 0o600)  # whatever the umask
        created.append(target)
    return created


def next_steps(path: Path, created: Sequence[Path], choices: InitChoices) -> list[str]:
    """What the admin does next, one line each."""
    steps = [f"wrote {path}"]
    if created:
        steps.append("1. put each secret in its file (mode 0600; lines starting with # are ignored):")
        steps += [f"     {secret}" for secret in created]
    else:
        steps.append("1. nothing secret to fill in")
    if choices.datadir is not None:
        steps.append("   in a Nextcloud data dir, uncomment scan_command so that Nextcloud sees syncd's changes")
    steps += [
        f"2. check it: syncd check --config {path}",
        f"3. a first sync, watched: syncd now --config {path}",
        "4. run the service: syncd install-service (or see packaging/README-service.md), then `syncd status`",
    ]
    return steps
