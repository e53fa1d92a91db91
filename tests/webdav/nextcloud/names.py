"""Nextcloud 31's rules for file and folder names, as the corpus shows them (README "Names").

The configurable part comes from :class:`~.capabilities.Capabilities` (forbidden names, characters,
basenames, extensions; all compared case-insensitively). Fixed on top: newline, tab and CR are
refused although capabilities do not list them, names over 250 bytes are "too long", and names of
229-250 bytes fail with a 500 when a file is written (Nextcloud's temporary
``<name>.ocTransferId<rand>.part`` name exceeds ext4's 255 bytes). Leading and trailing spaces are
allowed; names are stored in NFC.
"""

from __future__ import annotations

import unicodedata

from .capabilities import Capabilities
from .errors import HttpError, invalid_path

MAX_NAME_BYTES = 250
# From this length on, the ".ocTransferId<rand>.part" name Nextcloud writes first is too long for ext4.
PART_FILE_LIMIT_BYTES = 229
CONTROL_CHARACTERS = frozenset("\n\r\t")


def nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


def name_error(name: str, capabilities: Capabilities) -> HttpError | None:
    """The 400 Nextcloud answers for a name it refuses, or None when the name is allowed."""
    if len(name.encode()) > MAX_NAME_BYTES:
        return invalid_path("Filename is too long")
    for char in capabilities.forbidden_filename_characters:
        if char in name:
            return invalid_path(f'"{char}" is not allowed inside a file or folder name.')
    if any(char in CONTROL_CHARACTERS for char in name):
        return invalid_path("Filename contains at least one invalid character")
    lowered = name.lower()
    if lowered in (n.lower() for n in capabilities.forbidden_filenames):
        return invalid_path("Filename is a reserved word")
    basename = lowered.split(".", 1)[0]
    if basename and basename in (n.lower() for n in capabilities.forbidden_filename_basenames):
        return invalid_path("Filename is a reserved word")
    for extension in capabilities.forbidden_filename_extensions:
        if lowered.endswith(extension.lower()):
            return invalid_path(f'"{extension}" is a forbidden file type.')
    return None


def forbidden_name_error(name: str, capabilities: Capabilities | None = None) -> HttpError | None:
    """What Nextcloud answers for ``name`` under ``capabilities`` (its defaults when None)."""
    return name_error(name, capabilities if capabilities is not None else Capabilities())


def part_file_too_long(name: str) -> bool:
    """True when writing a file of this name fails on the real server (see the module docstring)."""
    return PART_FILE_LIMIT_BYTES <= len(name.encode()) <= MAX_NAME_BYTES


def copy_error(expected_size: int) -> HttpError:
    """The 500 of a write whose temporary .part name is too long; -1 when the size is unknown."""
    unit = "byte" if expected_size == 1 else "bytes"
    return HttpError(
        500,
        f"Error while copying file to target location (copied: -1 bytes, expected filesize: {expected_size} {unit})",
    )


def is_part_file(name: str) -> bool:
    """Nextcloud's View treats a missing ``*.part`` path as an existing (empty) upload part."""
    return name.lower().endswith(".part")
