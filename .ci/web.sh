#!/usr/bin/env bash
# What the web dashboard's browser test needs (tests/daemon/test_web_dashboard.py): Debian's
# headless Chromium and its chromedriver (the same package version, so they always match;
# selenium, a Python test extra, drives them). Idempotent: a warm machine skips apt.
set -euo pipefail

fail() { echo "web.sh: $*" >&2; exit 1; }

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || fail "chromium/chromedriver are missing and installing them needs root"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || fail "apt-get update failed"
    apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null \
        || fail "apt-get install chromium chromium-driver failed"
fi
command -v chromium >/dev/null 2>&1 || fail "chromium not found after install"
command -v chromedriver >/dev/null 2>&1 || fail "chromedriver not found after install"
python -c "import selenium" 2>/dev/null || python -m pip install -q --disable-pip-version-check "selenium>=4.20"
