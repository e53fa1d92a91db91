"""The process's boto3 S3 clients, shared by every S3 remote opened with the same settings.

Building a client costs 55-95 ms of CPU (a new session loads and parses botocore's service
model; the client builds its endpoint resolver and event handlers), and a daemon opens its
remotes again for every run: at 1,000 WebDAV <-> S3 pairs every 5 minutes that was about 40% of
a core. A client is thread-safe once built and holds nothing of one run (the bucket and key
prefix are per call), so remotes with the same settings share one.

:func:`s3_client` keeps up to :data:`MAX_CLIENTS` of them, least recently used first out. The
key is everything a client is made of: endpoint, region, the credentials (the secret as a
SHA-256 digest, so no secret is kept twice), TLS verification, addressing style, timeout,
attempts and connection pool size. A credential file changed since the last open (a config
reload) gives a new key, so a new client; two credentials never share one. A new secret for an
access key drops the clients of its old one at once (the old secret is not kept in memory until
pushed out). An evicted client is not closed (a run may still use it): its connections close when
the last remote using it does.

boto3's sessions are not thread-safe, so the one session and every client built from it are
made under a lock; a cached client is handed out without building anything.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

MAX_CLIENTS = 64


@dataclass(frozen=True, slots=True)
class ClientKey:
    """Everything that makes an S3 client; equal keys may share one."""

    endpoint: str | None
    region: str
    access_key_id: str
    secret_digest: str  # SHA-256 of the secret access key
    verify_tls: bool
    path_style: bool
    timeout: float
    attempts: int
    max_pool_connections: int
    user_agent_extra: str


_lock = threading.Lock()
_session: list[boto3.session.Session] = []  # the one session, made on first use
_clients: OrderedDict[ClientKey, S3Client] = OrderedDict()


def client_key(
    *,
    endpoint: str | None,
    region: str,
    access_key_id: str,
    secret_access_key: str,
    verify_tls: bool,
    path_style: bool,
    timeout: float,
    attempts: int,
    max_pool_connections: int,
    user_agent_extra: str,
) -> ClientKey:
    return ClientKey(
        endpoint=endpoint,
        region=region,
        access_key_id=access_key_id,
        secret_digest=hashlib.sha256(secret_access_key.encode()).hexdigest(),
        verify_tls=verify_tls,
        path_style=path_style,
        timeout=timeout,
        attempts=attempts,
        max_pool_connections=max_pool_connections,
        user_agent_extra=user_agent_extra,
    )


def s3_client(key: ClientKey, secret_access_key: str) -> S3Client:
    """The shared client for *key* (built on first use). *secret_access_key* must be the
    secret whose digest is in the key. Never close it: other remotes may be using it."""
    with _lock:
        client = _clients.get(key)
        if client is not None:
            _clients.move_to_end(key)
            return client
        if not _session:
            _session.append(boto3.session.Session())
        config = Config(
            user_agent_extra=key.user_agent_extra,
            region_name=key.region,
            # Every request is bounded: connecting and each read of an answer wait at most
            # `timeout`, and a request is tried `attempts` times in all (botocore's standard
            # mode: a short jittered backoff between attempts), so a server that accepts and
            # never answers ends a call after about attempts x timeout.
            connect_timeout=key.timeout,
            read_timeout=key.timeout,
            retries={"max_attempts": key.attempts, "mode": "standard"},
            max_pool_connections=key.max_pool_connections,
            s3={"addressing_style": "path" if key.path_style else "auto"},
            # Gateways refuse the flexible checksums newer botocore sends by default.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        client = _session[0].client(
            "s3",
            endpoint_url=key.endpoint,
            aws_access_key_id=key.access_key_id,
            aws_secret_access_key=secret_access_key,
            verify=key.verify_tls,
            config=config,
        )
        for old in [k for k in _clients if _replaced_by(k, key)]:
            del _clients[old]  # its secret is not kept any longer than a run still using it needs
        _clients[key] = client
        while len(_clients) > MAX_CLIENTS:
            _clients.popitem(last=False)
        return client


def _replaced_by(old: ClientKey, new: ClientKey) -> bool:
    """``old`` holds a secret that ``new`` replaced: the same access key at the same endpoint
    (one access key has one secret), another secret (rotated in the credential file)."""
    return (
        old.endpoint == new.endpoint
        and old.access_key_id == new.access_key_id
        and old.secret_digest != new.secret_digest
    )


def cached_clients() -> int:
    """How many clients are kept now (for tests and diagnostics)."""
    with _lock:
        return len(_clients)
