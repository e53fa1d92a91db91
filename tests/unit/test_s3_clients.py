"""The process-wide S3 client cache (syncd.remotes._s3_clients): same settings share one
client, different credentials or settings never do, and the cache is bounded."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from syncd.remotes import _s3_clients, s3
from syncd.remotes.settings import OpenContext


@pytest.fixture(autouse=True)
def _no_bucket_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening checks the bucket over the network; these tests are about the client only."""
    monkeypatch.setattr(s3.S3Remote, "_check_bucket", lambda self, create: None)


def _open(**kw: Any) -> s3.S3Remote:
    args: dict[str, Any] = {
        "endpoint": "http://127.0.0.1:9",
        "bucket": "bucket-a",
        "access_key_id": "A" * 20,
        "secret_access_key": "s" * 32,
    }
    args.update(kw)
    return s3.S3Remote(**args)


def test_two_opens_with_the_same_settings_share_one_client() -> None:
    a, b = _open(), _open(bucket="bucket-b", prefix="bob/")  # bucket and prefix are per call
    a.close()
    c = _open()
    assert a.client is b.client is c.client
    b.close()
    c.close()


def test_different_credentials_or_settings_build_different_clients() -> None:
    base = _open()
    others = [
        _open(secret_access_key="t" * 32),
        _open(access_key_id="B" * 20),
        _open(endpoint="http://127.0.0.1:10"),
        _open(region="eu-west-1"),
        _open(timeout=5.0),
        _open(retries=5),
        _open(path_style=False),
        _open(verify_tls=False),
        _open(concurrency=16),  # a bigger connection pool
    ]
    clients = {id(r.client) for r in [base, *others]}
    assert len(clients) == 1 + len(others)
    creds = others[0].client._request_signer._credentials  # type: ignore[attr-defined]
    assert creds.secret_key == "t" * 32


def test_a_changed_credential_file_gets_a_new_client(tmp_path: Path) -> None:
    (tmp_path / "id").write_text("A" * 20 + "\n")
    (tmp_path / "secret").write_text("first-secret" * 3 + "\n")
    settings = s3.Settings(
        type="s3",
        bucket="bucket-a",
        endpoint="http://127.0.0.1:9",
        access_key_id_file=tmp_path / "id",
        secret_access_key_file=tmp_path / "secret",
    )
    ctx = OpenContext(label="test", state_dir=tmp_path)
    first, again = s3.open_remote(settings, ctx), s3.open_remote(settings, ctx)
    assert first.client is again.client
    (tmp_path / "secret").write_text("second-secret" * 3 + "\n")  # rotated, then a config reload
    rotated = s3.open_remote(settings, ctx)
    assert rotated.client is not first.client
    assert rotated.client._request_signer._credentials.secret_key == "second-secret" * 3  # type: ignore[attr-defined]


def test_the_cache_is_bounded_least_recently_used_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_s3_clients, "MAX_CLIENTS", 3)
    keep = _open(access_key_id="K" * 20)
    first = []
    for i in range(5):
        first.append(_open(access_key_id=f"{i:020d}").client)
        _open(access_key_id="K" * 20)  # used again: stays
    assert _s3_clients.cached_clients() <= 3
    assert _open(access_key_id="K" * 20).client is keep.client
    assert _open(access_key_id=f"{0:020d}").client is not first[0]  # evicted: built again


def test_opens_from_many_threads_build_one_client_per_settings() -> None:
    got: list[object] = []
    lock = threading.Lock()

    def open_some() -> None:
        for _ in range(5):
            client = _open(access_key_id="T" * 20).client
            with lock:
                got.append(client)

    threads = [threading.Thread(target=open_some) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(got) == 40 and len({id(c) for c in got}) == 1


def test_a_rotated_secret_drops_the_clients_of_the_old_one() -> None:
    """After a credential file changes, the old secret is not kept in the cache until pushed out."""
    old = _open(access_key_id="R" * 20, secret_access_key="old-secret-" + "o" * 21)
    other = _open(access_key_id="Q" * 20, secret_access_key="old-secret-" + "o" * 21)  # another access key
    old.close()
    new = _open(access_key_id="R" * 20, secret_access_key="new-secret-" + "n" * 21)
    kept = [c._request_signer._credentials for c in _s3_clients._clients.values()]  # type: ignore[attr-defined]
    assert not any(c.access_key == "R" * 20 and c.secret_key.startswith("old-secret-") for c in kept)
    assert any(c.access_key == "Q" * 20 for c in kept)  # another access key's client stays
    assert old.client is not new.client
    other.close()
    new.close()
