"""How an unexpected WebDAV answer maps to syncd's error tree: decided here, once.

What Nextcloud 31 means by its answers (see /work/shared/nextcloud-wire/README.md):

- 403 on a PROPFIND of the tree: the account may not read it (fatal for the pair); 403 on a
  write of one file: that file (an item error), never the whole run.
- 423 ``FileLocked`` (PUT, GET, COPY, DELETE) and 500 ``OCP\\Lock\\LockedException`` (MOVE):
  another client is writing the file; retried on a later run (:class:`ServerLocked`).
- 507 ``InsufficientStorage``: the quota is too small for this file (:class:`QuotaExceeded`).
- 400 ``InvalidPath`` / 403 ``Forbidden`` on a write: a name the server refuses (UnsafePath).
"""

from __future__ import annotations

import requests

from syncd.errors import FatalError, ItemError, NotFound, PreconditionFailed, SyncdError, TransientError, UnsafePath
from syncd.remotes._webdav_xml import sabre_message

# Nextcloud's answers to a name it refuses (400 InvalidPath, 403 Forbidden for ".htaccess").
NAME_EXCEPTIONS = ("Sabre\\Exception\\InvalidPath", "Sabre\\Exception\\Forbidden")
LOCKED_EXCEPTIONS = ("Sabre\\Exception\\FileLocked", "OCP\\Lock\\LockedException", "Sabre\\DAV\\Exception\\Locked")


class ServerLocked(ItemError):
    """The server holds a lock on the file (another client is writing it): retried later.
    An item error, not a TransientError: the server is fine, only this file is busy."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(path, f"locked on the server ({detail}); will retry")


class QuotaExceeded(ItemError):
    """The user's quota has no room for this file (nothing was written)."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(path, f"the account's quota is too small for this file ({detail})")


def answer_detail(response: requests.Response) -> tuple[str, str]:
    """(Sabre exception class, "HTTP <status>: <message>") of an error answer; closes it."""
    try:
        body = response.content[:4096]
    except (requests.RequestException, RuntimeError):
        body = b""
    response.close()
    exception, message = sabre_message(body)
    return exception, f"HTTP {response.status_code}" + (f": {message}" if message else "")


def is_locked_answer(exception: str, status: int) -> bool:
    """Whether an error answer says the file is locked by another client."""
    if status == 423:
        return True
    return status == 500 and exception.endswith(LOCKED_EXCEPTIONS)


def http_error(response: requests.Response, path: str, what: str, *, label: str, listing: bool) -> SyncdError:
    """The error an unexpected answer to ``what`` on ``path`` means (the response is closed).

    ``listing``: the answer was to a PROPFIND of the tree, where a refusal concerns the whole
    pair (permissions), not one file.
    """
    status = response.status_code
    exception, detail = answer_detail(response)
    if status == 404:
        return NotFound(path)
    if status == 412:
        return PreconditionFailed(path)
    if is_locked_answer(exception, status):
        return ServerLocked(path, detail)
    if listing:
        return _listing_error(status, path, what, detail, label)
    if status in (400, 403) and exception.endswith(NAME_EXCEPTIONS):
        return UnsafePath(path, f"the server refuses this name ({detail})")
    if status == 403:
        return ItemError(path, f"the server forbids {what} ({detail}); check the account's permissions")
    if status == 507:
        return QuotaExceeded(path, detail)
    if status == 409:
        return TransientError(f"{label}: {what} {path!r}: a parent folder vanished ({detail})")
    if status >= 500:
        return TransientError(f"{label}: {what} {path!r} failed ({detail})")
    return ItemError(path, f"{what} failed ({detail})")


def _listing_error(status: int, path: str, what: str, detail: str, label: str) -> SyncdError:
    if status == 403:
        return FatalError(
            f"{label}: the WebDAV server forbids {what} of {path!r} ({detail}); check the account's permissions"
        )
    return TransientError(f"{label}: {what} {path!r} failed ({detail})")
