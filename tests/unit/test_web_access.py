"""The dashboard's access: the token file, sessions, CSRF tokens, and the address rules."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from syncd.config import load_config, parse_web_address
from syncd.errors import ConfigError, FatalError
from syncd.web.access import MAX_SESSIONS, Sessions, load_token


def test_a_missing_default_token_is_made_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "state" / "web-token"
    token = load_token(path, create=True)
    assert len(token) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_token(path, create=True) == token  # the next start keeps it


def test_a_configured_token_file_is_read_never_made(tmp_path: Path) -> None:
    with pytest.raises(FatalError, match="cannot read a token"):
        load_token(tmp_path / "nope", create=False)
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(FatalError, match="at least 16"):
        load_token(short, create=False)
    good = tmp_path / "good"
    good.write_text("  0123456789abcdef-long-enough  \nsecond line ignored\n")
    assert load_token(good, create=False) == "0123456789abcdef-long-enough"


def test_sessions_check_the_token_and_their_csrf(tmp_path: Path) -> None:
    sessions = Sessions("0123456789abcdef-token")
    assert sessions.token_ok("0123456789abcdef-token")
    assert not sessions.token_ok("0123456789abcdef-tokeN") and not sessions.token_ok(None) and not sessions.token_ok("")
    one, two = sessions.open(), sessions.open()
    assert len({one.id, two.id, one.csrf, two.csrf}) == 4
    assert sessions.get(one.id) is one and sessions.get("forged") is None and sessions.get(None) is None
    assert Sessions.csrf_ok(one, one.csrf)
    assert not Sessions.csrf_ok(one, two.csrf) and not Sessions.csrf_ok(one, None) and not Sessions.csrf_ok(one, "")


def test_sessions_expire_and_are_bounded() -> None:
    expired = Sessions("0123456789abcdef-token", ttl_s=-1)
    gone = expired.open()
    assert expired.get(gone.id) is None
    sessions = Sessions("0123456789abcdef-token")
    first = sessions.open()
    for _ in range(MAX_SESSIONS):
        sessions.open()
    assert sessions.get(first.id) is None  # the oldest went first


def test_web_addresses() -> None:
    assert parse_web_address("127.0.0.1:8484") == ("127.0.0.1", 8484)
    assert parse_web_address("[::1]:8484") == ("::1", 8484)
    assert parse_web_address("8484") == ("127.0.0.1", 8484)
    for bad in ("localhost:8484", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "x"):
        with pytest.raises(ValueError, match="web: "):
            parse_web_address(bad)


def config(tmp_path: Path, daemon: str) -> Path:
    path = tmp_path / "syncd.toml"
    path.write_text(
        f'[daemon]\nstate_dir = "state"\n{daemon}\n[users.alice]\n'
        'files = { type = "local", path = "files" }\nbucket = { type = "dir", path = "bucket" }\n'
    )
    return path


def test_the_config_refuses_a_public_address_without_a_token_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"daemon\.web: '0\.0\.0\.0:8484' is not a loopback address"):
        load_config(config(tmp_path, 'web = "0.0.0.0:8484"'))
    with pytest.raises(ConfigError, match=r"daemon\.web: 'example\.org:1' is not HOST:PORT"):
        load_config(config(tmp_path, 'web = "example.org:1"'))
    loaded = load_config(config(tmp_path, 'web = "0.0.0.0:8484"\nweb_token_file = "secrets/web"'))
    assert loaded.daemon.web == "0.0.0.0:8484"
    assert loaded.daemon.web_token_file == (tmp_path / "secrets" / "web").resolve()  # relative to the config
    assert load_config(config(tmp_path, "")).daemon.web is None  # off by default
