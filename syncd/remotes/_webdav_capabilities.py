"""What a Nextcloud server publishes about itself (OCS capabilities), parsed once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerCapabilities:
    """The parts of Nextcloud's capabilities syncd uses."""

    bulk_upload: bool  # dav.bulkupload "1.0": POST /remote.php/dav/bulk

    @classmethod
    def defaults(cls) -> ServerCapabilities:
        """What syncd assumes of a server that published nothing."""
        return cls(bulk_upload=False)
