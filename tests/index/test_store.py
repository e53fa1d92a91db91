"""The index: Alembic revisions build exactly the models, old databases upgrade with their
data, the migrations ship inside the wheel, and the same code runs on PostgreSQL."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from syncd.errors import FatalError
from syncd.index.schema import metadata
from syncd.index.store import HEAD_REVISION, Store, migrations_dir, upgrade
from syncd.lock import process_alive, process_identity
from syncd.models import Base

REPO = Path(__file__).resolve().parents[2]


def sample(path: str) -> Base:
    return Base(path, 10, "ab" * 32, "etag-a", "etag-b", 1, 2, 99, "fileid-7")


def test_head_revision_constant_matches_the_migrations() -> None:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", migrations_dir())
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


def schema_diff(url: str) -> list[object]:
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    return list(diff)


def test_upgrading_an_empty_database_yields_exactly_the_models(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    Store.open(db).close()
    assert schema_diff(f"sqlite:///{db}") == []
    with create_engine(f"sqlite:///{db}").connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_an_older_revision_database_upgrades_and_keeps_its_data(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        upgrade(conn, "0001")
        conn.execute(text("INSERT INTO entries VALUES ('kept.txt', 3, NULL, 'a', 'b', 1, 2, NULL, NULL)"))
    engine.dispose()
    store = Store.open(db)
    try:
        assert set(store.load_bases()) == {"kept.txt"}
        store.save_folder_etags("files", {"docs": '"etag1"'})  # a table revision 0002 added
        assert store.load_folder_etags("files") == {"docs": '"etag1"'}
    finally:
        store.close()
    assert schema_diff(f"sqlite:///{db}") == []


def exercise(store: Store) -> None:
    """The store's whole surface, as the engine and the CLI use it."""
    run = store.start_run()
    store.commit_actions(
        run,
        put=[sample("a.txt"), sample("b/c.txt")],
        history=[("copy", "a.txt", "bucket", "new"), ("conflict", "b/c.txt", "files", "c (x).txt")],
    )
    store.commit_actions(run, put=[sample("a.txt")], drop=["b/c.txt"])
    assert store.load_bases() == {"a.txt": sample("a.txt")}
    assert store.count_bases() == 1
    store.commit_actions(run, put=[sample("d/x"), sample("d/e/y"), sample("d0"), sample("dd/z")])
    assert set(store.load_bases(under=["d"])) == {"d/x", "d/e/y"}  # a folder hint: not "d0", not "dd/z"
    assert set(store.load_bases(under=["d0", "a.txt"])) == {"d0", "a.txt"}
    store.commit_actions(run, drop=["d/x", "d/e/y", "d0", "dd/z"])
    info = store.record_item_error("bad.txt", "boom", now=1000.0)
    again = store.record_item_error("bad.txt", "boom", now=1001.0)
    assert (info.attempts, again.attempts) == (1, 2) and again.next_retry - 1001.0 > info.next_retry - 1000.0
    store.save_hashes([("a.txt", "etag-a", "cd" * 32)])
    assert store.load_hash_cache(["a.txt", "b.txt"]) == {"a.txt": ("etag-a", "cd" * 32)}
    running = store.runs(1)[0]
    assert (running.outcome, running.host, running.pid) == ("running", socket.gethostname(), os.getpid())
    assert process_alive(running.host, running.pid, running.pid_start) is True
    store.finish_run(run, outcome="ok", counts={"copy": 2}, errors=1, bytes_moved=20, message="")
    assert store.runs(1)[0].counts == {"copy": 2}
    assert [h.action for h in store.history(10, "conflict")] == ["conflict"]
    assert [e.path for e in store.item_errors()] == ["bad.txt"]
    exercise_skipped(store)


