#!/bin/sh
# Builds the order-processing component (tests/fixtures/wasm, wasm32-wasip2) and puts it
# in ./dist, where wisp.toml looks for it. Falls back to the committed prebuilt copy.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
fixtures=$("$here/../../tests/fixtures/wasm/build.sh")
mkdir -p "$here/dist"
cp "$fixtures/order_processing.wasm" "$here/dist/process_order.wasm"
echo "$here/dist/process_order.wasm"
