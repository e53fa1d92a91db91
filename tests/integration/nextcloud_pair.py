"""A pair whose files are alice's account on the Nextcloud-protocol test server and whose bucket
is a `dir` bucket: its config, and the account as another Nextcloud client sees it. The tests
run it their own way: in-process (test_nextcloud_sync.py) or through the CLI (test_webdav_sync.py)."""

from __future__ import annotations

from pathlib import Path

import requests

from tests.webdav.nextcloud_server import NextcloudServer

USER, PASSWORD = "alice", "alice-app-password"


class NextcloudDirPair:
    """``root/syncd.toml``: files = ``server``'s account of USER (password in ``root/secret``,
    2 tries a request, backoffs of 0.2 s at most, then ``files_options``), bucket = ``root/bucket``,
    state and control socket in ``root/state``. ``http`` is a session of another client."""

    def __init__(self, root: Path, server: NextcloudServer, files_options: str = "") -> None:
        self.root, self.server = root, server
        self.url = server.files_url(USER)
        self.http = requests.Session()
        self.http.auth = (USER, PASSWORD)
        (root / "secret").write_text(PASSWORD)
        self.config = root / "syncd.toml"
        self.config.write_text(
            '[daemon]\nstate_dir = "state"\nsocket = "state/control.sock"\n\n[users.alice]\n'
            f'files = {{ type = "webdav", url = "{self.url}", username = "{USER}", '
            f'password_file = "{root / "secret"}", retries = 2, max_retry_wait = 0.2{files_options} }}\n'
            'bucket = { type = "dir", path = "bucket" }\n'
        )

    def nc_put(self, path: str, data: bytes) -> None:
        """A write by another Nextcloud client (the web UI, the desktop app), folders first."""
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.http.request("MKCOL", self.url + "/".join(parts[:i]) + "/", timeout=30)
        self.http.put(self.url + path, data=data, timeout=30).raise_for_status()

    def nc_files(self) -> dict[str, bytes]:
        """Every file of the account (path -> content), read on the server."""
        files: dict[str, bytes] = {}
        with self.server.lock:
            pending = [("", self.server.roots[USER])]
            while pending:
                prefix, node = pending.pop()
                for name, child in node.children.items():
                    if child.is_dir:
                        pending.append((f"{prefix}{name}/", child))
                    else:
                        files[prefix + name] = child.data
        return files
