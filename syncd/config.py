"""The TOML config: one ``[users.NAME]`` section per user, validated on load.

Every error names the file, the key and what is wrong. Secrets are never inline: remotes take
``*_file`` (relative names are looked up in systemd's ``$CREDENTIALS_DIRECTORY``, then next
to the config file) or ``*_env`` keys.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import unquote, urlsplit

import msgspec
import tomli  # TOML 1.1: inline tables may span lines, as in DESIGN.md's examples

from syncd.bwlimit import Schedule, parse_bwlimit
from syncd.errors import ConfigError
from syncd.models import ConflictPolicy, Mode
from syncd.paths import DEFAULT_EXCLUDES, Excludes
from syncd.remotes import REMOTE_MODULES, remote_module
from syncd.remotes.settings import RemoteSettings

DEFAULT_CONFIG = Path("/etc/syncd/syncd.toml")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
DURATION_RE = re.compile(r"^\s*(\d+)\s*(s|m|h|d)?\s*$")
T = TypeVar("T")


def parse_duration(text: str) -> float:
    """``"90"``, ``"30s"``, ``"5m"``, ``"2h"``, ``"1d"`` -> seconds."""
    match = DURATION_RE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration (e.g. 30s, 5m, 2h, 1d)")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2) or "s"]


class _Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class DaemonSection(_Strict, frozen=True):
    state_dir: Path = Path("/var/lib/syncd")
    socket: Path = Path("/run/syncd/control.sock")
    interval: str = "5m"
    full_scan_interval: str = "1h"  # the default of every pair (see PairSection)
    transfers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 4
    # bytes/s for all pairs together ("8M", "10M:1M" up:down, "off", "08:00,512K 19:00,off",
    # "Mon-08:00,512K Fri-18:00,off"; syncd.bwlimit)
    bwlimit: str = "off"
    web: str | None = None  # the dashboard's "HOST:PORT" (README: Web dashboard); off when unset
    web_token_file: Path | None = None  # its access token; default: <state_dir>/web-token, made on first start
    # several daemons share the pairs through PostgreSQL (README: Past one host; syncd.cluster)
    cluster: str | None = None  # "postgresql://USER@HOST/DB"; with a password, use cluster_url_file
    cluster_url_file: Path | None = None  # a file holding that URL (a secret)
    host_name: str | None = None  # this daemon in the cluster; default $SYNCD_HOST_NAME, else the host's name

    @property
    def clustered(self) -> bool:
        return self.cluster is not None or self.cluster_url_file is not None

    def __post_init__(self) -> None:
        if self.cluster is not None and self.cluster_url_file is not None:
            raise ValueError("cluster: set cluster or cluster_url_file, not both")
        if self.cluster is not None and not self.cluster.startswith(("postgresql://", "postgres://", "postgresql+")):
            raise ValueError("cluster: not a postgresql:// URL")  # never echoed: it may hold a password
        try:
            parse_duration(self.interval)
        except ValueError as exc:
            raise ValueError(f"interval: {exc}") from None
        try:
            parse_duration(self.full_scan_interval)
        except ValueError as exc:
            raise ValueError(f"full_scan_interval: {exc}") from None
        try:
            parse_bwlimit(self.bwlimit)
        except ValueError as exc:
            raise ValueError(f"bwlimit: {exc}") from None
        if self.web is not None:
            host, _port = parse_web_address(self.web)
            if not ipaddress.ip_address(host).is_loopback and self.web_token_file is None:
                raise ValueError(
                    f"web: {self.web!r} is not a loopback address: set web_token_file too "
                    "(anyone who can reach the port must need that token)"
                )


def parse_web_address(text: str) -> tuple[str, int]:
    """``"127.0.0.1:8484"``, ``"[::1]:8484"`` or ``"8484"`` (loopback) -> (host, port): an IP
    address, not a name, so that whether it is loopback is known. :raises ValueError:"""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise ValueError(f"web: {text!r} is not HOST:PORT with an IP address (e.g. 127.0.0.1:8484)") from None
    if not 0 < number < 65536:
        raise ValueError(f"web: {text!r}: the port must be 1-65535")
    return host, number


class PairSection(_Strict, frozen=True):
    """Keys a pair may set; a user's own keys are the defaults of its pairs."""

    files: dict[str, Any] | None = None
    bucket: dict[str, Any] | None = None
    conflict: ConflictPolicy | None = None
    mode: Mode | None = None
    exclude: list[str] | None = None
    default_excludes: bool | None = None
    max_delete_ratio: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    trash_retention_days: Annotated[int, msgspec.Meta(ge=0)] | None = None
    transfers: Annotated[int, msgspec.Meta(ge=1, le=64)] | None = None
    interval: str | None = None
    bwlimit: str | None = None  # this pair's own limit, on top of the daemon's
    full_scan_interval: str | None = None  # list every side in full this often (default 1h)
    sole_writer: bool | None = None  # syncd alone writes the bucket prefix: a marker stands for a listing
    # This pair may share its files root or bucket location with this user's other pairs
    # that say so too (never with another user's, never between its own two sides).
    allow_overlap: bool | None = None


