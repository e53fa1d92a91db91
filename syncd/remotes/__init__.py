"""Remote registry: a config ``type`` names a module that defines ``Settings`` and ``open_remote``.

Modules are imported only when a config uses them, so `syncd now` on local trees never pays
for boto3, requests or libuplink.
"""

from __future__ import annotations

import importlib
from types import ModuleType

REMOTE_MODULES: dict[str, str] = {
    "local": "syncd.remotes.local",
    "dir": "syncd.remotes.dirbucket",
    "webdav": "syncd.remotes.webdav",
    "storj": "syncd.remotes.storj",
    "s3": "syncd.remotes.s3",
}


def remote_module(kind: str) -> ModuleType:
    """The module implementing remote type ``kind``. :raises KeyError: unknown type."""
    return importlib.import_module(REMOTE_MODULES[kind])
