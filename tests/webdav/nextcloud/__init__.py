"""A server that speaks Nextcloud 31's WebDAV and OCS dialect, for tests.

It answers as a real Nextcloud 31 answered in /work/shared/nextcloud-wire/exchanges.jsonl
(tests/webdav/test_nextcloud_conformance.py replays that corpus against it), not as syncd's client
would like. What tests can set or use:

* ``NextcloudServer(users, *, clock=time.time, capabilities=None, allow_depth_infinity=True,
  throttle_delay_scale=0.0005, mkcol_lock_hold_s=0.0)``; ``start()`` / ``stop()`` (or ``with``), ``base_url``,
  ``files_url(user)``.
* ``clock``: a :class:`ManualClock` makes the seconds deterministic (an overwrite in the same second
  with an unchanged mtime keeps its ETag; one trash entry per path and second).
* ``server.capabilities`` (:class:`Capabilities`): name rules and ``chunking`` / ``bulkupload``, as
  announced by ``/ocs/v*.php/cloud/capabilities`` and enforced; change them at any time.
* ``server.hold_lock(user, path)``: a context manager holding a path locked as a write in progress
  does (PUT, GET, COPY, DELETE and MKCOL of it answer 423, MOVE 500, PROPFIND is not affected).
* ``server.on_mkcol_checked = fn(user, path)``: called after a MKCOL found its path free and before
  it locks it (create the folder there to get Nextcloud's 403 "Could not create directory").
* ``server.reset_throttle(ip=None)``, ``server.throttle`` (failed logins per address: 429 from the
  12th), ``server.set_quota(user, bytes | None)``, ``server.add_password(user, password)``,
  ``server.notifications`` (the OCS notification list).
* As before: ``inject(...)`` faults, ``counts`` / ``log`` / ``reset_counts()``, ``node(user, path)``,
  ``roots``, ``trash``, ``uploads``, ``move_as_client(...)``.
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
