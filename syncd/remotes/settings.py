"""What every remote's config section shares, and how secrets are read.

Each remote module defines ``class Settings(RemoteSettings)`` (a msgspec Struct with
``type: Literal[...]``; checks beyond types go in ``__post_init__`` raising ValueError) and
``def open_remote(settings: Settings, ctx: OpenContext) -> Remote``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import msgspec

from syncd.errors import FatalError
from syncd.paths import TEMP_PREFIX


class RemoteSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    type: str


@dataclass(frozen=True, slots=True)
class OpenContext:
    """What a remote may need from the pair it serves."""

    label: str  # "alice/default files": for messages
    state_dir: Path  # the pair's own state folder (local trash, caches)
    exclusive: bool = False  # opened by a run holding the pair's lock: leftovers may be swept

    @property
    def temp_prefix(self) -> str:
        """How this pair's temp files are named, so it tells its own leftovers (a run killed
        mid-write) from another pair's writes in flight."""
        return f"{TEMP_PREFIX}{hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:8]}-"


def secret_text(text: str) -> str:
    """A secret file's secret: its text without lines starting with ``#`` (``syncd init``
    writes one saying what belongs there), stripped."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")).strip()


def read_secret(*, file: Path | None, env: str | None, what: str) -> str:
    """Read a secret by reference: a file (relative names are looked up in systemd's
    ``$CREDENTIALS_DIRECTORY`` first) or an environment variable. Never logs the value.

    :raises FatalError: the reference is missing or unreadable (the message names it,
        never the secret).
    """
    if file is not None:
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        candidates = [file]
        if creds and not file.is_absolute():
            candidates.insert(0, Path(creds) / file)
        for candidate in candidates:
            try:
                text = candidate.read_text(encoding="utf-8")
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise FatalError(f"{what}: cannot read secret file {candidate}: {exc.strerror}") from exc
            secret = secret_text(text)
            if not secret:
                raise FatalError(f"{what}: secret file {candidate} is empty (put the secret in it, on its own line)")
            return secret
        raise FatalError(f"{what}: secret file {file} does not exist")
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise FatalError(f"{what}: environment variable {env} is not set")
        return value.strip()
    raise FatalError(f"{what}: no secret given (set a *_file or *_env key)")
