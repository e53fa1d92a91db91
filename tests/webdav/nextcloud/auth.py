"""HTTP Basic authentication as Nextcloud answers it: user names are case-insensitive, every
password of the user works (app passwords and the login password), and a wrong one counts as a
failed login for the brute-force throttle."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from .names import nfc
from .transport import Request

if TYPE_CHECKING:
    from .server import NextcloudServer

NO_CREDENTIALS = (
    "No public access to this resource., No 'Authorization: Basic' header found. Either the client didn't send "
    "one, or the server is misconfigured, No 'Authorization: Bearer' header found. Either the client didn't send "
    "one, or the server is mis-configured, No 'Authorization: Basic' header found. Either the client didn't send "
    "one, or the server is misconfigured"
)
WRONG_CREDENTIALS = (
    "No public access to this resource., Username or password was incorrect, No 'Authorization: Bearer' header "
    "found. Either the client didn't send one, or the server is mis-configured, Username or password was incorrect"
)


class Unauthenticated(Exception):
    """No usable credentials: ``wrong`` tells a wrong password from no Authorization header."""

    def __init__(self, *, wrong: bool) -> None:
        super().__init__("wrong credentials" if wrong else "no credentials")
        self.wrong = wrong


def basic_login(server: NextcloudServer, request: Request) -> str:
    """The user named by the request's Basic credentials.

    :raises Unauthenticated: without credentials, or with wrong ones (then counted as a failed login).
    """
    header = request.header("Authorization") or ""
    if not header.startswith("Basic "):
        raise Unauthenticated(wrong=False)
    try:
        login, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        login, password = "", ""
    with server.lock:
        user = next((u for u in server.passwords if u.lower() == nfc(login).lower()), None)
        valid = user is not None and password in server.passwords[user]
    if user is None or not valid:
        server.throttle.record_failure(request.client_ip)
        raise Unauthenticated(wrong=True)
    return user
