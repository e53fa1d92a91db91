"""Remote registry: a config ``type`` names a module that defines ``Settings`` and ``open_remote``
(the shape :class:`RemoteModule` describes; mypy checks every registered module against it).

Modules are imported only when a config uses them, so `syncd now` on local trees never pays
for boto3, requests or libuplink.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

if TYPE_CHECKING:
    from syncd.remotes.base import Remote
    from syncd.remotes.settings import OpenContext, RemoteSettings

S = TypeVar("S", bound="RemoteSettings")


class RemoteModule(Protocol[S]):
    """What a remote module provides: its config section's type, and how to open it."""

    Settings: type[S]  # a msgspec Struct with ``type: Literal[<the registry's name>]``

    def open_remote(self, settings: S, ctx: OpenContext) -> Remote:
        """Open and check the remote. :raises FatalError: bad credentials, missing root or
        bucket. :raises TransientError: the server cannot be reached now."""
        ...


REMOTE_MODULES: dict[str, str] = {
    "local": "syncd.remotes.local",
    "dir": "syncd.remotes.dirbucket",
    "webdav": "syncd.remotes.webdav",
    "storj": "syncd.remotes.storj",
    "s3": "syncd.remotes.s3",
}


def remote_module(kind: str) -> RemoteModule[Any]:
    """The module implementing remote type ``kind``. :raises KeyError: unknown type."""
    return cast("RemoteModule[Any]", importlib.import_module(REMOTE_MODULES[kind]))


if TYPE_CHECKING:  # each registered module has the shape (checked by mypy, never imported here)
    from syncd.remotes import dirbucket, local, s3, storj, webdav

    _SHAPES: tuple[
        RemoteModule[local.Settings],
        RemoteModule[dirbucket.Settings],
        RemoteModule[webdav.Settings],
        RemoteModule[storj.Settings],
        RemoteModule[s3.Settings],
    ] = (local, dirbucket, webdav, storj, s3)
