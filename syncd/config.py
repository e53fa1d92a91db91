"""The TOML config: one ``[users.NAME]`` section per user, validated on load.

Every error names the file, the key and what is wrong. Secrets are never inline: remotes take
``*_file`` (relative names are looked up in systemd's ``$CREDENTIALS_DIRECTORY``, then next
to the config file) or ``*_env`` keys.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from syncd.errors import ConfigError
from syncd.models import ConflictPolicy, Mode
from syncd.paths import DEFAULT_EXCLUDES, Excludes
from syncd.remotes import REMOTE_MODULES, remote_module
from syncd.remotes.settings import RemoteSettings

DEFAULT_CONFIG = Path("/etc/syncd/syncd.toml")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
DURATION_RE = re.compile(r"^\s*(\d+)\s*(s|m|h|d)?\s*$")


def parse_duration(text: str) -> float:
    """``"90"``, ``"30s"``, ``"5m"``, ``"2h"``, ``"1d"`` -> seconds."""
    match = DURATION_RE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration (e.g. 30s, 5m, 2h, 1d)")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2) or "s"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DaemonSection(_Strict):
    state_dir: Path = Path("/var/lib/syncd")
    socket: Path = Path("/run/syncd/control.sock")
    interval: str = "5m"
    transfers: int = Field(default=4, ge=1, le=64)

    @field_validator("interval")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value


class PairSection(_Strict):
    """Keys a pair may set; a user's own keys are the defaults of its pairs."""

    files: dict[str, Any] | None = None
    bucket: dict[str, Any] | None = None
    conflict: ConflictPolicy | None = None
    mode: Mode | None = None
    exclude: list[str] | None = None
    default_excludes: bool | None = None
    max_delete_ratio: float | None = Field(default=None, gt=0, le=1)
    trash_retention_days: int | None = Field(default=None, ge=0)
    transfers: int | None = Field(default=None, ge=1, le=64)
    interval: str | None = None


class UserSection(PairSection):
    pairs: dict[str, PairSection] = Field(default_factory=dict)


class ConfigFile(_Strict):
    daemon: DaemonSection = DaemonSection()
    users: dict[str, UserSection] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PairConfig:
    user: str
    name: str
    files: RemoteSettings
    bucket: RemoteSettings
    policy: ConflictPolicy
    mode: Mode
    excludes: Excludes
    max_delete_ratio: float
    trash_retention_days: int
    transfers: int
    interval_s: float
    state_dir: Path

    @property
    def key(self) -> str:
        return f"{self.user}/{self.name}"

    @property
    def index_path(self) -> Path:
        return self.state_dir / "index.db"


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    daemon: DaemonSection
    pairs: tuple[PairConfig, ...]

    def select(self, target: str | None) -> list[PairConfig]:
        """Pairs named by ``USER`` or ``USER/PAIR`` (all when None). :raises ConfigError:"""
        if not target:
            return list(self.pairs)
        user, _, pair = target.partition("/")
        chosen = [p for p in self.pairs if p.user == user and (not pair or p.name == pair)]
        if not chosen:
            known = ", ".join(p.key for p in self.pairs) or "none"
            raise ConfigError(f"{self.path}: no pair {target!r} in the config (known: {known})")
        return chosen


def config_path(cli_value: str | None) -> Path:
    return Path(cli_value or os.environ.get("SYNCD_CONFIG") or DEFAULT_CONFIG)


