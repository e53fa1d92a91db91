"""The Nextcloud-protocol test server answers as a real Nextcloud 31 did.

``exchanges.jsonl`` (in /work/shared/nextcloud-wire, outside the project; ``SYNCD_NEXTCLOUD_WIRE``
points elsewhere) records what a real Nextcloud 31 answered to 815 requests, grouped in scenarios.
Each scenario is replayed against a fresh :class:`NextcloudServer` (user ``corpus1``, ``corpus2``
for 11b-quota) and every exchange is compared: the status; the headers a client reads (ETag and
OC-ETag with their shape, OC-FileId, X-OC-MTime, WWW-Authenticate, Content-Range, the Content-Type
family and spelling, Allow, DAV on OPTIONS, OC-Checksum on GET/HEAD, gzip, Retry-After); the hrefs,
the property names per propstat status and the values clients read of multistatus bodies; the
exception, message and extra elements of Sabre errors; the keys, values and error flags of JSON
answers; the length of downloads.

Placeholders (``{etag3}``, ``{fileid2}``...) are bound to our values the first time they appear:
the same placeholder must then give the same value, and two different ones different values (that
is how "the ETag stays the same after a quick overwrite" is checked). Times (``{dateN}``, ``{tsN}``)
are checked by shape only: the replay runs on a manual clock that moves one second per step, except
where the corpus shows steps that ran within one second (:data:`SAME_SECOND`).

What is not compared, and why:

* :data:`NOT_COMPARED` and :data:`MESSAGE_NOT_COMPARED`: one answer that was luck on the real
  server, and one message worded by another XML library.
* The recorded ``corpus1`` account held every scenario's files (and an old upload folder): a
  listing of its root keeps only the scenario's own folders, its root's size and quota-used and the
  ``used`` of its OCS quota are not compared, and a listing of the uploads home keeps only the home.
* Bodies the corpus does not hold (``<N bytes>`` of OCS answers, trimmed HTML pages) and archives.
* The 300 MiB PUTs of 11c are sent with 1 MiB; 05b-05f work in the s05 folder that 05a created on
  the real server, the replay creates it first.
* Concurrent exchanges cannot be replayed by timing: each round of eight MKCOLs of one folder (04)
  is sent at once and checked as an outcome set (one 201, the others as Nextcloud answered losers),
  and the 11c requests that met the locked file are sent while the test holds that file's lock.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import requests

from tests.webdav.nextcloud import ManualClock, NextcloudServer
from tests.webdav.nextcloud.store import FileWrite

WIRE_ENV = "SYNCD_NEXTCLOUD_WIRE"
USERS = {"corpus1": "corpus1-app-password", "corpus2": "corpus2-app-password"}
LOGIN_PASSWORD = "corpus1-login-password"
WRONG_PASSWORD = "not-the-app-password"
UPLOAD_ID = "corpus-upload-0001"
RECORDED_HOST = "http://127.0.0.1:8080"
OTHER_HOST = "http://localhost:8080"
BIG_BODY = 1 << 20  # the 300 MiB PUTs of 11c are sent with 1 MiB: only their duration depends on the size

SCENARIOS = (
    "01-propfind",
    "02-put-mtime-checksum",
    "02b-etag-on-overwrite",
    "03-conditional-put",
    "04-mkcol",
    "05a-chunked-new-destination",
    "05b-chunked-if-none-match",
    "05c-chunked-if-match",
    "05d-chunked-overwrite-f",
    "05e-chunked-if-header",
    "05f-chunked-errors",
    "06-move-copy",
    "07-trashbin",
    "08-versions",
    "09-names",
    "10-bulk-upload",
    "11a-auth-bruteforce",
    "11b-quota",
    "11c-locked-file",
    "11d-get-range-head-options",
    "12-capabilities-notifications",
)

# Steps the real server ran in the same wall-clock second as the step before (the replay's clock
# does not move for them), because the notes say so or because the corpus shows what only happens
# within one second.
SAME_SECOND: frozenset[tuple[str, int]] = frozenset(
    # 02b: "immediately", "in the same second": overwrites that kept the file's ETag (3, 6, 11, 14,
    # 21, 26, 33; a chunked one takes MKCOL + chunk + MOVE), and one that did not although it ran in
    # the same second, because only its X-OC-MTime changed (36).
    [("02b-etag-on-overwrite", step) for step in (3, 6, 9, 10, 11, 12, 13, 14, 19, 20, 21, 24, 25, 26, 33, 36)]
    # 07: dir and keep.txt share one deletion timestamp ({ts2}, steps 8 and 11); "delete it again
    # within the same second" (34-36) left one trash entry.
    + [("07-trashbin", step) for step in (9, 10, 11, 35, 36)]
    # 09: overwrites that kept the ETag: the NFD name (60), ok.txt (73-76), the 228-byte name (86-88).
    + [("09-names", step) for step in (60, 74, 75, 76, 87, 88)]
    # 11c: two small PUTs that answered the same ETag.
    + [("11c-locked-file", 6)]
)

# Exchanges that are replayed but not compared, and why.
NOT_COMPARED: dict[tuple[str, int], str] = {
    ("09-names", 90): "a 229-byte name: the real server's temporary .part name has a random length, this PUT "
    "happened to fit (step 89, the same request, failed); ours always answers 500. The replay then stores the "
    "file as the real server did, so that the later listings see the same tree",
}
# Parts of exchanges that cannot be compared, and why.
MESSAGE_NOT_COMPARED: dict[tuple[str, int], str] = {
    ("01-propfind", 27): "libxml's wording of an XML syntax error (Python's parser words it differently)",
}

PLACEHOLDER = re.compile(r"\{(user|otheruser|uploadid|locktoken|instanceid|(?:etag|fileid|ocid|date|ts|isodate)\d+)\}")
KIND_PATTERNS = {
    "etag": r"[0-9a-f]{13}|[0-9a-f]{32}",
    "fileid": r"\d+",
    "ocid": r"\d{8}oc[a-z0-9]{10}",
    "date": r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT",
    "ts": r"\d{9,11}",
    "isodate": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00",
    "locktoken": r"[^>\s]+",
    "instanceid": r"oc[a-z0-9]{10}",
}
TIMING_KINDS = frozenset({"date", "ts", "isodate"})
DISTINCT_KINDS = frozenset({"etag", "fileid", "ocid"})
DAV = "{DAV:}"
OC = "{http://owncloud.org/ns}"
NC = "{http://nextcloud.org/ns}"
SABRE = "{http://sabredav.org/ns}"
VALUE_PROPS = frozenset(
    {
        DAV + "getetag",
        DAV + "getlastmodified",
        DAV + "getcontentlength",
        DAV + "getcontenttype",
        DAV + "quota-used-bytes",
        DAV + "quota-available-bytes",
        DAV + "creationdate",
        OC + "fileid",
        OC + "id",
        OC + "size",
        OC + "permissions",
        OC + "owner-id",
        NC + "creation_time",
        NC + "upload_time",
        NC + "has-preview",
        NC + "trashbin-filename",
        NC + "trashbin-original-location",
        NC + "trashbin-deletion-time",
        NC + "version-label",
        NC + "version-author",
    }
)
ROOT_STATE_PROPS = frozenset({OC + "size", DAV + "quota-used-bytes"})


# -- the corpus ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    scenario: str
    step: int
    note: str
    method: str
    path: str
    request_headers: dict[str, str]
    request_body: str | None
    status: int
    headers: dict[str, str | list[str]]
    body: str | None

    @property
    def key(self) -> tuple[str, int]:
        return self.scenario, self.step


def wire_folder() -> Path:
    configured = os.environ.get(WIRE_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2].parent / "shared" / "nextcloud-wire"


@functools.cache
def corpus() -> dict[str, list[Exchange]]:
    scenarios: dict[str, list[Exchange]] = {}
    with (wire_folder() / "exchanges.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            request, answer = record["request"], record["response"]
            exchange = Exchange(
                scenario=record["scenario"],
                step=record["step"],
                note=record["note"],
                method=request["method"],
                path=request["path"],
                request_headers=request["headers"],
                request_body=request["body"],
                status=answer["status"],
                headers=answer["headers"],
                body=answer["body"],
            )
            scenarios.setdefault(exchange.scenario, []).append(exchange)
    return scenarios


@pytest.fixture(scope="module")
def exchanges_by_scenario() -> dict[str, list[Exchange]]:
    if not (wire_folder() / "exchanges.jsonl").is_file():
        message = f"the Nextcloud wire corpus is not at {wire_folder()} (set {WIRE_ENV})"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return corpus()


SUMMARY: dict[str, tuple[int, int]] = {}


@pytest.fixture(scope="module", autouse=True)
def print_summary(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not SUMMARY:
        return
    compared = sum(count for count, _ in SUMMARY.values())
    skipped = sum(count for _, count in SUMMARY.values())
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    line = (
        f"Nextcloud conformance: {compared} exchanges compared, {skipped} replayed without comparison, "
        f"in {len(SUMMARY)} scenarios"
    )
    if reporter is not None:
        reporter.write_line(line)
    else:
        print(line)


# -- placeholders --------------------------------------------------------------------------------


class Bindings:
    """The values our server gave for each placeholder of one scenario."""

    def __init__(self, user: str, other: str) -> None:
        self.values: dict[str, str] = {"user": user, "otheruser": other, "uploadid": UPLOAD_ID}
        self._names: dict[tuple[str, str], str] = {}

    def substitute(self, text: str) -> str:
        """A recorded request text with our values (a placeholder not seen yet stays as it is)."""
        return PLACEHOLDER.sub(lambda m: self.values.get(m.group(1), m.group(0)), text)

    def match(self, recorded: str, ours: str, where: str) -> str | None:
        """Compare a recorded text (with placeholders) to ours; bind new placeholders.

        :returns: None when they agree, else what differs.
        """
        pattern, groups = self._pattern(recorded)
        found = re.fullmatch(pattern, ours, re.DOTALL)
        if found is None:
            return f"{where}: expected {recorded!r}, got {ours!r}"
        for group, name in groups.items():
            problem = self._bind(name, found.group(group), where)
            if problem is not None:
                return problem
        return None

    def _pattern(self, recorded: str) -> tuple[str, dict[str, str]]:
        pieces: list[str] = []
        groups: dict[str, str] = {}
        position = 0
        for found in PLACEHOLDER.finditer(recorded):
            pieces.append(re.escape(recorded[position : found.start()]))
            position = found.end()
            name = found.group(1)
            kind = name.rstrip("0123456789")
            if name in self.values and kind not in TIMING_KINDS:
                pieces.append(re.escape(self.values[name]))
                continue
            group = f"g{len(groups)}"
            groups[group] = name
            pieces.append(f"(?P<{group}>{KIND_PATTERNS.get(kind, '.+?')})")
        pieces.append(re.escape(recorded[position:]))
        return "".join(pieces), groups

    def _bind(self, name: str, value: str, where: str) -> str | None:
        kind = name.rstrip("0123456789")
        if kind in TIMING_KINDS:
            self.values.setdefault(name, value)  # for later requests; times are compared by shape only
            return None
        bound = self.values.get(name)
        if bound is not None and bound != value:
            return f"{where}: {{{name}}} was {bound!r} before, now {value!r}"
        owner = self._names.get((kind, value))
        if kind in DISTINCT_KINDS and owner is not None and owner != name:
            return f"{where}: {{{name}}} and {{{owner}}} differ on the real server, both are {value!r} here"
        self.values[name] = value
        self._names[(kind, value)] = name
        return self._check_fileid_pair(name, where)

    def _check_fileid_pair(self, name: str, where: str) -> str | None:
        """``{ocidN}`` is ``{fileidN}`` in ``%08d`` + instance id form."""
        number = name.lstrip("abcdefghijklmnopqrstuvwxyz")
        fileid, ocid = self.values.get(f"fileid{number}"), self.values.get(f"ocid{number}")
        if fileid is not None and ocid is not None and int(ocid[:8]) != int(fileid):
            return f"{where}: {{ocid{number}}}={ocid} is not {{fileid{number}}}={fileid}"
        return None


# -- replaying one scenario ----------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]  # as sent, spelling and repetitions kept
    body: bytes

    def header_values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def header_names(self, name: str) -> list[str]:
        return [key for key, _ in self.headers if key.lower() == name.lower()]


@dataclass
class Outcome:
    compared: int = 0
    not_compared: int = 0
    mismatches: list[str] = field(default_factory=list)


class Replay:
    """Sends one scenario's requests to a fresh server and compares every answer."""

    def __init__(self, scenario: str, exchanges: list[Exchange]) -> None:
        self.scenario = scenario
        self.exchanges = exchanges
        self.user = "corpus2" if scenario == "11b-quota" else "corpus1"
        other = "corpus1" if self.user == "corpus2" else "corpus2"
        self.clock = ManualClock()
        self.server = NextcloudServer(USERS, clock=self.clock, throttle_delay_scale=0.0, mkcol_lock_hold_s=0.02)
        self.server.add_password("corpus1", LOGIN_PASSWORD)
        self.bindings = Bindings(self.user, other)
        self.own_folders = {
            match.group(1)
            for exchange in exchanges
            for match in [re.match(r"/remote\.php/dav/files/\{user\}/([^/?]+)", exchange.path)]
            if match
        }
        self.outcome = Outcome()
        self.http = requests.Session()
        self.locked_path: str | None = None

    def run(self) -> Outcome:
        self.server.start()
        self.create_folders_of_earlier_scenarios()
        try:
            index = 0
            while index < len(self.exchanges):
                exchange = self.exchanges[index]
                race = self.race_round(index)
                if race:
                    self.replay_race(race)
                    index += len(race)
                    continue
                self.before(exchange)
                self.replay(exchange)
                index += 1
        finally:
            self.http.close()
            self.server.stop()
        return self.outcome

    def before(self, exchange: Exchange) -> None:
        """Move the clock, and do what an admin did between two steps of the recording."""
        if exchange.key not in SAME_SECOND:
            self.clock.next_second()
        if exchange.key == ("11b-quota", 1):
            self.server.set_quota("corpus2", 1_048_576)  # occ user:setting corpus2 files quota "1 MB"
        if exchange.key == ("11b-quota", 22):
            self.server.set_quota("corpus2", None)
        if exchange.key == ("11a-auth-bruteforce", 21):
            self.server.reset_throttle("127.0.0.1")  # occ security:bruteforce:reset 127.0.0.1
        if self.scenario == "11c-locked-file" and "setup: existing file" in exchange.note:
            self.locked_path = exchange.path.split("/{user}/", 1)[1]

    def replay(self, exchange: Exchange) -> None:
        if self.meets_lock(exchange):
            assert self.locked_path is not None
            with self.server.hold_lock(self.user, self.locked_path):
                answer = self.send(exchange)
        else:
            answer = self.send(exchange)
        if exchange.key in NOT_COMPARED:
            self.outcome.not_compared += 1
            self.store_as_nextcloud_did(exchange, answer)
            return
        self.outcome.compared += 1
        self.outcome.mismatches += Comparison(self, exchange, answer).run()

    def store_as_nextcloud_did(self, exchange: Exchange, answer: Answer) -> None:
        """A PUT that the real server accepted and ours refused: write its file directly."""
        if exchange.method != "PUT" or exchange.status not in (201, 204) or answer.status == exchange.status:
            return
        path = self.bindings.substitute(exchange.path).split(f"/files/{self.user}/", 1)[1]
        parts = [unquote(part) for part in path.split("/") if part]
        data = self.body(exchange)
        assert isinstance(data, bytes)
        with self.server.lock:
            self.server.write_file(self.user, parts, FileWrite(data))

    def create_folders_of_earlier_scenarios(self) -> None:
        """05b-05f work in s05, which 05a created on the real server: a fresh server needs it too."""
        created = {
            e.path.rstrip("/").rsplit("/", 1)[-1]
            for e in self.exchanges
            if e.method == "MKCOL" and e.path.rstrip("/").count("/") == 5 and "/files/" in e.path
        }
        with self.server.lock:
            for folder in sorted(self.own_folders - created):
                self.server.attach(self.user, [folder], self.server.new_folder())

    def meets_lock(self, exchange: Exchange) -> bool:
        """11c: the real answer shows the file was locked by the other client's PUT at that moment."""
        if self.scenario != "11c-locked-file" or self.locked_path is None:
            return False
        locked_answer = exchange.status == 423 or (exchange.body or "").find("LockedException") >= 0
        return locked_answer or "while it is locked" in exchange.note or "DIFFERENT file" in exchange.note

    # -- the 04 MKCOL races ----------------------------------------------------------------------

    def race_round(self, index: int) -> list[Exchange]:
        found = re.match(r"concurrency round (\d+),", self.exchanges[index].note)
        if found is None:
            return []
        prefix = f"concurrency round {found.group(1)},"
        return [e for e in self.exchanges[index:] if e.note.startswith(prefix)]

    def replay_race(self, race: list[Exchange]) -> None:
        """Eight MKCOLs of one folder at once: exactly one 201, the others as Nextcloud answered
        such losers (405, 423 or 403), each compared with a recorded answer of the same status."""
        self.clock.next_second()
        barrier = threading.Barrier(len(race), timeout=30)

        def one(exchange: Exchange) -> Answer:
            barrier.wait()
            return self.send(exchange, session=requests.Session())

        with ThreadPoolExecutor(len(race)) as pool:
            answers = list(pool.map(one, race))
        losers = {e.status for e in self.exchanges if "concurrency round" in e.note and e.status != 201}
        statuses = sorted(answer.status for answer in answers)
        self.outcome.compared += len(race)
        if statuses.count(201) != 1 or not set(statuses) - {201} <= losers:
            self.outcome.mismatches.append(f"{race[0].note}: statuses {statuses}, want one 201 and {sorted(losers)}")
            return
        for answer in answers:
            recorded = self.recorded_race_answer(race, answer.status)
            if recorded is not None:
                self.outcome.mismatches += Comparison(self, recorded, answer).run()

    def recorded_race_answer(self, race: list[Exchange], status: int) -> Exchange | None:
        """A recorded answer with this status from this round, else from another round (its folder
        name changed to this round's)."""
        same_round = next((e for e in race if e.status == status), None)
        if same_round is not None:
            return same_round
        other = next((e for e in self.exchanges if "concurrency round" in e.note and e.status == status), None)
        if other is None:
            return None
        folder, theirs = race[0].path.rsplit("/", 1)[1], other.path.rsplit("/", 1)[1]
        return dataclasses.replace(other, path=race[0].path, body=(other.body or "").replace(theirs, folder))

    # -- sending ---------------------------------------------------------------------------------

    def send(self, exchange: Exchange, session: requests.Session | None = None) -> Answer:
        url = self.server.base_url + self.bindings.substitute(exchange.path)
        headers = {
            key: self.localise(self.bindings.substitute(value))
            for key, value in exchange.request_headers.items()
            if key not in ("Authorization", "Content-Length", "Transfer-Encoding")
        }
        response = (session or self.http).request(
            exchange.method,
            url,
            data=self.body(exchange),
            headers=headers,
            auth=self.auth(exchange),
            timeout=60,
            allow_redirects=False,
        )
        raw_headers = list(response.raw.headers.items())
        return Answer(response.status_code, raw_headers, response.content)

    def localise(self, text: str) -> str:
        port = self.server.base_url.rsplit(":", 1)[1]
        return text.replace(RECORDED_HOST, self.server.base_url).replace(OTHER_HOST, f"http://localhost:{port}")

    def auth(self, exchange: Exchange) -> tuple[str, str] | None:
        marker = exchange.request_headers.get("Authorization")
        if marker is None:
            return None
        login = self.user.upper() if "UPPER case" in exchange.note else self.user
        if "WRONG" in marker:
            return login, WRONG_PASSWORD
        if "login password" in marker:
            return login, LOGIN_PASSWORD
        return login, USERS[self.user]

    def body(self, exchange: Exchange) -> bytes | Iterator[bytes] | None:
        text = exchange.request_body
        if text is None:
            return None
        sized = re.fullmatch(r"<(\d+) bytes(, Transfer-Encoding: chunked)?>", text)
        if sized is None:
            return self.localise(self.bindings.substitute(text)).encode()
        size = min(int(sized.group(1)), BIG_BODY) if self.scenario == "11c-locked-file" else int(sized.group(1))
        data = deterministic_bytes(f"{exchange.scenario}:{exchange.step}", size)
        return iter([data]) if sized.group(2) else data


