#!/usr/bin/env bash
# wisp's test command: formatting, lints, unit tests, build, then the end-to-end
# suite (pytest + boto3 against the real `wisp` binary).
#
#   scripts/test.sh                  # everything
#   scripts/test.sh -k timeout       # extra args go to pytest
#   WISP_SKIP_CARGO=1 scripts/test.sh  # skip fmt/clippy/test/build (use an existing binary)
#
# Environment:
#   CARGO_TARGET_DIR  cargo target dir (default: ~/.cache/wisp-target)
#   WISP_VENV         python venv for the e2e suite (default: ~/.cache/wisp-venv)
#   WISP_BIN          binary under test with WISP_SKIP_CARGO=1 (default: $CARGO_TARGET_DIR/debug/wisp)
#   WISP_PYTHON       python used to create the venv (default: python3 on PATH)
#   WISP_TEST_TIMEOUT per-test timeout in seconds (default: 300)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/wisp-target}
VENV=${WISP_VENV:-$HOME/.cache/wisp-venv}
FAILED=()

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
        warn "need root to run: $*"; return 1; fi
}

APT_UPDATED=0
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        warn "apt-get not available; please install: $*"
        return 1
    fi
    if [ "$APT_UPDATED" = 0 ]; then
        step "apt-get update"
        as_root apt-get update -qq
        APT_UPDATED=1
    fi
    step "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# --- system tools the e2e suite needs ---------------------------------------
# curl: the `provided` runtime test's bootstrap is a shell script that uses it.
if ! command -v curl >/dev/null 2>&1; then
    apt_install curl
fi
# The brokers the connector tests run (each test starts its own on a free loopback port,
# with its data in the test's tmp dir), their client tools for the benchmarks, and what
# librdkafka's bundled build needs. Debian's packages would start system-wide services on
# install: a policy-rc.d that denies it keeps the machine's ports to the tests.
BROKER_PKGS=()
for pair in nats-server:nats-server redis-server:redis-server redis-cli:redis-tools \
    mosquitto:mosquitto mosquitto_pub:mosquitto-clients rabbitmq-server:rabbitmq-server \
    cmake:cmake pkg-config:pkg-config; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || BROKER_PKGS+=("${pair#*:}")
done
for dev in libssl-dev:/usr/include/openssl/ssl.h libsasl2-dev:/usr/include/sasl/sasl.h; do
    [ -e "${dev#*:}" ] || BROKER_PKGS+=("${dev%%:*}")
done
if [ "${#BROKER_PKGS[@]}" -gt 0 ]; then
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\n# wisp tests: do not start services on package install\nexit 101\n' |
            as_root tee /usr/sbin/policy-rc.d >/dev/null && as_root chmod +x /usr/sbin/policy-rc.d
    fi
    apt_install "${BROKER_PKGS[@]}"
fi
# The Kafka connector's broker: tansu, built once into a cache outside the clone.
step "Kafka broker (scripts/kafka-broker.sh)"
WISP_TANSU_BIN=$(scripts/kafka-broker.sh)
export WISP_TANSU_BIN
if ! command -v node >/dev/null 2>&1; then
    warn "node not found on PATH: the nodejs20.x tests will fail"
fi

# --- python venv with boto3/pytest ------------------------------------------
resolve_python() {
    local cand
    for cand in "${WISP_PYTHON:-}" python3 /usr/bin/python3; do
        [ -n "$cand" ] || continue
        command -v "$cand" >/dev/null 2>&1 || continue
        # Resolve pyenv shims to the real interpreter once.
        if "$cand" -c 'import sys, venv; assert sys.version_info >= (3, 9); print(sys.executable)' 2>/dev/null; then
            return 0
        fi
    done
    return 1
}

if [ ! -x "$VENV/bin/python" ]; then
    PY=$(resolve_python) || {
        apt_install python3 python3-venv
        PY=$(resolve_python)
    }
    step "creating venv $VENV (from $PY)"
    if ! "$PY" -m venv "$VENV"; then
        rm -rf "$VENV"
        apt_install python3-venv
        /usr/bin/python3 -m venv "$VENV"
    fi
fi
REQ_HASH=$( (cat tests/requirements.txt; "$VENV/bin/python" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)
if [ "$(cat "$VENV/.wisp-requirements" 2>/dev/null || true)" != "$REQ_HASH" ]; then
    step "pip install -r tests/requirements.txt (into $VENV)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r tests/requirements.txt
    echo "$REQ_HASH" >"$VENV/.wisp-requirements"
fi

# --- cargo ------------------------------------------------------------------
soft_step() {
    local name=$1
    shift
    step "$*"
    if ! "$@"; then
        FAILED+=("$name")
        warn "step failed: $name"
    fi
}

if [ "${WISP_SKIP_CARGO:-0}" = 1 ]; then
    step "WISP_SKIP_CARGO=1: skipping cargo fmt/clippy/test/build"
else
    soft_step "cargo fmt" cargo fmt --all -- --check
    soft_step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
    soft_step "cargo test" cargo test --workspace
    step "cargo build -p wisp"
    cargo build -p wisp
fi

# --- guest programs the e2e suite deploys -------------------------------------
# The lambda_runtime (Rust) function used by the Lambda-compatibility suite.
step "building test fixtures (tests/fixtures/build.sh)"
WISP_RUST_LAMBDA_BIN=$(tests/fixtures/build.sh)
export WISP_RUST_LAMBDA_BIN
# The wasi:http components of the wasm runtime tests (wasm32-wasip2; the committed
# prebuilt copies when the target cannot be fetched) and the Python one (componentize-py).
step "building wasm test components (tests/fixtures/wasm/build.sh)"
WISP_WASM_FIXTURES=$(WISP_COMPONENTIZE_PY="$VENV/bin/componentize-py" tests/fixtures/wasm/build.sh)
export WISP_WASM_FIXTURES

# --- end-to-end suite ---------------------------------------------------------
if [ "${WISP_SKIP_CARGO:-0}" = 1 ]; then
    export WISP_BIN=${WISP_BIN:-$CARGO_TARGET_DIR/debug/wisp}
else
    export WISP_BIN=$CARGO_TARGET_DIR/debug/wisp # the binary just built
fi
if [ ! -x "$WISP_BIN" ]; then
    echo "error: wisp binary not found at $WISP_BIN" >&2
    exit 1
fi
export PYTHONDONTWRITEBYTECODE=1
step "pytest tests/e2e (WISP_BIN=$WISP_BIN)"
if ! "$VENV/bin/python" -m pytest tests/e2e -p no:cacheprovider \
    --timeout="${WISP_TEST_TIMEOUT:-300}" -v -ra "$@"; then
    FAILED+=("e2e tests")
fi

if [ "${#FAILED[@]}" -gt 0 ]; then
    printf '\nFAILED: %s\n' "$(IFS=,; echo "${FAILED[*]}")" >&2
    exit 1
fi
printf '\nall checks passed\n'
