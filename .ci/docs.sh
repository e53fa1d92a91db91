#!/usr/bin/env bash
# The tools that read syncd's generated man page and shell completions in the tests
# (tests/unit/test_shell_docs.py, tests/daemon/test_install_service.py): man-db and groff render
# the page, bash and zsh parse the completions. Idempotent: installs only what is missing.
set -euo pipefail

missing=()
command -v man >/dev/null 2>&1 || missing+=(man-db)
command -v groff >/dev/null 2>&1 || missing+=(groff-base)
command -v zsh >/dev/null 2>&1 || missing+=(zsh)
[ "${#missing[@]}" -eq 0 ] && exit 0
[ "$(id -u)" = 0 ] || { echo "docs.sh: must run as root to apt-get install ${missing[*]}" >&2; exit 1; }
echo "docs.sh: installing ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
