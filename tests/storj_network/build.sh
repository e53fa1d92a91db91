#!/usr/bin/env bash
# Build the local Storj test network into tests/storj_network/bin/:
#   bin/storj-network.test  testplanet (1 satellite, 5 nodes, 1 uplink), see network_test.go
#   bin/gateway             gateway-st S3 endpoint (storj.io/gateway, own module in gateway/)
# Idempotent: a stamp of every input (sources, go.mod/go.sum, Go version, this
# script) is kept in bin/.stamp and the build is skipped when it matches.
# Go's module and build caches (GOMODCACHE/GOCACHE) make a rebuild cheap too.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="$HERE/bin"
export PATH="/usr/local/go/bin:${PATH}"
# Module versions are pinned by go.sum; never let a build rewrite go.mod.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly"

command -v go >/dev/null 2>&1 || { echo "build.sh: Go not found" >&2; exit 1; }

stamp() {
    {
        go env GOVERSION GOOS GOARCH
        cd "$HERE"
        sha256sum build.sh go.mod go.sum ./*.go gateway/go.mod gateway/go.sum
    } | sha256sum | cut -d' ' -f1
}

want="$(stamp)"
if [ -x "$BIN/storj-network.test" ] && [ -x "$BIN/gateway" ] \
    && [ "$(cat "$BIN/.stamp" 2>/dev/null)" = "$want" ]; then
    echo "build.sh: storj network binaries up to date"
    exit 0
fi

mkdir -p "$BIN"
rm -f "$BIN/.stamp"
start=$(date +%s)
echo "build.sh: building storj-network.test (testplanet, storj.io/storj) ..."
(cd "$HERE" && go test -c -o "$BIN/storj-network.test" .)
echo "build.sh: building gateway (storj.io/gateway) ..."
(cd "$HERE/gateway" && go build -o "$BIN/gateway" storj.io/gateway)
echo "$want" > "$BIN/.stamp"
echo "build.sh: done in $(( $(date +%s) - start )) s"