class UserSection(PairSection, frozen=True):
    pairs: dict[str, dict[str, Any]] = {}  # each validated as a PairSection, under its own name


class ConfigFile(_Strict, frozen=True):
    """The top level. Sections keyed by name are validated one by one, so that an error
    names the user and pair ("users.alice.pairs.dumps.mode"), which msgspec would not."""

    daemon: dict[str, Any] = {}
    users: dict[str, dict[str, Any]] = {}


def _decode_path(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(f"cannot read {kind}")


def validate(raw: Any, kind: type[T], path: Path, prefix: str = "") -> T:
    """``raw`` (parsed TOML) as a ``kind`` Struct. :raises ConfigError: file, key, problem."""
    try:
        return msgspec.convert(raw, kind, dec_hook=_decode_path)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(str(exc), prefix)}") from None


def _describe(message: str, prefix: str) -> str:
    """msgspec's ``Object contains unknown field `x` - at `$.users.a``` as ``users.a.x: unknown key``.
    Checks in ``__post_init__`` raise ``ValueError("field: problem")`` to name their field."""
    text, _, where = message.rpartition(" - at `")
    if not text:
        text, where = message, "$`"
    key = where.rstrip("`").removeprefix("$").lstrip(".")
    key = ".".join(k for k in (prefix, key) if k)
    field = re.search(r"field `([^`]+)`", text)
    if text.startswith("Object contains unknown field") and field:
        return f"{key}.{field.group(1)}: unknown key".lstrip(".")
    if text.startswith("Object missing required field") and field:
        return f"{key}.{field.group(1)}: missing (required)".lstrip(".")
    named = re.match(r"^([a-z_]+): (.*)$", text)  # a __post_init__ check: "field: problem"
    if named:
        return f"{key}.{named.group(1)}: {named.group(2)}".lstrip(".")
    return f"{key}: {text[:1].lower()}{text[1:]}" if key else text


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
    allow_overlap: bool = False
    bwlimit: Schedule | None = None  # the pair's own
    daemon_bwlimit: Schedule | None = None  # shared by every pair of the process
    full_scan_interval_s: float = 3600.0
    sole_writer: bool = False

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
    """Read and validate ``path``. :raises ConfigError: naming the file, key and problem,
    also when two pairs would share a location (see :func:`check_overlaps`)."""
    try:
        raw = tomli.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (use --config or $SYNCD_CONFIG)") from None
    except PermissionError:
        raise ConfigError(f"{path}: no permission to read the config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a config file (use --config FILE)") from None
    except OSError as exc:  # e.g. a file above it in the path, an I/O error
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    except tomli.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    parsed = validate(raw, ConfigFile, path)
    folder = path.parent.resolve()
    daemon = validate(parsed.daemon, DaemonSection, path, prefix="daemon")
    daemon = msgspec.structs.replace(
        daemon, state_dir=_resolve(folder, daemon.state_dir), socket=_resolve(folder, daemon.socket)
    )
    if daemon.web_token_file is not None:
        token = _resolve_reference(folder, "web_token_file", str(daemon.web_token_file))
        daemon = msgspec.structs.replace(daemon, web_token_file=token)
    if daemon.cluster_url_file is not None:
        url_file = _resolve_reference(folder, "cluster_url_file", str(daemon.cluster_url_file))
        daemon = msgspec.structs.replace(daemon, cluster_url_file=url_file)
    pairs = []
    for user, raw_section in parsed.users.items():
        where = f"users.{user}"
        _check_name(path, where, user)
        section = validate(raw_section, UserSection, path, prefix=where)
        own = _set_keys(section)
        own.pop("pairs", None)
        if section.files is not None or section.bucket is not None:
            pairs.append(_pair(path, folder, daemon, user, "default", own, where))
        for name, raw_pair in section.pairs.items():
            pair_where = f"{where}.pairs.{name}"
            _check_name(path, pair_where, name)
            pair_section = validate(raw_pair, PairSection, path, prefix=pair_where)
            pairs.append(_pair(path, folder, daemon, user, name, {**own, **_set_keys(pair_section)}, pair_where))
    check_overlaps(path, daemon.state_dir, pairs)
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
    try:
        full_scan_s = parse_duration(keys.get("full_scan_interval", daemon.full_scan_interval))
    except ValueError as exc:
        raise ConfigError(f"{path}: {where}.full_scan_interval: {exc}") from None
    try:
        bwlimit = parse_bwlimit(keys["bwlimit"]) if "bwlimit" in keys else None
    except ValueError as exc:
        raise ConfigError(f"{path}: {where}.bwlimit: {exc}") from None
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
        allow_overlap=keys.get("allow_overlap", False),
        bwlimit=bwlimit,
        daemon_bwlimit=parse_bwlimit(daemon.bwlimit),
        full_scan_interval_s=full_scan_s,
        sole_writer=keys.get("sole_writer", False),
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
    settings: RemoteSettings = validate(spec, module.Settings, path, prefix=where)
    return settings