def load_config(path: Path) -> Config:
    """Read and validate ``path``. :raises ConfigError: naming the file, key and problem."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (use --config or $SYNCD_CONFIG)") from None
    except PermissionError:
        raise ConfigError(f"{path}: no permission to read the config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        parsed = ConfigFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_first_error(path, exc)) from None
    folder = path.parent.resolve()
    state_dir = _resolve(folder, parsed.daemon.state_dir)
    daemon = parsed.daemon.model_copy(update={"state_dir": state_dir})
    pairs = []
    for user, section in parsed.users.items():
        _check_name(path, f"users.{user}", user)
        own = section.model_dump(exclude={"pairs"}, exclude_none=True)
        if section.files is not None or section.bucket is not None:
            pairs.append(_pair(path, folder, daemon, user, "default", own, f"users.{user}"))
        for name, pair_section in section.pairs.items():
            where = f"users.{user}.pairs.{name}"
            _check_name(path, where, name)
            merged = {**own, **pair_section.model_dump(exclude_none=True)}
            pairs.append(_pair(path, folder, daemon, user, name, merged, where))
    return Config(path=path, daemon=daemon, pairs=tuple(pairs))


def _check_name(path: Path, where: str, name: str) -> None:
    if not NAME_RE.match(name) or name in (".", ".."):
        raise ConfigError(f"{path}: {where}: {name!r} is not a valid name (letters, digits, . _ @ -)")


def _pair(
    path: Path, folder: Path, daemon: DaemonSection, user: str, name: str, keys: dict[str, Any], where: str
) -> PairConfig:
    for side in ("files", "bucket"):
        if keys.get(side) is None:
            raise ConfigError(f"{path}: {where}.{side}: missing (an inline table with a 'type')")
    patterns = list(DEFAULT_EXCLUDES) if keys.get("default_excludes", True) else []
    patterns += keys.get("exclude", [])
    interval = keys.get("interval", daemon.interval)
    try:
        interval_s = parse_duration(interval)
    except ValueError as exc:
        raise ConfigError(f"{path}: {where}.interval: {exc}") from None
    return PairConfig(
        user=user,
        name=name,
        files=_remote(path, folder, f"{where}.files", keys["files"]),
        bucket=_remote(path, folder, f"{where}.bucket", keys["bucket"]),
        policy=keys.get("conflict", ConflictPolicy.KEEP_BOTH),
        mode=keys.get("mode", Mode.TWO_WAY),
        excludes=Excludes(patterns),
        max_delete_ratio=keys.get("max_delete_ratio", 0.5),
        trash_retention_days=keys.get("trash_retention_days", 30),
        transfers=keys.get("transfers", daemon.transfers),
        interval_s=interval_s,
        state_dir=daemon.state_dir / user / name,
    )


def _remote(path: Path, folder: Path, where: str, spec: dict[str, Any]) -> RemoteSettings:
    kind = spec.get("type")
    if kind not in REMOTE_MODULES:
        known = ", ".join(sorted(REMOTE_MODULES))
        raise ConfigError(f"{path}: {where}.type: {kind!r} is not a remote type (one of: {known})")
    spec = dict(spec)
    for key, value in spec.items():
        if (key == "path" or key.endswith("_file")) and isinstance(value, str):
            spec[key] = str(_resolve_reference(folder, key, value))
    try:
        module = remote_module(kind)
    except ImportError as exc:
        raise ConfigError(f"{path}: {where}: remote type {kind!r} is not available: {exc}") from None
    try:
        settings: RemoteSettings = module.Settings.model_validate(spec)
    except ValidationError as exc:
        raise ConfigError(_first_error(path, exc, prefix=where)) from None
    return settings


def _resolve(folder: Path, value: Path) -> Path:
    return value if value.is_absolute() else (folder / value).resolve()


def _resolve_reference(folder: Path, key: str, value: str) -> Path:
    """Relative paths are relative to the config file; a relative secret file is first looked
    up in systemd's credentials folder (``LoadCredential=``)."""
    candidate = Path(value).expanduser()
    if candidate.is_absolute():
        return candidate
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if key.endswith("_file") and creds and (Path(creds) / candidate).exists():
        return Path(creds) / candidate
    return (folder / candidate).resolve()


def _first_error(path: Path, exc: ValidationError, prefix: str = "") -> str:
    problems = []
    for error in exc.errors()[:3]:
        key = ".".join(str(p) for p in error["loc"])
        key = f"{prefix}.{key}" if prefix and key else (prefix or key)
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        problems.append(f"{key}: {message}")
    more = f" (and {exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
    return f"{path}: " + "; ".join(problems) + more