def exercise_skipped(store: Store) -> None:
    """Skipped names: a run reports only the new ones; a hinted run touches only its paths."""
    first = [("x/a\nb", "control character"), ("x/c", "refused"), ("y", "refused")]
    assert store.note_skipped(first) == sorted(first)
    assert store.note_skipped(first) == []  # known: nothing to report again
    assert store.note_skipped([("x/c", "refused")], save=False) == []  # a dry run...
    assert store.count_skipped() == 3  # ...changes nothing
    assert store.note_skipped([("x/c", "too long")], under=["x"]) == [("x/c", "too long")]  # another reason
    assert store.skipped() == [("x/c", "too long"), ("y", "refused")]  # x/a\nb is gone; y was not hinted
    assert store.note_skipped([]) == [] and store.count_skipped() == 0


def test_store_round_trip_on_sqlite(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "x" / "index.db")
    try:
        exercise(store)
    finally:
        store.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the PostgreSQL server named by SYNCD_TEST_POSTGRES."""
    server = os.environ.get("SYNCD_TEST_POSTGRES")
    if not server:
        if os.environ.get("SYNCD_REQUIRE_POSTGRES") == "1":
            pytest.fail("SYNCD_REQUIRE_POSTGRES=1 but SYNCD_TEST_POSTGRES is not set")
        pytest.skip("no PostgreSQL server: set SYNCD_TEST_POSTGRES=postgresql+psycopg://user:pw@127.0.0.1/db")
    name = f"syncd_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.postgres
def test_the_same_models_run_on_postgresql(postgres_url: str) -> None:
    store = Store.open(postgres_url)
    try:
        exercise(store)
    finally:
        store.close()
    assert schema_diff(postgres_url) == []
    Store.open(postgres_url).close()  # opening an up-to-date database again is a no-op


@pytest.mark.slow
def test_migrations_ship_inside_the_wheel(tmp_path: Path) -> None:
    """Build the wheel, install it in a fresh venv, upgrade an empty and an old database there."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(REPO)],
        check=True,
        timeout=300,
    )
    wheel = next(dist.glob("syncd-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)],
        check=True,
        timeout=300,
    )
    old_db = tmp_path / "old.db"
    script = f"""
import sys, syncd, sqlalchemy
from pathlib import Path
assert "site-packages" in syncd.__file__, syncd.__file__
from syncd.index.store import Store, upgrade, migrations_dir
assert "site-packages" in migrations_dir(), migrations_dir()
Store.open(Path({str(tmp_path / "empty.db")!r})).close()
engine = sqlalchemy.create_engine("sqlite:///{old_db}")
with engine.begin() as conn:
    upgrade(conn, "0001")
engine.dispose()
store = Store.open(Path({str(old_db)!r}))
print(store.load_folder_etags("files"), migrations_dir())
store.close()
"""
    result = subprocess.run(
        [str(python), "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("{}")


def test_an_index_from_a_newer_syncd_is_a_clear_fatal_error(tmp_path: Path) -> None:
    index = tmp_path / "index.db"
    with sqlite3.connect(index) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES ('9999')")  # a revision this syncd lacks
    with pytest.raises(FatalError, match=r"cannot create or upgrade the schema: .*9999"):
        Store.open(index)


def test_a_fresh_process_migrates_in_a_child_and_never_loads_alembic(tmp_path: Path) -> None:
    """`syncd now` and the daemon do not carry Alembic/SQLAlchemy (~25 MB) after a migration."""
    probe = (
        "import sys; from syncd.index.store import Store; s = Store.open(sys.argv[1]); "
        "s.save_folder_etags('files', {'a': 'e'}); s.close(); "
        "print(sorted(m for m in ('alembic', 'sqlalchemy') if m in sys.modules))"
    )
    index = tmp_path / "state" / "index.db"
    done = subprocess.run(
        [sys.executable, "-c", probe, str(index)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    with sqlite3.connect(index) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == HEAD_REVISION


def test_a_failed_child_migration_is_one_clear_line(tmp_path: Path) -> None:
    index = tmp_path / "index.db"
    with sqlite3.connect(index) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES ('9999')")
    probe = "import sys; from syncd.index.store import Store; Store.open(sys.argv[1])"
    done = subprocess.run(
        [sys.executable, "-c", probe, str(index)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "FatalError" in last and "cannot create or upgrade the schema" in last and "9999" in last, last


# A migrator that dies with SIGKILL right after its first CREATE TABLE has run.
DIE_AFTER_FIRST_CREATE = """
import os, signal, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine
from syncd.index.store import upgrade_url

@event.listens_for(Engine, "after_cursor_execute")
def die(conn, cursor, statement, parameters, context, executemany):
    if statement.lstrip().upper().startswith("CREATE TABLE"):
        os.kill(os.getpid(), signal.SIGKILL)

upgrade_url("sqlite:///" + sys.argv[1])
"""


def test_a_migration_killed_halfway_leaves_no_half_schema(tmp_path: Path) -> None:
    """Invariant 1 for the index itself: a kill between two CREATE TABLEs of a first
    migration (the kill -9 loop hit it) must not leave tables without their revision row,
    which made every later open fail on 'table entries already exists'."""
    index = tmp_path / "index.db"
    done = subprocess.run(
        [sys.executable, "-c", DIE_AFTER_FIRST_CREATE, str(index)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == -9, done.stderr
    with sqlite3.connect(index) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == set(), f"a killed migration left {sorted(tables)} behind"
    store = Store.open(index)
    store.commit_actions(store.start_run(), put=[sample("a.txt")])
    assert set(store.load_bases()) == {"a.txt"}
    store.close()


def test_two_processes_migrating_one_index_take_turns(tmp_path: Path) -> None:
    """An orphaned migrator (its syncd was killed) and the next run's migrate the same
    file at once: both end at head, neither fails."""
    index = tmp_path / "index.db"
    sqlite3.connect(index).close()
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "syncd.index.migrate", str(index)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [(c.wait(timeout=120), c.communicate()[1]) for c in children]
    assert [rc for rc, _ in results] == [0, 0, 0, 0], results
    with sqlite3.connect(index) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD_REVISION,)]


def test_an_index_of_revision_0002_upgrades_keeping_its_runs(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        upgrade(conn, "0002")
        conn.execute(
            text(
                "INSERT INTO runs (started_at, ended_at, outcome, counts, errors, bytes_moved, message) "
                "VALUES (1, 2, 'ok', '{}', 0, 0, '')"
            )
        )
    engine.dispose()
    store = Store.open(db)
    try:
        (old,) = store.runs(5)
        assert (old.outcome, old.host, old.pid) == ("ok", None, None)
        assert store.note_skipped([("a", "why")]) == [("a", "why")]  # revision 0003's table
    finally:
        store.close()
    assert schema_diff(f"sqlite:///{db}") == []


def test_a_process_is_told_from_a_later_one_with_its_pid() -> None:
    host, pid, start = process_identity()
    assert process_alive(host, pid, start) is True
    assert process_alive(host, pid, "another-boot:1") is False  # the pid was reused
    assert process_alive("another-host", pid, start) is None  # cannot be checked from here
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(60)
    assert process_alive(host, child.pid, None) is False


def test_new_indexes_after_the_first_are_copies_made_without_a_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from syncd.index import store as store_module

    monkeypatch.setattr(store_module, "_EMPTY_INDEX", {})
    Store.open(tmp_path / "first.db").close()  # made by Alembic (in a child, unless loaded here)
    upgrades: list[Path] = []
    monkeypatch.setattr(store_module, "upgrade_sqlite", upgrades.append)
    second = Store.open(tmp_path / "second.db")
    try:
        assert upgrades == []  # a copy of the first: no Alembic, no child process
        second.save_full_scans(["files"], 1.0)
        assert second.side_scans()["files"].full_at == 1.0 and second.count_bases() == 0
    finally:
        second.close()

    def schema(path: Path) -> tuple[list[tuple[str, str]], str, str]:
        with sqlite3.connect(path) as conn:
            tables = conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
            (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
            (version,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return tables, mode, version

    assert schema(tmp_path / "second.db") == schema(tmp_path / "first.db")
    assert schema(tmp_path / "second.db")[1:] == ("wal", store_module.HEAD_REVISION)