def _set_keys(section: msgspec.Struct) -> dict[str, Any]:
    return {k: v for k, v in msgspec.structs.asdict(section).items() if v is not None}


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


# -- where pairs keep their files: no two users may share a place ------------------------------


@dataclass(frozen=True, slots=True)
class Location:
    """Where one side of a pair keeps its files, for the overlap check.

    Two locations overlap when they are in the same ``space`` (the local file system; one
    bucket of one service; one WebDAV server) and one ``inside`` (a "/"-terminated path or key
    prefix, "" for a whole bucket) equals or holds the other. Equal WebDAV URLs overlap only
    for the same ``owner`` (username): Pydio Cells serves each user their own tree at ``/dav/``.
    """

    space: tuple[str, ...]
    inside: str
    text: str  # how messages name it: "folder /srv/x", "storj bucket 'b' prefix 'alice/'"
    owner: str = ""

    def overlaps(self, other: Location) -> bool:
        if self.space != other.space:
            return False
        if self.inside == other.inside:
            return self.owner == other.owner
        return self.inside.startswith(other.inside) or other.inside.startswith(self.inside)


@dataclass(frozen=True, slots=True)
class _Placed:
    """One location and the pair side that keeps its files there."""

    where: Location
    pair: PairConfig | None  # None: syncd's own state folder
    side: str

    @property
    def label(self) -> str:
        return f"{self.pair.key} {self.side}" if self.pair is not None else "the state folder"


def _folder(path: Path) -> Location:
    real = os.path.realpath(path)  # a symlink or ".." must not hide that two paths are one
    return Location(("fs",), real.rstrip("/") + "/", f"folder {real}")


