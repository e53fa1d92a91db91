"""The daemon as a real process: real socket, real watchdog, real signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from syncd.control import Request, encode
from tests.daemon.conftest import World, json_lines, put_object, raw_exchange, reports
from tests.daemons import bucket_files, sha, syncd_cmd, tree_files, wait_for
from tests.integration.cli_helpers import REPORT_KEYS

WATCH_TIMEOUT_S = 20.0


def test_now_through_the_socket_streams_progress_and_result(world: World) -> None:
    world.daemon("--first-run-within", "3600")
    out = world.cli("now", "alice", "--json")
    assert out.returncode == 0, out.stderr
    lines = json_lines(out.stdout)
    events = [line.get("event") for line in lines]
    for expected in ("listing", "listed", "applying", "start", "done", "finished"):
        assert expected in events, events
    started = [line["path"] for line in lines if line.get("event") == "start"]
    assert sorted(started) == sorted(line["path"] for line in lines if line.get("event") == "done")
    report = lines[-1]  # the same schema as an in-process run's (tests/integration/test_cli.py)
    assert set(report) == REPORT_KEYS and report["event"] == "report" and report["reported"] is True
    assert report["outcome"] == "ok" and report["done"] == {"copy": 2} and report["error_count"] == 0
    assert bucket_files(world.alice_bucket) == tree_files(world.alice)

    plain = world.cli("now", "alice")
    assert plain.returncode == 0 and "alice/default: ok: nothing to do" in plain.stdout


def test_status_pause_resume_reload(world: World) -> None:
    daemon = world.daemon("--first-run-within", "0")
    status = daemon.wait_idle()
    by_pair = {p["pair"]: p for p in status["pairs"]}
    assert set(by_pair) == {"alice/default", "bob/default"}
    assert by_pair["alice/default"]["last"]["outcome"] == "ok", daemon.log()
    assert by_pair["alice/default"]["watch"].startswith("watching")
    assert by_pair["alice/default"]["next_run"] is not None

    assert world.cli("pause", "alice").returncode == 0
    paused = world.request("status", "alice")[-1]["pairs"][0]
    assert paused["paused"] is True
    refused = world.cli("now", "alice")
    assert refused.returncode == 5 and "paused" in refused.stderr
    (world.alice / "while-paused.txt").write_text("later\n")
    # the watcher's hint reaches the daemon, which skips the run: the event that a run did not happen
    wait_for(lambda: daemon.lines("alice/default: skipped, paused"), 60, f"the skip\n{daemon.log()}")
    assert "while-paused.txt" not in bucket_files(world.alice_bucket)

    assert world.cli("resume", "alice").returncode == 0
    wait_for(lambda: "while-paused.txt" in bucket_files(world.alice_bucket), WATCH_TIMEOUT_S, "resume to sync")

    reload = world.cli("reload")
    assert reload.returncode == 0 and "reloaded" in reload.stdout, reload.stderr
    after = {p["pair"]: p for p in world.request("status")[-1]["pairs"]}
    assert after["alice/default"]["paused"] is False and after["alice/default"]["watch"].startswith("watching")


def test_local_edit_reaches_the_bucket_without_now_and_does_not_loop(world: World) -> None:
    daemon = world.daemon("--first-run-within", "0")
    daemon.wait_idle()
    started = time.monotonic()
    (world.alice / "docs" / "new.txt").write_text("fresh\n")
    wait_for(
        lambda: bucket_files(world.alice_bucket).get("docs/new.txt") == sha(b"fresh\n"),
        WATCH_TIMEOUT_S,
        "the watcher to sync docs/new.txt",
    )
    latency = time.monotonic() - started
    assert latency < WATCH_TIMEOUT_S

    (world.alice / "readme.txt").write_text("edited\n")
    wait_for(
        lambda: bucket_files(world.alice_bucket).get("readme.txt") == sha(b"edited\n"),
        WATCH_TIMEOUT_S,
        "the watcher to sync an edit",
    )
    (world.alice / "docs" / "new.txt").unlink()
    wait_for(
        lambda: "docs/new.txt" not in bucket_files(world.alice_bucket), WATCH_TIMEOUT_S, "the watcher to sync a delete"
    )

    daemon.wait_idle()
    runs_before = len(daemon.lines("alice/default: run started"))
    time.sleep(3.0)  # six quiet periods: an echo loop would show up as more runs
    assert len(daemon.lines("alice/default: run started")) == runs_before, daemon.log()


def test_two_now_at_once_run_once(world: World) -> None:
    for i in range(300):
        (world.alice / f"f{i:03d}.txt").write_text(f"file {i}\n")
    world.daemon("--first-run-within", "3600")
    socks = []
    for _ in range(2):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(60)
        sock.connect(str(world.socket))
        socks.append(sock)
    payload = encode(Request("now", "alice").to_json())
    for sock in socks:  # both requests leave within microseconds of each other
        sock.sendall(payload)
    replies: list[list[dict[str, Any]]] = [[], []]

    def read(i: int) -> None:
        with socks[i], socks[i].makefile("rb") as stream:
            replies[i] = [json.loads(line) for line in stream]

    readers = [threading.Thread(target=read, args=(i,)) for i in range(2)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(90)
    results = [reply[-1] for reply in replies]
    assert all(r["ok"] and r["exit"] == 0 for r in results), results
    copies = [r["results"][0]["done"].get("copy", 0) for r in results]
    assert copies == [302, 302], copies  # the same run answered both: every file copied once
    joined = [any(line.get("event") == "joined" for line in reply) for reply in replies]
    assert sorted(joined) == [False, True], [reply[:2] for reply in replies]
    assert len(bucket_files(world.alice_bucket)) == 302


def test_broken_pair_does_not_stop_the_other_user(world: World) -> None:
    daemon = world.daemon("--first-run-within", "3600")
    out = world.cli("now", "--json")
    assert out.returncode == 4, out.stderr
    results = reports(out.stdout)
    assert results["alice/default"]["outcome"] == "ok"
    assert results["bob/default"]["outcome"] == "fatal"
    assert "does not exist" in results["bob/default"]["message"]
    (world.alice / "after.txt").write_text("still syncing\n")
    wait_for(lambda: "after.txt" in bucket_files(world.alice_bucket), WATCH_TIMEOUT_S, "alice to keep syncing")
    assert daemon.proc is not None and daemon.proc.poll() is None


def test_bad_input_gets_clear_errors_and_never_a_crash(world: World) -> None:
    daemon = world.daemon("--first-run-within", "3600")
    cases = {
        b"this is not json\n": "malformed request",
        b"[1, 2]\n": "expected a JSON object",
        b'{"v": 1, "op": "explode"}\n': "unknown op",
        b'{"v": 9, "op": "status"}\n': "unsupported protocol version",
        b'{"v": 1, "op": "now", "dry_run": "yes"}\n': "'dry_run' must be true or false",
        b"\n": "empty",
        b"\xff\xfe\n": "malformed request",
        b'{"v": 1, "op": "now", "target": "carol"}\n': "no pair 'carol'",
    }
    for payload, needle in cases.items():
        reply = raw_exchange(world.socket, payload)
        assert reply[-1]["ok"] is False and needle in reply[-1]["error"], (payload, reply)
    unknown = world.cli("now", "carol")
    assert unknown.returncode == 2 and "no pair 'carol'" in unknown.stderr
    # a peer that connects and says nothing is dropped after a timeout, others are served meanwhile
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.connect(str(world.socket))
        assert world.request("status")[-1]["ok"] is True
    assert daemon.proc is not None and daemon.proc.poll() is None


def _as_other_user(path: Path, *, groups: list[int]) -> dict[str, Any]:
    """Fork a child that drops to uid/gid 65534 (with ``groups``) and sends ``status``."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        try:
            os.close(read_fd)
            os.setgroups(groups)
            os.setgid(65534)
            os.setuid(65534)
            try:
                reply = raw_exchange(path, encode(Request("status").to_json()))[-1]
            except PermissionError as exc:
                reply = {"ok": False, "error": f"connect: {exc}", "connect_refused": True}
            except Exception as exc:
                reply = {"ok": False, "error": f"client failed: {exc!r}"}
            os.write(write_fd, encode(reply))
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(data)  # type: ignore[no-any-return]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another uid (os.setuid)")
def test_peer_without_permission_is_refused(world: World) -> None:
    world.daemon("--first-run-within", "3600")
    os.chmod(world.base, 0o711)  # mkdtemp's 0700 would stop the other user before the socket does
    assert os.stat(world.socket).st_mode & 0o777 == 0o660
    refused_by_mode = _as_other_user(world.socket, groups=[])
    assert refused_by_mode.get("connect_refused"), refused_by_mode
    os.chmod(world.socket, 0o666)  # a socket opened up by mistake: SO_PEERCRED still says no
    refused = _as_other_user(world.socket, groups=[])
    assert refused["ok"] is False and "permission denied: uid 65534" in refused["error"], refused
    member = _as_other_user(world.socket, groups=[os.stat(world.socket).st_gid])
    assert member["ok"] is True, member


