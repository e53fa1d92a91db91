"""Names on Nextcloud: the rules its capabilities publish (read once, cached), what it refuses
although no capability says so, and what it accepts although older syncd refused it."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from syncd.errors import UnsafePath
from syncd.remotes import _webdav_capabilities
from syncd.remotes._webdav_capabilities import ServerCapabilities, parse_capabilities
from syncd.remotes._webdav_presets import NameRules
from syncd.remotes.base import SupportsNameRules
from syncd.remotes.webdav import WebDavRemote
from tests.webdav.nextcloud_remote import connect, put
from tests.webdav.nextcloud_server import Capabilities, NextcloudServer
from tests.webdav.servers import PASSWORD, USER

CORPUS_CAPABILITIES = Path("/work/shared/nextcloud-wire/capabilities.json")
OCS = "/ocs/v1.php/cloud/capabilities"


ACCEPTED = [
    " leading.txt",
    "trailing.txt ",
    "dir /trail.",
    "con",
    "CON.txt",
    "desktop.ini",
    "x.part.txt",
    "colon: pipe| star* q? quote\" lt< gt> hash# pct% plus+ amp& eq= semi; apos'.txt",
    "b" * 228,
]


@pytest.mark.parametrize("name", ACCEPTED)
def test_names_nextcloud_accepts_round_trip(remote: WebDavRemote, server: NextcloudServer, name: str) -> None:
    assert remote.name_problem(name) is None
    put(remote, name, b"kept as given")
    assert [e.path for e in remote.list()] == [name]


REFUSED = {
    ".htaccess": "reserved name",
    "a/.HTACCESS": "reserved name",
    "x.part": '".part"',
    "X.FilePart": '".filepart"',
    "b" * 229: "229 bytes",
    "é" * 125: "250 bytes",
    "b" * 251: "over Nextcloud's limit of 250 bytes",
    ("f" * 251) + "/short.txt": "over Nextcloud's limit",
}


@pytest.mark.parametrize(("name", "why"), REFUSED.items())
def test_refused_names_get_one_clear_reason_without_a_request(
    remote: WebDavRemote, server: NextcloudServer, name: str, why: str
) -> None:
    server.reset_counts()
    problem = remote.name_problem(name)
    assert problem is not None and why in problem and "Nextcloud" in problem
    with pytest.raises(UnsafePath):
        put(remote, name, b"x")
    assert sum(server.counts.values()) == 0


@pytest.mark.parametrize("name", ["new\nline.txt", "tab\there.txt", "cr\rhere.txt", "a\\b.txt"])
def test_control_characters_and_backslash_are_refused(remote: WebDavRemote, name: str) -> None:
    assert remote.name_problem(name) is not None
    assert NameRules().name_problem(name) is not None  # Nextcloud's rules say so too


def test_long_folder_names_are_fine_long_file_names_are_not(remote: WebDavRemote) -> None:
    folder = "d" * 240
    assert remote.name_problem(f"{folder}/short.txt") is None
    assert remote.name_problem(f"short/{'f' * 240}") is not None


def test_name_length_is_counted_as_stored_nfc(remote: WebDavRemote) -> None:
    nfd = unicodedata.normalize("NFD", "é" * 27 + "b" * 174)  # 255 bytes as sent, 228 as stored
    assert len(nfd.encode()) == 255
    assert remote.name_problem(nfd) is None
    assert remote.capabilities.unicode_normalizing


def test_nfd_upload_overwrites_the_nfc_file_as_nextcloud_does(remote: WebDavRemote, server: NextcloudServer) -> None:
    put(remote, "café.txt", b"nfc")
    put(remote, unicodedata.normalize("NFD", "café.txt"), b"nfd")
    assert [(e.path, e.size) for e in remote.list()] == [("café.txt", 3)]


def test_the_remote_supports_name_rules(remote: WebDavRemote) -> None:
    assert isinstance(remote, SupportsNameRules)


def test_capabilities_drive_the_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    caps = Capabilities(
        forbidden_filename_extensions=[".part", ".filepart", ".tmp"],
        forbidden_filename_basenames=["aux"],
        forbidden_filename_characters=["\\", "/", ":"],
        forbidden_filenames=[".htaccess", "thumbs.db"],
    )
    srv = NextcloudServer({USER: PASSWORD}, capabilities=caps)
    srv.start()
    try:
        remote = connect(srv, tmp_path / "state", monkeypatch)
        assert srv.counts["GET"] == 1 and (("GET", OCS) in srv.log)
        for name, why in {
            "x.TMP": '".tmp"',
            "aux.txt": '"aux"',
            "a:b.txt": "':'",
            "Thumbs.db": "reserved",
        }.items():
            problem = remote.name_problem(f"dir/{name}")
            assert problem is not None and why in problem, (name, problem)
        assert remote.name_problem("auxiliary.txt") is None and remote.name_problem(".aux") is None
        remote.close()
    finally:
        srv.stop()


def test_capabilities_are_read_once_and_kept_for_the_next_connect(
    server: NextcloudServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = connect(server, tmp_path / "state", monkeypatch)
    first.close()
    assert [p for m, p in server.log if m == "GET"] == [OCS]
    server.reset_counts()
    second = connect(server, tmp_path / "state", monkeypatch)
    assert dict(server.counts) == {"PROPFIND": 1}  # a quiet sync stays one request
    assert second.session.server.bulk_upload and second.session.server.published
    second.close()
    later = _webdav_capabilities.clock() + _webdav_capabilities.MAX_AGE_S + 1
    monkeypatch.setattr(_webdav_capabilities, "clock", lambda: later)
    third = connect(server, tmp_path / "state", monkeypatch)
    assert [p for m, p in server.log if m == "GET"] == [OCS]
    third.close()


def test_a_server_that_will_not_tell_gets_the_documented_defaults(
    server: NextcloudServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.inject("GET", path_contains="/ocs/", status=404)
    remote = connect(server, tmp_path / "state", monkeypatch)
    assert remote.session.server == ServerCapabilities.defaults()
    rules = remote.session.server.name_rules
    assert rules.forbidden_names == frozenset({".htaccess"}) and rules.forbidden_basenames == frozenset()
    assert set(rules.forbidden_characters) == {"\\", "/"} and set(rules.forbidden_extensions) == {".part", ".filepart"}
    assert not remote.session.server.bulk_upload
    remote.close()
    server.reset_counts()
    again = connect(server, tmp_path / "state", monkeypatch)  # a failure is not cached
    assert ("GET", OCS) in server.log
    again.close()


def test_generic_servers_are_not_asked_for_capabilities(
    server: NextcloudServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = connect(server, tmp_path / "state", monkeypatch, preset="generic")
    assert server.counts["GET"] == 0 and remote.name_problem(".htaccess") is None
    remote.close()


def test_the_corpus_capabilities_parse_to_nextcloud_31_rules() -> None:
    if not CORPUS_CAPABILITIES.exists():
        pytest.skip("the Nextcloud wire corpus is not on this machine")
    caps = parse_capabilities(CORPUS_CAPABILITIES.read_bytes())
    assert caps.name_rules == NameRules()
    assert caps.bulk_upload and caps.chunking and caps.max_chunk_size == 104857600


@pytest.mark.parametrize("body", [b"", b"not json", b'{"ocs": {"data": []}}', json.dumps({"ocs": 1}).encode()])
def test_unreadable_capabilities_are_a_value_error(body: bytes) -> None:
    with pytest.raises(ValueError, match="not an OCS capabilities answer"):
        parse_capabilities(body)