def deterministic_bytes(seed: str, size: int) -> bytes:
    block = hashlib.sha256(seed.encode()).digest() * 128
    return (block * (size // len(block) + 1))[:size]


# -- comparing one answer ------------------------------------------------------------------------


class Comparison:
    """Compares our answer to one exchange; :meth:`run` returns what differs."""

    def __init__(self, replay: Replay, exchange: Exchange, answer: Answer) -> None:
        self.replay = replay
        self.bindings = replay.bindings
        self.exchange = exchange
        self.answer = answer
        self.where = f"{exchange.scenario}:{exchange.step} {exchange.method} {exchange.path[:90]}"
        self.problems: list[str] = []

    def check(self, problem: str | None) -> None:
        if problem is not None:
            self.problems.append(problem)

    def run(self) -> list[str]:
        if self.answer.status != self.exchange.status:
            return [f"{self.where}: status {self.answer.status}, Nextcloud {self.exchange.status}"]
        self.compare_headers()
        self.compare_body()
        return self.problems

    # -- headers -----------------------------------------------------------------------------------

    def recorded_header(self, name: str) -> list[str]:
        for key, value in self.exchange.headers.items():
            if key.lower() == name.lower():
                return value if isinstance(value, list) else [value]
        return []

    def compare_headers(self) -> None:
        for name in ("ETag", "OC-ETag", "OC-FileId"):
            self.compare_placeholder_header(name)
        for name in ("X-OC-MTime", "X-OC-CTime", "WWW-Authenticate", "Content-Range", "Allow", "Content-Encoding"):
            self.compare_exact_header(name)
        if self.exchange.method == "OPTIONS":
            self.compare_exact_header("DAV")
        if self.exchange.method in ("GET", "HEAD"):
            recorded, ours = set(self.recorded_header("OC-Checksum")), set(self.answer.header_values("OC-Checksum"))
            if recorded != ours:
                self.problems.append(f"{self.where}: OC-Checksum {sorted(ours)}, Nextcloud {sorted(recorded)}")
        if bool(self.recorded_header("Retry-After")) != bool(self.answer.header_values("Retry-After")):
            self.problems.append(f"{self.where}: Retry-After presence differs")
        self.compare_content_type()

    def compare_exact_header(self, name: str) -> None:
        recorded, ours = self.recorded_header(name), self.answer.header_values(name)
        if sorted(set(recorded)) != sorted(set(ours)):
            self.problems.append(f"{self.where}: header {name} {ours}, Nextcloud {recorded}")

    def compare_placeholder_header(self, name: str) -> None:
        recorded, ours = self.recorded_header(name), self.answer.header_values(name)
        if bool(recorded) != bool(ours):
            self.problems.append(f"{self.where}: header {name} {ours}, Nextcloud {recorded}")
            return
        if recorded:
            self.check(self.bindings.match(recorded[0], ours[0], f"{self.where}: header {name}"))
            if name != "OC-FileId" and "{etag" in recorded[0]:
                self.check(self.etag_shape(ours[0].strip('"'), folder=self.is_folder_etag()))

    def is_folder_etag(self) -> bool:
        """A GET of an upload's ``.file``, or a precondition failed on it, gives the upload folder's
        ETag (13 hex digits); a final MOVE gives the written file's."""
        dot_file = "/uploads/" in self.exchange.path and self.exchange.path.endswith("/.file")
        return dot_file and (self.exchange.method in ("GET", "HEAD") or self.exchange.status == 412)

    def etag_shape(self, etag: str, *, folder: bool) -> str | None:
        digits = 13 if folder else 32
        if re.fullmatch(f"[0-9a-f]{{{digits}}}", etag) is None:
            return f"{self.where}: ETag {etag!r} is not {digits} hex digits"
        return None

    def compare_content_type(self) -> None:
        recorded_names = [key for key in self.exchange.headers if key.lower() == "content-type"]
        ours_names = self.answer.header_names("Content-Type")
        if recorded_names != ours_names[:1] and not (self.exchange.method == "HEAD" and not recorded_names):
            self.problems.append(f"{self.where}: content type header {ours_names}, Nextcloud {recorded_names}")
            return
        recorded, ours = self.recorded_header("Content-Type"), self.answer.header_values("Content-Type")
        if recorded and ours and media_type(recorded[0]) != media_type(ours[0]):
            self.problems.append(f"{self.where}: Content-Type {ours[0]!r}, Nextcloud {recorded[0]!r}")

    # -- bodies ------------------------------------------------------------------------------------

    def compare_body(self) -> None:
        recorded = self.exchange.body
        ours = self.answer.body
        if self.exchange.method == "HEAD" or self.answer.status == 304:
            return
        if not recorded:
            if ours:
                self.problems.append(f"{self.where}: body of {len(ours)} bytes, Nextcloud sent none")
            return
        sized = re.fullmatch(r"<(\d+) bytes>", recorded)
        if sized is not None:
            if self.is_download() and int(sized.group(1)) != len(ours):
                self.problems.append(f"{self.where}: {len(ours)} bytes, Nextcloud {sized.group(1)}")
            return
        if "HTML page trimmed" in recorded:
            return
        recorded = self.replay.localise(recorded)
        if recorded.lstrip().startswith("<?xml") or recorded.lstrip().startswith("<d:"):
            self.compare_xml(recorded, ours)
        elif recorded[:1] in "{[":
            self.compare_json(recorded, ours)
        elif media_type(self.answer.header_values("Content-Type")[:1] or [""]) == "text/html":
            self.check(self.bindings.match(recorded, ours.decode(errors="replace"), f"{self.where}: body"))
        elif len(recorded.encode()) != len(ours):
            self.problems.append(f"{self.where}: {len(ours)} bytes, Nextcloud {len(recorded.encode())}")

    def is_download(self) -> bool:
        """A file's content: its length is compared (archives and OCS answers are not files)."""
        content_type = media_type(self.recorded_header("Content-Type")[:1] or [""])
        archive = content_type in ("application/zip", "application/x-tar")
        return self.exchange.method == "GET" and self.exchange.path.startswith("/remote.php/") and not archive

    def compare_xml(self, recorded: str, ours: bytes) -> None:
        try:
            expected = ET.fromstring(recorded.encode())
            got = ET.fromstring(ours)
        except ET.ParseError as exc:
            self.problems.append(f"{self.where}: XML does not parse: {exc}: {ours[:200]!r}")
            return
        if expected.tag != got.tag:
            self.problems.append(f"{self.where}: XML root {got.tag}, Nextcloud {expected.tag}")
        elif expected.tag == DAV + "multistatus":
            MultistatusComparison(self, expected, got).run()
        elif expected.tag == DAV + "error":
            self.compare_error(expected, got)
        elif expected.tag == "ocs":
            for name in ("status", "statuscode", "message"):
                want, have = expected.findtext(f"meta/{name}"), got.findtext(f"meta/{name}")
                if want != have:
                    self.problems.append(f"{self.where}: OCS meta {name} {have!r}, Nextcloud {want!r}")

    def compare_error(self, expected: ET.Element, got: ET.Element) -> None:
        want, have = _children(expected), _children(got)
        if self.exchange.key in MESSAGE_NOT_COMPARED:
            want.pop(SABRE + "message", None)
            have.pop(SABRE + "message", None)
        if set(want) != set(have):
            self.problems.append(f"{self.where}: error elements {sorted(have)}, Nextcloud {sorted(want)}")
            return
        for tag, text in want.items():
            self.check(self.bindings.match(text, have[tag], f"{self.where}: error {tag}"))

    def compare_json(self, recorded: str, ours: bytes) -> None:
        # Unquoted placeholders ({ts1}, {ts1}000) are numbers; quote them so the record parses.
        quoted = re.sub(r"(?<=[:\[,])(\{ts\d+\}(?:000)?)", r'"#number#\1"', recorded)
        try:
            expected = json.loads(quoted)
            got = json.loads(ours)
        except json.JSONDecodeError as exc:
            self.problems.append(f"{self.where}: JSON does not parse: {exc}: {ours[:200]!r}")
            return
        exact = self.exchange.path.endswith("/bulk")
        JsonComparison(self, exact=exact).compare(expected, got, "$")


def media_type(value: list[str] | str) -> str:
    text = value[0] if isinstance(value, list) else value
    return text.split(";", 1)[0].strip().lower()


def _children(element: ET.Element) -> dict[str, str]:
    return {child.tag: (child.text or "") for child in element}


class MultistatusComparison:
    """Hrefs in order; per href the property names of each propstat status; values of some."""

    def __init__(self, comparison: Comparison, expected: ET.Element, got: ET.Element) -> None:
        self.comparison = comparison
        self.where = comparison.where
        self.expected = [self.read(element) for element in expected.findall(DAV + "response")]
        self.got = [self.read(element) for element in got.findall(DAV + "response")]

    @staticmethod
    def read(element: ET.Element) -> tuple[str, dict[int, dict[str, ET.Element]]]:
        href = element.findtext(DAV + "href") or ""
        stats: dict[int, dict[str, ET.Element]] = {}
        for propstat in element.findall(DAV + "propstat"):
            status = int((propstat.findtext(DAV + "status") or "HTTP/1.1 0").split()[1])
            prop = propstat.find(DAV + "prop")
            stats[status] = {child.tag: child for child in (prop if prop is not None else [])}
        return href, stats

    def run(self) -> None:
        expected = [entry for entry in self.expected if self.own(entry[0])]
        got = [entry for entry in self.got if self.own(entry[0], ours=True)]
        if len(expected) != len(got):
            self.comparison.problems.append(
                f"{self.where}: hrefs {[h for h, _ in got]}, Nextcloud {[h for h, _ in expected]}"
            )
            return
        for (want_href, want), (have_href, have) in zip(expected, got, strict=True):
            problem = self.comparison.bindings.match(want_href, have_href, f"{self.where}: href")
            if problem is not None:
                self.comparison.problems.append(problem)
                return
            self.compare_props(want_href, want, have)

    def own(self, href: str, *, ours: bool = False) -> bool:
        """Entries of other scenarios' folders and older upload folders are the recorded account's
        history, not this scenario's: they are left out on both sides."""
        replay = self.comparison.replay
        user = replay.user if ours else "{user}"
        root = f"/remote.php/dav/files/{user}/"
        if replay.user == "corpus1" and href.startswith(root) and href != root:
            top = href[len(root) :].split("/", 1)[0]
            return any(re.fullmatch(PLACEHOLDER.sub(".*", folder), top) for folder in replay.own_folders)
        uploads_home = f"/remote.php/dav/uploads/{user}/"
        request_path = self.comparison.exchange.path.split("?")[0].rstrip("/") + "/"
        return not (
            request_path == "/remote.php/dav/uploads/{user}/" and href.startswith(uploads_home) and href != uploads_home
        )

    def compare_props(
        self, href: str, want: dict[int, dict[str, ET.Element]], have: dict[int, dict[str, ET.Element]]
    ) -> None:
        where = f"{self.where} {href}"
        names_want = {status: sorted(props) for status, props in want.items()}
        names_have = {status: sorted(props) for status, props in have.items()}
        if names_want != names_have:
            self.comparison.problems.append(f"{where}: properties {names_have}, Nextcloud {names_want}")
            return
        found_want, found_have = want.get(200, {}), have.get(200, {})
        for name, element in found_want.items():
            if name in VALUE_PROPS and not (name in ROOT_STATE_PROPS and self.account_root(href)):
                self.compare_value(where, name, element, found_have[name], found_have)
        if DAV + "resourcetype" in found_want:
            want_dir = found_want[DAV + "resourcetype"].find(DAV + "collection") is not None
            have_dir = found_have[DAV + "resourcetype"].find(DAV + "collection") is not None
            if want_dir != have_dir:
                self.comparison.problems.append(f"{where}: resourcetype collection {have_dir}, Nextcloud {want_dir}")
        if OC + "checksums" in found_want:
            want_sums = [c.text for c in found_want[OC + "checksums"]]
            have_sums = [c.text for c in found_have[OC + "checksums"]]
            if want_sums != have_sums:
                self.comparison.problems.append(f"{where}: checksums {have_sums}, Nextcloud {want_sums}")

    def account_root(self, href: str) -> bool:
        """The recorded corpus1 root held every scenario's files: its sizes are not this scenario's."""
        return self.comparison.replay.user == "corpus1" and href in (
            "/remote.php/dav/files/{user}/",
            "/remote.php/webdav/",
        )

    def compare_value(
        self, where: str, name: str, want: ET.Element, have: ET.Element, props: dict[str, ET.Element]
    ) -> None:
        expected, got = want.text or "", have.text or ""
        if name == OC + "id" and expected.isdigit():  # in the trash, oc:id is the plain fileid
            fileid = props.get(OC + "fileid")
            expected = got if fileid is not None and fileid.text == got else f"the fileid ({expected})"
        self.comparison.check(self.comparison.bindings.match(expected, got, f"{where} {name}"))
        if name == DAV + "getetag" and "{etag" in expected:
            folder = (
                props.get(DAV + "resourcetype") is not None
                and props[DAV + "resourcetype"].find(DAV + "collection") is not None
            )
            folder = folder or where.rstrip().endswith("/.file") or where.rstrip().endswith("/")
            self.comparison.check(self.comparison.etag_shape(got.strip('"'), folder=folder))


class JsonComparison:
    """Recorded keys must be in ours (all of them, and no more, for bulk answers); leaves compared
    by value, placeholders through the bindings, and lists element by element."""

    IGNORED_FOR_CORPUS1 = frozenset({"$.ocs.data.quota.used", "$.ocs.data.quota.relative"})

    def __init__(self, comparison: Comparison, *, exact: bool) -> None:
        self.comparison = comparison
        self.exact = exact

    def compare(self, expected: Any, got: Any, path: str) -> None:
        where = f"{self.comparison.where} {path}"
        if self.comparison.replay.user == "corpus1" and path in self.IGNORED_FOR_CORPUS1:
            return
        if isinstance(expected, dict):
            self.compare_dict(expected, got, path, where)
        elif isinstance(expected, list):
            if not isinstance(got, list) or (self.exact and len(got) != len(expected)):
                self.comparison.problems.append(f"{where}: {got!r}, Nextcloud {expected!r}")
                return
            for index, (want, have) in enumerate(zip(expected, got, strict=False)):
                self.compare(want, have, f"{path}[{index}]")
        elif isinstance(expected, str) and expected.startswith("#number#"):
            if not isinstance(got, int):
                self.comparison.problems.append(f"{where}: {got!r} is not a number")
            else:
                self.comparison.check(self.comparison.bindings.match(expected[len("#number#") :], str(got), where))
        elif isinstance(expected, str) and PLACEHOLDER.search(expected):
            self.comparison.check(self.comparison.bindings.match(expected, str(got), where))
        elif expected != got or type(expected) is not type(got):
            self.comparison.problems.append(f"{where}: {got!r}, Nextcloud {expected!r}")

    def compare_dict(self, expected: dict[str, Any], got: Any, path: str, where: str) -> None:
        if not isinstance(got, dict):
            self.comparison.problems.append(f"{where}: {got!r} is not an object")
            return
        expected = {key: value for key, value in expected.items() if key != "_trimmed"}  # the recorder's note
        missing = set(expected) - set(got)
        extra = set(got) - set(expected) if self.exact else set()
        if missing or extra:
            self.comparison.problems.append(f"{where}: keys missing {sorted(missing)}, extra {sorted(extra)}")
            return
        for key, value in expected.items():
            self.compare(value, got[key], f"{path}.{key}")


# -- the tests -----------------------------------------------------------------------------------


def test_the_corpus_holds_the_scenarios_replayed_here(exchanges_by_scenario: dict[str, list[Exchange]]) -> None:
    assert tuple(exchanges_by_scenario) == SCENARIOS
    assert sum(len(exchanges) for exchanges in exchanges_by_scenario.values()) == 815


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_answers_as_nextcloud_31(scenario: str, exchanges_by_scenario: dict[str, list[Exchange]]) -> None:
    outcome = Replay(scenario, exchanges_by_scenario[scenario]).run()
    SUMMARY[scenario] = (outcome.compared, outcome.not_compared)
    assert not outcome.mismatches, f"{len(outcome.mismatches)} differences:\n" + "\n".join(outcome.mismatches[:40])


# -- the hooks other tests use (no corpus needed) --------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def server(clock: ManualClock) -> Iterator[NextcloudServer]:
    srv = NextcloudServer(USERS, clock=clock, throttle_delay_scale=0.0)
    srv.start()
    yield srv
    srv.stop()


def dav(server: NextcloudServer, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(
        method, server.files_url("corpus1") + path, auth=("corpus1", USERS["corpus1"]), timeout=10, **kwargs
    )


def sabre_message(response: requests.Response) -> str:
    return ET.fromstring(response.content).findtext(SABRE + "message") or ""


def test_capabilities_announce_and_enforce_the_servers_settings(server: NextcloudServer) -> None:
    server.capabilities.forbidden_filenames.append("secret.txt")
    server.capabilities.bulkupload = None
    answer = requests.get(
        server.base_url + "/ocs/v2.php/cloud/capabilities?format=json",
        headers={"OCS-APIRequest": "true"},
        auth=("corpus1", USERS["corpus1"]),
        timeout=10,
    ).json()["ocs"]["data"]["capabilities"]
    assert answer["files"]["forbidden_filenames"] == [".htaccess", "secret.txt"]
    assert answer["dav"] == {"chunking": "1.0", "absence-supported": True, "absence-replacement": True}
    refused = dav(server, "PUT", "SECRET.TXT", data=b"x")
    assert refused.status_code == 400 and sabre_message(refused) == "Filename is a reserved word"
    bulk = requests.post(
        server.base_url + "/remote.php/dav/bulk", auth=("corpus1", USERS["corpus1"]), data=b"", timeout=10
    )
    assert bulk.status_code == 404


def test_an_overwrite_in_the_same_second_with_the_same_mtime_keeps_the_etag(
    server: NextcloudServer, clock: ManualClock
) -> None:
    first = dav(server, "PUT", "a.txt", data=b"one", headers={"X-OC-MTime": "1600000000"})
    same_second = dav(server, "PUT", "a.txt", data=b"two, longer", headers={"X-OC-MTime": "1600000000"})
    assert first.headers["ETag"] == same_second.headers["ETag"]
    clock.next_second()
    next_second = dav(server, "PUT", "a.txt", data=b"three", headers={"X-OC-MTime": "1600000000"})
    assert next_second.headers["ETag"] != first.headers["ETag"]


def test_mkcol_race_answers_can_be_produced_on_purpose(server: NextcloudServer) -> None:
    with server.hold_lock("corpus1", "race"):
        locked = dav(server, "MKCOL", "race")
    assert locked.status_code == 423 and sabre_message(locked) == '"/race" is locked'

    def another_mkcol_wins(user: str, path: str) -> None:
        server.on_mkcol_checked = None
        assert dav(server, "MKCOL", path).status_code == 201

    server.on_mkcol_checked = another_mkcol_wins
    lost = dav(server, "MKCOL", "race")
    assert lost.status_code == 403 and sabre_message(lost) == "Could not create directory /race"
    assert dav(server, "MKCOL", "race").status_code == 405


def test_a_put_being_received_holds_its_path_locked(server: NextcloudServer, monkeypatch: pytest.MonkeyPatch) -> None:
    assert dav(server, "PUT", "big.bin", data=b"old").status_code == 201
    locked, release = threading.Event(), threading.Event()
    try_acquire = server.file_locks.try_acquire

    def note_the_lock(user: str, path: str) -> bool:
        taken = try_acquire(user, path)
        if taken and path == "big.bin":
            locked.set()
        return taken

    monkeypatch.setattr(server.file_locks, "try_acquire", note_the_lock)

    def slow_body() -> Iterator[bytes]:
        yield b"first half, "
        release.wait(timeout=10)
        yield b"second half"

    with ThreadPoolExecutor(1) as pool:
        upload = pool.submit(dav, server, "PUT", "big.bin", data=slow_body())
        assert locked.wait(timeout=10)
        statuses = {method: dav(server, method, "big.bin").status_code for method in ("GET", "PUT", "DELETE")}
        moving = dav(server, "MOVE", "big.bin", headers={"Destination": server.files_url("corpus1") + "moved.bin"})
        listing = dav(server, "PROPFIND", "", headers={"Depth": "1"})
        other = dav(server, "PUT", "other.bin", data=b"not locked")
        release.set()
        assert upload.result().status_code == 204
    assert statuses == {"GET": 423, "PUT": 423, "DELETE": 423}
    assert moving.status_code == 500 and "LockedException" in moving.text
    assert listing.status_code == 207 and other.status_code == 201
    assert dav(server, "GET", "big.bin").content == b"first half, second half"


def test_failed_logins_block_the_address_until_the_throttle_is_reset(server: NextcloudServer) -> None:
    url = server.files_url("corpus1")
    for _ in range(11):
        assert requests.request("PROPFIND", url, auth=("corpus1", "wrong"), timeout=10).status_code == 401
    blocked = requests.request("PROPFIND", url, auth=("corpus1", USERS["corpus1"]), timeout=10)
    assert blocked.status_code == 429 and "Retry-After" not in blocked.headers
    assert requests.get(server.base_url + "/status.php", timeout=10).status_code == 200
    server.reset_throttle()
    assert requests.request("PROPFIND", url, auth=("CORPUS1", USERS["corpus1"]), timeout=10).status_code == 207


def test_quota_counts_the_full_new_size_and_not_the_trash(server: NextcloudServer) -> None:
    server.set_quota("corpus1", 1000)
    assert dav(server, "PUT", "a.bin", data=b"x" * 600).status_code == 201
    refused = dav(server, "PUT", "a.bin", data=b"y" * 500)
    assert refused.status_code == 507
    assert sabre_message(refused) == "Insufficient space in /a.bin, 500 required, 400 available"
    assert dav(server, "DELETE", "a.bin").status_code == 204
    assert dav(server, "PUT", "b.bin", data=b"z" * 1000).status_code == 201
