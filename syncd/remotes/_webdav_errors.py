"""How an unexpected WebDAV answer maps to syncd's error tree: decided here, once."""

from __future__ import annotations

import requests

from syncd.errors import FatalError, ItemError, NotFound, PreconditionFailed, SyncdError, TransientError, UnsafePath
from syncd.remotes._webdav_xml import sabre_message

# Nextcloud's answers to a name it refuses (400 InvalidPath, 403 Forbidden for ".htaccess").
NAME_EXCEPTIONS = ("Sabre\\Exception\\InvalidPath", "Sabre\\Exception\\Forbidden")


def answer_detail(response: requests.Response) -> tuple[str, str]:
    """(Sabre exception class, "HTTP <status>: <message>") of an error answer; closes it."""
    try:
        body = response.content[:4096]
    except (requests.RequestException, RuntimeError):
        body = b""
    response.close()
    exception, message = sabre_message(body)
    return exception, f"HTTP {response.status_code}" + (f": {message}" if message else "")


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
    if status in (400, 403) and not listing and exception.endswith(NAME_EXCEPTIONS):
        return UnsafePath(path, f"the server refuses this name ({detail})")
    if status == 403:
        return FatalError(
            f"{label}: the WebDAV server forbids {what} of {path!r} ({detail}); check the account's permissions"
        )
    if status == 507:
        return FatalError(f"{label}: the WebDAV server is out of space or over quota ({detail})")
    if status == 423:
        return ItemError(path, f"locked on the server ({detail}); will retry")
    if status == 409:
        return TransientError(f"{label}: {what} {path!r}: a parent folder vanished ({detail})")
    if listing or status >= 500:
        return TransientError(f"{label}: {what} {path!r} failed ({detail})")
    return ItemError(path, f"{what} failed ({detail})")
