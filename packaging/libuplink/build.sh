#!/usr/bin/env bash
# Build libuplink.so (syncd's C shim over storj.io/uplink, uplink-c ABI
# subset) into packaging/libuplink/build/ with `go build -buildmode=c-shared`.
# Outputs: build/libuplink.so, build/libuplink.h (cgo's generated header)
# and build/uplink_definitions.h (the types that header includes).
# Idempotent: skipped when a stamp of all inputs matches build/.stamp.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="$HERE/build"
export PATH="/usr/local/go/bin:${PATH}"
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly"
export CGO_ENABLED=1

command -v go >/dev/null 2>&1 || { echo "build.sh: Go not found" >&2; exit 1; }
command -v gcc >/dev/null 2>&1 || { echo "build.sh: gcc not found (cgo needs it)" >&2; exit 1; }

stamp() {
    {
        go env GOVERSION GOOS GOARCH
        cd "$HERE"
        sha256sum build.sh go.mod go.sum ./*.go ./*.h
    } | sha256sum | cut -d' ' -f1
}

want="$(stamp)"
if [ -f "$OUT/libuplink.so" ] && [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$want" ]; then
    echo "build.sh: libuplink.so up to date"
    exit 0
fi

mkdir -p "$OUT"
rm -f "$OUT/.stamp"
start=$(date +%s)
echo "build.sh: building libuplink.so ..."
# -trimpath: no build paths in the library; -s -w: smaller .so.
# Built beside and renamed into place: a process that has the old library
# mapped (a running daemon, a test) keeps it intact.
(cd "$HERE" && go build -buildmode=c-shared -trimpath -ldflags="-s -w" -o "$OUT/libuplink.so.new" .)
rm -f "$OUT"/*.h  # cgo's generated header; ours is uplink_definitions.h
mv -f "$OUT/libuplink.so.new" "$OUT/libuplink.so"
cp "$HERE/uplink_definitions.h" "$OUT/"
echo "$want" > "$OUT/.stamp"
echo "build.sh: done in $(( $(date +%s) - start )) s"
