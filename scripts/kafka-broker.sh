#!/usr/bin/env bash
# Installs tansu, the Kafka-protocol broker the Kafka connector's tests and benchmark run,
# into a cache outside the clone, and prints the binary's path. Idempotent: a second run
# only prints the path.
#
#   scripts/kafka-broker.sh            # -> ~/.cache/wisp-tools/tansu-0.6.0/bin/tansu
#
# tansu is built from crates.io with the `libsql` storage engine (durable SQLite file:
# `--storage-engine sqlite://tansu.db`) and `dynostore` (memory:// and s3://). The first run
# compiles it (about 15 minutes on 2 cores), in its own target dir so that it does not wait
# on the workspace's build lock.
#
# Environment:
#   WISP_TOOLS_DIR   where tools are cached (default: ~/.cache/wisp-tools)
#   WISP_TANSU_BIN   an existing tansu binary to use instead (printed as is)
set -euo pipefail

TANSU_VERSION=0.6.0
TOOLS=${WISP_TOOLS_DIR:-$HOME/.cache/wisp-tools}
ROOT=$TOOLS/tansu-$TANSU_VERSION
BIN=$ROOT/bin/tansu

if [ -n "${WISP_TANSU_BIN:-}" ] && [ -x "$WISP_TANSU_BIN" ]; then
    echo "$WISP_TANSU_BIN"
    exit 0
fi
if [ -x "$BIN" ]; then
    echo "$BIN"
    exit 0
fi

mkdir -p "$TOOLS"
echo "installing tansu $TANSU_VERSION into $ROOT (first time: ~15 minutes)" >&2
# Built outside the clone, so that the workspace's settings (toolchain file, target dir)
# do not apply: the default toolchain builds it (tansu 0.6.0 builds with rustc 1.95).
(
    cd "$TOOLS"
    CARGO_TARGET_DIR="$TOOLS/tansu-build" cargo install --locked --quiet \
        tansu --version "$TANSU_VERSION" --features dynostore,libsql --root "$ROOT" >&2
)
# The build directory is large and only needed for a rebuild.
rm -rf "$TOOLS/tansu-build"
[ -x "$BIN" ] || {
    echo "error: tansu did not install to $BIN" >&2
    exit 1
}
echo "$BIN"
