"""`syncd now` (the real CLI in a subprocess) between two *remote* sides, and what the
servers see:

* WebDAV (our Nextcloud-protocol server) <-> the native `storj` remote on the local network;
* a 1 GiB file up to Apache mod_dav and down again, with the child's peak RSS bounded;
* the satellite attributes a bucket that syncd created to ``syncd/<version>``.

Helpers come from the existing suites: ``run_syncd`` / ``fresh_bucket`` / ``_big_file`` from
test_storj_sync, the WebDAV ``Pair`` from test_webdav_sync.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from syncd.remotes import _uplink as uplink
from syncd.remotes.storj import USER_AGENT, StorjRemote
from tests.integration.test_storj_sync import MiB, Run, _big_file, fresh_bucket, run_syncd
from tests.integration.test_storj_sync import Pair as LocalPair
from tests.integration.test_webdav_sync import USER
from tests.integration.test_webdav_sync import Pair as WebdavPair
from tests.storj_network.fixture import StorjNetwork, _postgres_url, require_libuplink
from tests.webdav.nextcloud_server import NextcloudServer
from tests.webdav.servers import DavServer

DIR_BUCKET_LINE = 'bucket = { type = "dir", path = "bucket" }\n'


def storj_spec(bucket: str, *, create: bool = False) -> str:
    extra = ", create_bucket = true" if create else ""
    return f'{{ type = "storj", access_grant_file = "grant", bucket = "{bucket}", prefix = "alice/"{extra} }}'


# --------------------------------------------------------------------------- WebDAV <-> Storj


class WebdavStorjPair(WebdavPair):
    """test_webdav_sync's pair (Nextcloud-protocol server as files) with a Storj bucket."""

    def __init__(self, root: Path, server: NextcloudServer, net: StorjNetwork, bucket: str) -> None:
        super().__init__(root, server)
        (root / "grant").write_text(net.access_grant)
        text = self.config.read_text()
        assert DIR_BUCKET_LINE in text, text  # the base class's config changed shape
        self.config.write_text(text.replace(DIR_BUCKET_LINE, f"bucket = {storj_spec(bucket)}\n"))
        self.storj = StorjRemote(net.access_grant, bucket, prefix="alice/")

    def run(self) -> Run:
        return run_syncd(self.config, timeout=300)

    def storj_put(self, path: str, data: bytes) -> None:
        self.storj.write(
            path,
            io.BytesIO(data),
            size=len(data),
            mtime_ns=1_700_000_000_000_000_000,
            content_hash=hashlib.sha256(data).hexdigest(),
        )

    def storj_files(self) -> dict[str, bytes]:
        out = {}
        for entry in self.storj.list():
            with self.storj.open_read(entry.path) as stream:
                out[entry.path] = stream.read()
        return out


@pytest.fixture
def webdav_storj(storj_network: StorjNetwork, tmp_path: Path) -> Iterator[WebdavStorjPair]:
    bucket = fresh_bucket(storj_network)
    server = NextcloudServer({USER: "alice-app-password"})
    server.start()
    try:
        pair = WebdavStorjPair(tmp_path, server, storj_network, bucket)
        try:
            yield pair
        finally:
            pair.storj.close()
    finally:
        server.stop()


def test_webdav_storj_two_way_then_nothing_then_rename_is_a_move(webdav_storj: WebdavStorjPair) -> None:
    pair = webdav_storj
    pair.nc_put("docs/report.txt", b"from nextcloud")
    pair.nc_put("a/old.txt", b"same bytes " * 1000)
    pair.storj_put("photos/cat.jpg", b"from the storj bucket")

    first = pair.run()
    assert first.code == 0, (first.stderr, first.report)
    expected = {
        "docs/report.txt": b"from nextcloud",
        "a/old.txt": b"same bytes " * 1000,
        "photos/cat.jpg": b"from the storj bucket",
    }
    assert pair.storj_files() == expected
    assert pair.nc_files() == expected

    second = pair.run()
    assert second.code == 0 and second.report["done"] == {}, second.report

    pair.server.move_as_client(pair.http, USER, "a/old.txt", "a/new.txt")
    third = pair.run()
    assert third.code == 0, (third.stderr, third.report)
    assert third.report["done"] == {"move": 1} and third.report["bytes"] == 0, third.report
    after = pair.storj_files()
    assert "a/old.txt" not in after and after["a/new.txt"] == b"same bytes " * 1000
    assert after == pair.nc_files()


# --------------------------------------------------------------------------- 1 GiB over WebDAV


