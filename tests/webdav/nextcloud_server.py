"""The Nextcloud-protocol test server; it lives in the package tests/webdav/nextcloud/.

This module keeps the names other tests and the benchmarks import from here: every name the
package exports (``NextcloudServer``, ``Capabilities``, ``FILES``, ...), and ``_Handler``, the
request handler class, whose ``disable_nagle_algorithm`` ``bench/webdav_sync.py`` sets.
"""

from tests.webdav import nextcloud
from tests.webdav.nextcloud import *  # noqa: F403 - the package's names, listed once in its __all__
from tests.webdav.nextcloud import Handler as _Handler

__all__ = ["_Handler"]
__all__ += nextcloud.__all__