def _bucket_prefix(prefix: str) -> str:
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def _storj(settings: Any) -> Location:
    # Bucket names are per project and a grant's project is not known without reading the
    # secret: the same name is taken as the same bucket (distinct prefixes resolve it).
    prefix = _bucket_prefix(settings.prefix)
    return Location(("storj", settings.bucket), prefix, f"storj bucket {settings.bucket!r} prefix {prefix!r}")


def _s3(settings: Any) -> Location:
    endpoint = urlsplit(settings.endpoint).netloc.lower() if settings.endpoint else f"default:{settings.preset}"
    prefix = _bucket_prefix(settings.prefix)
    text = f"s3 bucket {settings.bucket!r} at {endpoint} prefix {prefix!r}"
    return Location(("s3", endpoint, settings.bucket), prefix, text)


def _webdav(settings: Any) -> Location:
    parts = urlsplit(settings.url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    # "%7e" and "~", "a//b" and "a/b" name one folder on every server syncd knows
    segments = [unquote(s) for s in parts.path.split("/") if s and s != "."]
    inside = "/" + "".join(f"{s}/" for s in segments)
    host = (parts.hostname or "").lower()
    return Location(
        ("webdav", host, str(port)),
        inside,
        f"webdav {settings.url} (user {settings.username!r})",
        owner=settings.username,
    )


LOCATIONS: dict[str, Callable[[Any], Location]] = {
    "local": lambda settings: _folder(settings.path),
    "dir": lambda settings: _folder(settings.path),
    "storj": _storj,
    "s3": _s3,
    "webdav": _webdav,
}


def _placed(state_dir: Path, pairs: Iterable[PairConfig]) -> Iterator[_Placed]:
    yield _Placed(_folder(state_dir), None, "")
    for pair in pairs:
        for side, settings in (("files", pair.files), ("bucket", pair.bucket)):
            yield _Placed(LOCATIONS[settings.type](settings), pair, side)


def check_overlaps(path: Path, state_dir: Path, pairs: Iterable[PairConfig]) -> None:
    """Refuse a config where two pair sides keep files in one place (same folder or bucket
    prefix, or one inside the other), or where one holds or lies in the state folder: a
    file of one would be synced into the other. One user's pairs may overlap when both set
    ``allow_overlap``; another user's, a pair's own two sides and the state folder never.

    :raises ConfigError: naming both pair sides and the locations.
    """
    spaces: dict[tuple[str, ...], list[_Placed]] = {}
    for placed in _placed(state_dir, pairs):
        spaces.setdefault(placed.where.space, []).append(placed)
    for members in spaces.values():
        # Sorted, every place that holds another comes right before it or is still on the
        # chain of its ancestors: n log n, not every pair against every pair.
        chain: list[_Placed] = []
        for placed in sorted(members, key=lambda m: m.where.inside):
            while chain and not placed.where.inside.startswith(chain[-1].where.inside):
                chain.pop()
            for earlier in chain:
                if earlier.where.overlaps(placed.where) and not _allowed(earlier, placed):
                    raise ConfigError(f"{path}: {_overlap_message(earlier, placed)}")
            chain.append(placed)


def _allowed(one: _Placed, other: _Placed) -> bool:
    if one.pair is None or other.pair is None or one.pair is other.pair:
        return False
    return one.pair.user == other.pair.user and one.pair.allow_overlap and other.pair.allow_overlap


def _overlap_message(one: _Placed, other: _Placed) -> str:
    both = f"{one.label} ({one.where.text}) and {other.label} ({other.where.text})"
    if one.pair is None or other.pair is None:
        return (
            f"{both} overlap: syncd's indexes and every user's trash are kept in the state folder; "
            "keep files roots and dir buckets out of it and it out of them"
        )
    if one.pair is other.pair:
        return f"{both} overlap: the pair would sync into itself"
    if one.pair.user != other.pair.user:
        return (
            f"{both} overlap: one user's files would reach another user; "
            "give each user their own folder, bucket or prefix"
        )
    return (
        f"{both} overlap: each pair would sync the other's files; if {one.pair.user} wants this, "
        f"set allow_overlap = true on both pairs (or in [users.{one.pair.user}])"
    )