def webdav_bucket_config(root: Path, dav: DavServer, url: str, files_type: str = "local") -> Path:
    """A pair whose files side is a fresh ``files`` folder (``local``, or ``dir``: a bucket kept in a
    folder) and whose bucket is the WebDAV folder ``url``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "files").mkdir(exist_ok=True)
    (root / "secret").write_text(dav.password)
    config = root / "syncd.toml"
    config.write_text(
        '[daemon]\nstate_dir = "state"\nsocket = "state/control.sock"\n\n[users.alice]\n'
        f'files = {{ type = "{files_type}", path = "files" }}\n'
        f'bucket = {{ type = "webdav", url = "{url}", username = "{dav.username}", password_file = "secret" }}\n'
    )
    return config


def test_local_tree_uploads_to_webdav(apache_dav: DavServer, tmp_path: Path) -> None:
    """The plain case under the 1 GiB test: a file of a `local` tree PUT to a WebDAV server."""
    url = apache_dav.mkcol("small-" + secrets.token_hex(4))
    config = webdav_bucket_config(tmp_path, apache_dav, url)
    (tmp_path / "files" / "a.txt").write_bytes(b"from a local tree")
    run = run_syncd(config, timeout=120)
    assert run.code == 0, (run.stderr, run.report)
    got = requests.get(url + "a.txt", auth=(apache_dav.username, apache_dav.password), timeout=10)
    assert got.status_code == 200 and got.content == b"from a local tree"


@pytest.mark.slow
def test_one_gib_up_to_apache_and_down_with_bounded_rss(apache_dav: DavServer, tmp_path: Path) -> None:
    """1 GiB from a `local` tree up to Apache mod_dav (disk-backed) and down into a fresh
    `local` tree, each run's peak RSS bounded."""
    size = 1024 * MiB
    url = apache_dav.mkcol("big-" + secrets.token_hex(4))
    up_config = webdav_bucket_config(tmp_path / "up", apache_dav, url)
    down_config = webdav_bucket_config(tmp_path / "down", apache_dav, url)
    generated = tmp_path / "up" / "files" / "big.bin"
    target = tmp_path / "down" / "files" / "big.bin"
    auth = (apache_dav.username, apache_dav.password)
    try:
        started = time.monotonic()
        generated.parent.mkdir(parents=True, exist_ok=True)
        digest = _big_file(generated, size)
        made = time.monotonic() - started

        started = time.monotonic()
        up = run_syncd(up_config, timeout=300)
        up_s = time.monotonic() - started
        assert up.code == 0, (up.stderr, up.report)
        head = requests.head(url + "big.bin", auth=auth, timeout=30)
        assert head.status_code == 200 and int(head.headers["Content-Length"]) == size

        started = time.monotonic()
        down = run_syncd(down_config, timeout=300)
        down_s = time.monotonic() - started
        assert down.code == 0, (down.stderr, down.report)
        assert target.stat().st_size == size
        with target.open("rb") as stream:
            assert hashlib.file_digest(stream, "sha256").hexdigest() == digest
        print(
            f"\n1 GiB via Apache mod_dav: generate {made:.1f} s; "
            f"up {up_s:.1f} s, peak RSS {up.peak_rss_mb:.0f} MB; "
            f"down {down_s:.1f} s, peak RSS {down.peak_rss_mb:.0f} MB"
        )
        assert up.peak_rss_mb < 200, f"upload peak RSS {up.peak_rss_mb:.0f} MB"
        assert down.peak_rss_mb < 200, f"download peak RSS {down.peak_rss_mb:.0f} MB"
    finally:  # 3 GiB of disk otherwise stays until the session ends
        generated.unlink(missing_ok=True)
        target.unlink(missing_ok=True)
        shutil.rmtree(tmp_path / "up" / "files", ignore_errors=True)
        requests.delete(url, auth=auth, timeout=60)


# --------------------------------------------------------------------------- attribution


def satellite_user_agents(bucket: str) -> dict[str, Any]:
    """The user agents the satellite recorded for ``bucket``, from every testplanet schema
    that has the tables (the schema name is random per network; a concurrent network has its
    own schema, but our bucket name is random too)."""
    psycopg = pytest.importorskip("psycopg")
    from psycopg import sql

    name = bucket.encode()
    found: dict[str, Any] = {}
    with psycopg.connect(_postgres_url(), connect_timeout=10) as conn:
        schemas = [
            row[0]
            for row in conn.execute(
                "SELECT table_schema FROM information_schema.tables WHERE table_name = 'value_attributions'"
            ).fetchall()
        ]
        for schema in schemas:
            attributions = conn.execute(
                sql.SQL("SELECT user_agent FROM {}.value_attributions WHERE bucket_name = %s").format(
                    sql.Identifier(schema)
                ),
                (name,),
            ).fetchall()
            metainfos = conn.execute(
                sql.SQL("SELECT user_agent FROM {}.bucket_metainfos WHERE name = %s").format(sql.Identifier(schema)),
                (name,),
            ).fetchall()
            if attributions or metainfos:
                found[schema] = {
                    "value_attributions": [None if r[0] is None else bytes(r[0]) for r in attributions],
                    "bucket_metainfos": [None if r[0] is None else bytes(r[0]) for r in metainfos],
                }
    assert schemas, "no satellite schema with value_attributions in the test database"
    return found


def test_bucket_created_by_syncd_is_attributed_to_syncd(storj_network: StorjNetwork, tmp_path: Path) -> None:
    require_libuplink()
    bucket = "ua-" + secrets.token_hex(6)  # does not exist: syncd creates it (create_bucket = true)
    (tmp_path / "grant").write_text(storj_network.access_grant)
    pair = LocalPair(tmp_path, storj_spec(bucket, create=True), remote=None)  # type: ignore[arg-type]
    pair.write_a("hello.txt", b"attributed")
    run = pair.sync()
    assert run.code == 0, (run.stderr, run.report)
    assert run.report["done"] == {"copy": 1}, run.report

    found = satellite_user_agents(bucket)
    assert len(found) == 1, found  # exactly one satellite knows this bucket
    (tables,) = found.values()
    expected = USER_AGENT.encode()
    assert expected.startswith(b"syncd/")
    assert tables == {"value_attributions": [expected], "bucket_metainfos": [expected]}, tables

    # control: the column follows the client's user agent (neither the API key nor the project
    # carries one that would win over it), so the value above is syncd's own
    other = "ua-" + secrets.token_hex(6)
    with (
        uplink.Access.parse(storj_network.access_grant) as access,
        access.open_project(user_agent="othertool/9.9") as project,
    ):
        project.ensure_bucket(other)
    (control,) = satellite_user_agents(other).values()
    assert control == {"value_attributions": [b"othertool/9.9"], "bucket_metainfos": [b"othertool/9.9"]}, control
