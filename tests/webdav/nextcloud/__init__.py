"""A server that speaks Nextcloud 31's WebDAV and OCS dialect, for tests.

It follows what a real Nextcloud 31 answered (/work/shared/nextcloud-wire/exchanges.jsonl;
tests/webdav/test_nextcloud_conformance.py replays it against this server), not syncd's client.
"""

from .capabilities import Capabilities
from .clock import ManualClock
from .errors import HttpError, sabre_error
from .names import forbidden_name_error
from .server import DAV_ROOT, FILES, TRASHBIN, UPLOADS, VERSIONS, Fault, NextcloudServer
from .transport import Handler
from .tree import INSTANCE_ID, Node, TrashItem, Upload, Version

__all__ = [
    "DAV_ROOT",
    "FILES",
    "INSTANCE_ID",
    "TRASHBIN",
    "UPLOADS",
    "VERSIONS",
    "Capabilities",
    "Fault",
    "Handler",
    "HttpError",
    "ManualClock",
    "NextcloudServer",
    "Node",
    "TrashItem",
    "Upload",
    "Version",
    "forbidden_name_error",
    "sabre_error",
]
