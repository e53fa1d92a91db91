"""The Nextcloud-protocol test server; it lives in the package tests/webdav/nextcloud/.

This module keeps the names other tests and the benchmarks import (``NextcloudServer``,
``forbidden_name_error``, ``sabre_error``, ``FILES``, ...). ``_Handler`` is the request handler
class: ``bench/webdav_sync.py`` sets its ``disable_nagle_algorithm``.
"""

from tests.webdav.nextcloud import (
    DAV_ROOT,
    FILES,
    INSTANCE_ID,
    TRASHBIN,
    UPLOADS,
    VERSIONS,
    Capabilities,
    Fault,
    HttpError,
    ManualClock,
    NextcloudServer,
    Node,
    TrashItem,
    Upload,
    Version,
    forbidden_name_error,
    sabre_error,
)
from tests.webdav.nextcloud.transport import Handler as _Handler

__all__ = [
    "DAV_ROOT",
    "FILES",
    "INSTANCE_ID",
    "TRASHBIN",
    "UPLOADS",
    "VERSIONS",
    "Capabilities",
    "Fault",
    "HttpError",
    "ManualClock",
    "NextcloudServer",
    "Node",
    "TrashItem",
    "Upload",
    "Version",
    "_Handler",
    "forbidden_name_error",
    "sabre_error",
]