def test_reload_with_a_broken_config_keeps_the_old_one(world: World) -> None:
    daemon = world.daemon("--first-run-within", "3600")
    good = world.config.read_text()
    world.config.write_text(good + "\n[users.carol\nbroken = \n")
    assert world.cli("reload").returncode == 4  # the client cannot read the config to find the socket
    out = world.cli("reload", "--socket", str(world.socket))
    assert out.returncode == 4 and "reload failed" in out.stderr and "not valid TOML" in out.stderr
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: len(daemon.lines("reload failed")) >= 2, 10, "the SIGHUP reload to fail")
    status = world.request("status")[-1]
    assert status["ok"] and {p["pair"] for p in status["pairs"]} == {"alice/default", "bob/default"}
    assert world.request("now", "alice")[-1]["exit"] == 0  # the old config still syncs

    (world.base / "carol").mkdir()
    world.write_config(
        '[users.carol]\nfiles = { type = "local", path = "carol" }\nbucket = { type = "dir", path = "bucket-carol" }\n'
    )
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: daemon.lines("reloaded"), 10, "the SIGHUP reload to succeed")
    pairs = {p["pair"] for p in world.request("status")[-1]["pairs"]}
    assert "carol/default" in pairs


def _big_tree(root: Path, files: int, size: int) -> None:
    block = os.urandom(size)
    for i in range(files):
        folder = root / f"batch{i // 200:02d}"
        folder.mkdir(exist_ok=True)
        (folder / f"file{i:05d}.bin").write_bytes(block[i % 64 :] + i.to_bytes(4, "big"))


