#!/usr/bin/env bash
# Builds the MinIO server used by the storage tests, the e2e and the demo, from the Go module proxy
# (../shared/design/findings.md: one static binary, ~5 min cold on 2 cores). Idempotent: skipped when the
# binary is already in $REEL_CACHE/bin. Prints the binary's path on stdout (last line).
set -euo pipefail

MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
REEL_CACHE="${REEL_CACHE:-$HOME/.cache/reel}"
BIN_DIR="$REEL_CACHE/bin"
BIN="$BIN_DIR/minio"
STAMP="$BIN_DIR/.minio-version"

if [[ -x "$BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$MINIO_VERSION" ]]; then
  echo "$BIN"
  exit 0
fi

GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if [[ ! -x "$GO" ]]; then
  echo "build-minio: Go not found (looked on PATH and at /usr/local/go/bin/go); set GO=/path/to/go" >&2
  exit 1
fi

mkdir -p "$BIN_DIR"
# Serialise concurrent builds (several test sessions may ask at once).
exec 9>"$BIN_DIR/.minio.lock"
flock 9
if [[ -x "$BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$MINIO_VERSION" ]]; then
  echo "$BIN"
  exit 0
fi

echo "build-minio: go install github.com/minio/minio@$MINIO_VERSION (takes ~5 min cold)" >&2
# Build into a temporary GOBIN so that an interrupted build never leaves a half-written binary behind.
tmp="$(mktemp -d "$BIN_DIR/.minio-build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--trimpath}" "$GO" install "github.com/minio/minio@$MINIO_VERSION"
mv -f "$tmp/minio" "$BIN"
echo "$MINIO_VERSION" > "$STAMP"
echo "$BIN"
