"""What the test server announces in ``/ocs/v*.php/cloud/capabilities``, as data a test can change.

The values are Nextcloud 31.0.2's defaults (from /work/shared/nextcloud-wire/capabilities.json, typed
in here: the server must work without the corpus). Only the sections a sync client reads are kept:
``core``, ``bruteforce``, ``files`` (the name rules), ``dav`` (chunking, bulk upload),
``notifications`` and ``user_status`` (announced, it makes the desktop client ask for the user's
status on every run, as it does on the real server: nextcloudcmd's other requests were the same with
every section of the real capabilities). The name rules the server enforces are read from the same
object, so a test that changes :attr:`Capabilities.forbidden_filenames` changes what PUT refuses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

VERSION = {"major": 31, "minor": 0, "micro": 2, "string": "31.0.2", "edition": "", "extendedSupport": False}
STATUS = {
    "installed": True,
    "maintenance": False,
    "needsDbUpgrade": False,
    "version": "31.0.2.1",
    "versionstring": "31.0.2",
    "edition": "",
    "productname": "Nextcloud",
    "extendedSupport": False,
}
REFERENCE_REGEX = "(\\s|\\n|^)(https?:\\/\\/)([-A-Z0-9+_.]+(?::[0-9]+)?(?:\\/[-A-Z0-9+&@#%?=~_|!:,.;()]*)*)(\\s|\\n|$)"


@dataclass
class Capabilities:
    """The capabilities of one server; mutable so that a test can change them while it runs."""

    forbidden_filenames: list[str] = field(default_factory=lambda: [".htaccess"])
    forbidden_filename_basenames: list[str] = field(default_factory=list)
    forbidden_filename_characters: list[str] = field(default_factory=lambda: ["\\", "/"])
    forbidden_filename_extensions: list[str] = field(default_factory=lambda: [".filepart", ".part"])
    chunking: str | None = "1.0"  # None: no "chunking" key (and no chunked upload endpoint)
    bulkupload: str | None = "1.0"  # None: no "bulkupload" key, POST /remote.php/dav/bulk answers 404
    chunked_upload_max_size: int = 104857600
    pollinterval: int = 60

    def to_json(self, base_url: str, *, authenticated: bool) -> dict[str, Any]:
        """The ``capabilities`` object; an anonymous caller gets only ``core`` and ``bruteforce``."""
        caps: dict[str, Any] = {"core": self._core(), "bruteforce": {"delay": 0, "allow-listed": False}}
        if not authenticated:
            return caps
        caps["files"] = self._files(base_url)
        caps["dav"] = self._dav()
        caps["notifications"] = {
            "ocs-endpoints": [
                "list",
                "get",
                "delete",
                "delete-all",
                "icons",
                "rich-strings",
                "action-web",
                "user-status",
                "exists",
                "test-push",
            ],
            "push": ["devices", "object-data", "delete"],
            "admin-notifications": ["ocs", "cli"],
        }
        caps["user_status"] = {"enabled": True, "restore": True, "supports_emoji": True}
        return caps

    def _core(self) -> dict[str, Any]:
        return {
            "pollinterval": self.pollinterval,
            "webdav-root": "remote.php/webdav",
            "reference-api": True,
            "reference-regex": REFERENCE_REGEX,
            "mod-rewrite-working": False,
        }

    def _files(self, base_url: str) -> dict[str, Any]:
        return {
            "$comment": '"blacklisted_files" is deprecated as of Nextcloud 30, use "forbidden_filenames" instead',
            "blacklisted_files": list(self.forbidden_filenames),
            "forbidden_filenames": list(self.forbidden_filenames),
            "forbidden_filename_basenames": list(self.forbidden_filename_basenames),
            "forbidden_filename_characters": list(self.forbidden_filename_characters),
            "forbidden_filename_extensions": list(self.forbidden_filename_extensions),
            "bigfilechunking": self.chunking is not None,
            "chunked_upload": {"max_size": self.chunked_upload_max_size, "max_parallel_count": 5},
            "file_conversions": [],
            "directEditing": {
                "url": f"{base_url}/ocs/v2.php/apps/files/api/v1/directEditing",
                "etag": "5b2f367cfe076ab42b79601036409c2e",
                "supportsFileId": True,
            },
            "comments": True,
            "undelete": True,
            "delete_from_trash": True,
            "versioning": True,
            "version_labeling": True,
            "version_deletion": True,
        }

    def _dav(self) -> dict[str, Any]:
        dav: dict[str, Any] = {}
        if self.chunking is not None:
            dav["chunking"] = self.chunking
        if self.bulkupload is not None:
            dav["bulkupload"] = self.bulkupload
        dav["absence-supported"] = True
        dav["absence-replacement"] = True
        return dav