def _assert_bucket_consistent(world: World) -> None:
    """No object in the bucket differs from its source: nothing half-written is visible."""
    source = tree_files(world.alice)
    for key, digest in bucket_files(world.alice_bucket).items():
        assert source.get(key) == digest, f"{key} in the bucket is not the file it was copied from"
    assert not [p for p in world.alice.rglob(".syncd-tmp-*")]


def test_sigterm_between_items_then_restart_converges(world: World) -> None:
    _big_tree(world.alice, 3000, 16 * 1024)
    daemon = world.daemon("--first-run-within", "3600", "--stop-timeout", "20")
    client = subprocess.Popen(
        [*syncd_cmd(), "--config", str(world.config), "now", "alice", "--json"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert client.stdout is not None
        done = 0
        for line in client.stdout:  # bounded: the daemon answers or the test's timeout fires
            done += '"event": "done"' in line
            if done >= 100:
                break
        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        rest = client.communicate(timeout=60)[0]
        assert daemon.proc is not None
        assert daemon.proc.wait(30) == 0
        took = time.monotonic() - started
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(10)
    assert took < 20, took
    last = json_lines(rest)[-1]
    assert last["event"] == "report" and last["outcome"] == "interrupted" and not last["reported"], last
    status = world.cli("status", "alice")  # the index says so too: not "fatal", not "running"
    assert status.stdout.splitlines()[1].startswith("alice/default: interrupted, last run"), status.stdout
    copied = len(bucket_files(world.alice_bucket))
    assert 100 <= copied < 3002, copied
    _assert_bucket_consistent(world)

    world.daemon("--first-run-within", "3600")
    out = world.cli("now", "alice", "--json")
    assert out.returncode == 0, out.stderr
    assert bucket_files(world.alice_bucket) == tree_files(world.alice)


def test_sigterm_during_one_huge_file_abandons_it_cleanly(world: World) -> None:
    big = world.alice / "huge.bin"
    with open(big, "wb") as out:  # 300 MB, mostly holes: cheap to make, real bytes to copy
        for offset in range(0, 300 << 20, 16 << 20):
            out.seek(offset)
            out.write(os.urandom(4096))
        out.truncate(300 << 20)
    daemon = world.daemon("--first-run-within", "3600", "--stop-timeout", "0.2")
    client = subprocess.Popen(
        [*syncd_cmd(), "--config", str(world.config), "now", "alice", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        shards = world.alice_bucket / "objects"

        def data_growing() -> bool:
            return any(
                p.stat().st_size > 1 << 20
                for p in shards.rglob("*")
                if p.is_file() and not p.name.endswith(".json") and p.name != ".lock"
            )

        wait_for(data_growing, 30, "the huge file to be in flight", every=0.01)
        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.proc is not None
        daemon.proc.wait(15)
        took = time.monotonic() - started
        client.communicate(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(10)
    assert took < 5, took
    _assert_bucket_consistent(world)

    world.daemon("--first-run-within", "3600")
    out = world.cli("now", "alice", "--json")
    assert out.returncode == 0, out.stderr
    assert bucket_files(world.alice_bucket) == tree_files(world.alice)


def test_systemd_notify_ready_watchdog_stopping(world: World) -> None:
    listen = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = world.base / "notify.sock"
    listen.bind(str(path))
    listen.settimeout(10)
    messages: list[str] = []

    def collect() -> None:
        try:
            while True:
                messages.append(listen.recv(4096).decode())
        except OSError:
            return

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    daemon = world.daemon("--first-run-within", "3600", env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"})
    wait_for(lambda: any("WATCHDOG=1" in m for m in messages), 10, "a watchdog ping")
    assert any(m.startswith("READY=1") and "STATUS=2 pair(s)" in m for m in messages), messages
    assert daemon.stop() == 0
    wait_for(lambda: any("STOPPING=1" in m for m in messages), 10, "STOPPING=1")
    listen.close()
    reader.join(5)


def test_metrics_on_the_loopback(world: World) -> None:
    pytest.importorskip("prometheus_client")
    import urllib.request

    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    world.daemon("--first-run-within", "3600", "--metrics", str(port))
    assert world.cli("now", "alice").returncode == 0
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
        text = page.read().decode()
    assert 'syncd_runs_total{outcome="ok",pair="alice/default",reason="now"} 1.0' in text, text[:2000]
    assert 'syncd_actions_total{kind="copy",pair="alice/default"} 2.0' in text
    refused = subprocess.run(
        [*syncd_cmd(), "--config", str(world.config), "run", "--metrics", "0.0.0.0:9999"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert refused.returncode == 4 and "loopback address only" in refused.stderr


def test_the_socket_folder_is_made_only_where_its_parent_exists(world: World) -> None:
    """As root, a mistyped socket path made every missing folder above it (/nonexistent/dir)."""
    missing = world.base / "nonexistent"
    text = world.config.read_text().replace('socket = "run/control.sock"', f'socket = "{missing}/dir/control.sock"')
    world.config.write_text(text)
    done = subprocess.run(
        [*syncd_cmd(), "--config", str(world.config), "run"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 4, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "ERROR" in lines[0], lines
    assert f"cannot listen on {missing}/dir/control.sock: {missing} does not exist" in lines[0]
    assert not missing.exists()
    # the socket's own folder is made when its parent exists (run/ in this world)
    world.write_config()
    daemon = world.daemon("--first-run-within", "3600")
    assert world.socket.parent.is_dir() and daemon.proc is not None and daemon.proc.poll() is None


def test_names_in_the_daemons_log_and_replies_are_escaped_and_skips_said_once(world: World) -> None:
    put_object(world.alice_bucket, "a\nforged INFO line.txt")
    put_object(world.alice_bucket, "evil\u202etxt.exe")
    daemon = world.daemon("--first-run-within", "3600")
    first = world.cli("now", "alice", "-v")
    assert first.returncode == 0, first.stderr
    shown = "skipped a\\nforged INFO line.txt: unsafe name on bucket"
    assert first.stderr.count(shown) == 1, first.stderr
    assert "evil\\u202etxt.exe" in first.stderr and "\u202e" not in first.stdout + first.stderr
    quiet = world.cli("now", "alice")
    assert shown not in quiet.stderr and "1 name(s) skipped" in quiet.stdout, quiet
    assert world.cli("now", "alice", "-v").stderr.count(shown) == 1  # -v lists every skipped name
    log = daemon.log()
    assert log.count(shown) == 1, log  # logged once, when it was first skipped
    assert not [line for line in log.splitlines() if line.startswith("forged")], log
    assert "\u202e" not in log
