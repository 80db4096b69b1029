#!/usr/bin/env bash
# Side-by-side benchmark: wisp vs serverless-offline on the same no-op Python handler
# (bench/functions/noop/handler.py). See bench/README.md for what it measures.
#
# Everything binds to and targets 127.0.0.1 only. Every process this script starts is
# started in its own process group and killed (with its descendants) on exit.
#
# Knobs (environment):
#   BENCH_DURATION=15s      measured wrk run length
#   BENCH_WARMUP=3s         wrk warm-up run before each measured run
#   BENCH_CONNS="4 32"      connection counts
#   BENCH_FIRST_RUNS=5      repetitions of the first-invocation measurement (median reported)
#   BENCH_KEEPALIVE_SECS=10 wisp --keep-alive-secs for this run (idle RSS is read after it expires)
#   WISP_BENCH_PORT=18790   wisp listen port
#   PEER_HTTP_PORT=3900 PEER_LAMBDA_PORT=3902  serverless-offline ports
#   BENCH_ONLY=peer|wisp    run one side only (default: both)
#   WISP_BIN=path           use this wisp binary instead of building one
#   BENCH_AUTH=sigv4|off    sigv4 (default): wisp runs with auth on, as by default, and every
#                           load request carries a SigV4 signature (made by bench/sign.py
#                           right before each wrk run, replayed for its duration);
#                           off: `wisp serve --no-auth`, unsigned requests
#   WISP_BENCH_SERVE_FLAGS  extra flags for `wisp serve`
#   CARGO_TARGET_DIR        default $HOME/.cache/wisp-target
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
OUT="$HERE/out"
PEER_DIR="$OUT/peer"
mkdir -p "$OUT" "$PEER_DIR"

ONLY="${BENCH_ONLY:-}"
AUTH="${BENCH_AUTH:-sigv4}"
case "$AUTH" in sigv4|off) ;; *) echo "BENCH_AUTH must be sigv4 or off" >&2; exit 2 ;; esac
DURATION="${BENCH_DURATION:-15s}"
WARMUP="${BENCH_WARMUP:-3s}"
CONNS="${BENCH_CONNS:-4 32}"
FIRST_RUNS="${BENCH_FIRST_RUNS:-5}"
KEEPALIVE_SECS="${BENCH_KEEPALIVE_SECS:-10}"
WISP_PORT="${WISP_BENCH_PORT:-18790}"
PEER_HTTP_PORT="${PEER_HTTP_PORT:-3900}"
PEER_LAMBDA_PORT="${PEER_LAMBDA_PORT:-3902}"
HOST=127.0.0.1
WISP_URL="http://$HOST:$WISP_PORT"
PEER_URL="http://$HOST:$PEER_HTTP_PORT"
PEER_LAMBDA_URL="http://$HOST:$PEER_LAMBDA_PORT"
STAMP="$(date -u +%Y-%m-%dT%H%M%SZ)"
RESULTS="$OUT/results-$STAMP.txt"

# Credentials the local server is started with (and the CLI signs with, if it signs).
export WISP_ROOT_ACCESS_KEY_ID="${WISP_ROOT_ACCESS_KEY_ID:-AKIDWISPBENCH}"
export WISP_ROOT_SECRET_ACCESS_KEY="${WISP_ROOT_SECRET_ACCESS_KEY:-wisp-bench-secret}"
export AWS_ACCESS_KEY_ID="$WISP_ROOT_ACCESS_KEY_ID"
export AWS_SECRET_ACCESS_KEY="$WISP_ROOT_SECRET_ACCESS_KEY"
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export WISP_ENDPOINT="$WISP_URL"
# serverless v3: no telemetry, no update notices (no network).
export SLS_TELEMETRY_DISABLED=1 SLS_NOTIFICATIONS_MODE=off SLS_DEPRECATION_DISABLE='*'

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
raw() { printf '%s\n' "$*" >>"$RESULTS"; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- process bookkeeping
STARTED=()   # pids of process-group leaders we started (setsid)

descendants() { # pid -> all descendant pids (walks /proc ppid links)
  local parent="$1" child
  for child in $(ps -o pid= --ppid "$parent" 2>/dev/null); do
    echo "$child"
    descendants "$child"
  done
}

stop_tree() { # pid: TERM the group and every descendant, wait, then KILL what is left
  local pid="$1" left i
  kill -0 "$pid" 2>/dev/null || return 0
  local tree; tree="$pid $(descendants "$pid" | tr '\n' ' ')"
  kill -TERM -- "-$pid" 2>/dev/null || true
  # shellcheck disable=SC2086
  kill -TERM $tree 2>/dev/null || true
  for i in $(seq 1 50); do
    left=""
    for p in $tree; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
    [ -z "$left" ] && break
    sleep 0.1
  done
  if [ -n "${left:-}" ]; then
    kill -KILL -- "-$pid" 2>/dev/null || true
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local pid
  for pid in "${STARTED[@]}"; do stop_tree "$pid"; done
  STARTED=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_bg() { # logfile cmd...: start in a new session/process group; sets BG_PID
  local logf="$1"; shift
  setsid "$@" >"$logf" 2>&1 </dev/null &
  BG_PID=$!
  STARTED+=("$BG_PID")
}

forget() { # pid: stop it and drop it from STARTED
  local pid="$1" keep=() p
  stop_tree "$pid"
  for p in "${STARTED[@]}"; do [ "$p" != "$pid" ] && keep+=("$p"); done
  STARTED=("${keep[@]+"${keep[@]}"}")
}

port_free() { ! (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
tree_rss_kb() { # pid: VmRSS of pid plus all its descendants
  local total=0 p
  for p in "$1" $(descendants "$1"); do total=$((total + $(rss_kb "$p"))); done
  echo "$total"
}
kb_to_mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k/1024}'; }

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.6f\n", (a[NR/2]+a[NR/2+1])/2}'; }

# ---------------------------------------------------------------- prerequisites
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
if ! command -v wrk >/dev/null; then
  log "installing wrk (apt-get)"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk >/dev/null
fi
command -v node >/dev/null && command -v npm >/dev/null || die "node and npm are required for serverless-offline"
command -v curl >/dev/null || die "curl is required"

if ! [ -f "$PEER_DIR/node_modules/serverless-offline/package.json" ] ||
   ! [ -f "$PEER_DIR/node_modules/serverless/package.json" ]; then
  log "installing serverless@3 serverless-offline@13 into $PEER_DIR"
  [ -f "$PEER_DIR/package.json" ] || echo '{"name":"wisp-bench-peer","private":true}' >"$PEER_DIR/package.json"
  (cd "$PEER_DIR" && npm i --no-audit --no-fund --loglevel=error serverless@3 serverless-offline@13 >&2)
fi

# The real Python interpreter, not a pyenv shim (a shim adds ~80 ms to every start).
# serverless-offline spawns `python3` (from the runtime name) through a shell, so a
# directory with a `python3` link to the real interpreter goes first on PATH; wisp gets
# the same PATH so both run the same interpreter.
PY_REAL="$(python3 -c 'import sys; print(sys.executable)')"
PYBIN="$OUT/pybin"
mkdir -p "$PYBIN"
ln -sfn "$PY_REAL" "$PYBIN/python3"
ln -sfn "$PY_REAL" "$PYBIN/python"
ln -sfn "$PY_REAL" "$PYBIN/python$("$PY_REAL" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
export PATH="$PYBIN:$PATH"

if [ "$ONLY" = peer ]; then
  WISP_BIN=""
elif [ -n "${WISP_BIN:-}" ]; then
  [ -x "$WISP_BIN" ] || die "WISP_BIN=$WISP_BIN is not executable"
else
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wisp-target}"
  log "building wisp (release) into $CARGO_TARGET_DIR"
  (cd "$ROOT" && cargo build --release -p wisp >&2)
  WISP_BIN="$CARGO_TARGET_DIR/release/wisp"
fi

for p in "$WISP_PORT" "$PEER_HTTP_PORT" "$PEER_LAMBDA_PORT"; do
  port_free "$p" || die "port $HOST:$p is in use"
done

: >"$RESULTS"
raw "# wisp vs serverless-offline, $STAMP"
raw "machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
if [ "$ONLY" = peer ]; then raw "wisp: skipped (BENCH_ONLY=peer)"
else raw "wisp: $WISP_BIN ($("$WISP_BIN" --version 2>/dev/null || echo '?'))"; fi
raw "serverless: $(node -p "require('$PEER_DIR/node_modules/serverless/package.json').version"), serverless-offline: $(node -p "require('$PEER_DIR/node_modules/serverless-offline/package.json').version"), node $(node --version)"
raw "python: $PY_REAL ($("$PY_REAL" --version 2>&1))"
raw "wrk: $(wrk -v 2>&1 | head -1)"
raw "settings: duration=$DURATION warmup=$WARMUP conns=[$CONNS] first_runs=$FIRST_RUNS keep_alive_secs=$KEEPALIVE_SECS wisp_auth=$AUTH"
raw ""

# result lines are "RESULT <key> <value>", parsed by bench/report.py
result() { raw "RESULT $1 $2"; }

sign_for() { # url: export the SigV4 headers invoke.lua adds (nothing when auth is off)
  export WISP_BENCH_AMZ_DATE="" WISP_BENCH_AUTHORIZATION=""
  if [ "$AUTH" = sigv4 ]; then
    local lines
    mapfile -t lines < <("$PY_REAL" "$HERE/sign.py" POST "$1" '{}')
    WISP_BENCH_AMZ_DATE="${lines[0]}" WISP_BENCH_AUTHORIZATION="${lines[1]}"
  fi
}

run_wrk() { # key conns url [lua] [sign]
  local key="$1" c="$2" url="$3" lua="${4:-}" signed="${5:-}" args=() outf
  [ -n "$lua" ] && args=(-s "$lua")
  if [ -n "$signed" ]; then sign_for "$url"; else export WISP_BENCH_AMZ_DATE="" WISP_BENCH_AUTHORIZATION=""; fi
  log "$key: warm-up ${WARMUP}, -c$c"
  wrk -t1 -c"$c" -d"$WARMUP" "${args[@]}" "$url" >/dev/null
  [ -n "$signed" ] && sign_for "$url"
  log "$key: measured ${DURATION}, -c$c"
  outf="$OUT/wrk-$key-c$c.txt"
  wrk -t1 -c"$c" -d"$DURATION" --latency "${args[@]}" "$url" >"$outf"
  raw "## wrk $key -c$c $url"
  cat "$outf" >>"$RESULTS"
  raw ""
}

# ---------------------------------------------------------------- peer: serverless-offline
if [ "$ONLY" != wisp ]; then
SVC="$PEER_DIR/svc"
mkdir -p "$SVC"
sed -e "s/httpPort: 3900/httpPort: $PEER_HTTP_PORT/" -e "s/lambdaPort: 3902/lambdaPort: $PEER_LAMBDA_PORT/" \
  "$HERE/peer/serverless.yml" >"$SVC/serverless.yml"
ln -sfn "$HERE/functions" "$SVC/functions"
PEER_FN="wisp-bench-peer-bench-noop"

start_peer() { # sets PEER_PID; waits for "Server ready"
  local i
  # (VIRTUAL_ENV unset: serverless-offline would put that venv's bin before ours on PATH)
  start_bg "$OUT/peer-serverless.log" env -u VIRTUAL_ENV bash -c "cd '$SVC' && exec node '$PEER_DIR/node_modules/serverless/bin/serverless.js' offline start"
  PEER_PID=$BG_PID
  for i in $(seq 1 600); do
    grep -q "Server ready" "$OUT/peer-serverless.log" 2>/dev/null && return 0
    kill -0 "$PEER_PID" 2>/dev/null || { cat "$OUT/peer-serverless.log" >&2; die "serverless-offline exited"; }
    sleep 0.05
  done
  cat "$OUT/peer-serverless.log" >&2
  die "serverless-offline did not become ready in 30 s"
}

log "peer: first request after start, $FIRST_RUNS times"
raw "## serverless-offline: first request after start (s)"
peer_first=()
for i in $(seq 1 "$FIRST_RUNS"); do
  start_peer
  t="$(curl -sS -o "$OUT/peer-first-body.txt" -w '%{time_total}' "$PEER_URL/noop")"
  grep -q '"ok"' "$OUT/peer-first-body.txt" || die "serverless-offline answered: $(cat "$OUT/peer-first-body.txt")"
  raw "run $i: $t"
  peer_first+=("$t")
  forget "$PEER_PID"
done
result peer.first_s "$(printf '%s\n' "${peer_first[@]}" | median)"

log "peer: throughput runs"
start_peer
result peer.rss_start_kb "$(tree_rss_kb "$PEER_PID")"
curl -sS -f "$PEER_URL/noop" | grep -q '"ok"' || die "serverless-offline GET /noop failed"
curl -sS -f -X POST -d '{}' "$PEER_LAMBDA_URL/2015-03-31/functions/$PEER_FN/invocations" | grep -q '"ok"' ||
  die "serverless-offline Invoke API failed"
for c in $CONNS; do
  run_wrk peer_http "$c" "$PEER_URL/noop"
done
for c in $CONNS; do
  run_wrk peer_invoke "$c" "$PEER_LAMBDA_URL/2015-03-31/functions/$PEER_FN/invocations" "$HERE/wrk/invoke.lua"
done
result peer.rss_after_kb "$(tree_rss_kb "$PEER_PID")"
raw "peer python: $(for p in $(descendants "$PEER_PID"); do readlink "/proc/$p/exe" 2>/dev/null; done | sort | uniq -c | tr '\n' ';')"
forget "$PEER_PID"
fi

# ---------------------------------------------------------------- wisp
if [ "$ONLY" != peer ]; then
DATA="$(mktemp -d "$OUT/wisp-data.XXXXXX")"
log "wisp: serve on $WISP_URL, data dir $DATA"
# shellcheck disable=SC2086
AUTH_FLAGS=""; [ "$AUTH" = off ] && AUTH_FLAGS="--no-auth"
# shellcheck disable=SC2086
start_bg "$OUT/wisp-serve.log" "$WISP_BIN" serve --listen "$HOST:$WISP_PORT" --data-dir "$DATA" \
  --keep-alive-secs "$KEEPALIVE_SECS" $AUTH_FLAGS ${WISP_BENCH_SERVE_FLAGS:-}
WISP_PID=$BG_PID
for i in $(seq 1 600); do
  curl -s -f -o /dev/null "$WISP_URL/wisp/v1/health" && break
  kill -0 "$WISP_PID" 2>/dev/null || { cat "$OUT/wisp-serve.log" >&2; die "wisp serve exited"; }
  sleep 0.05
done
curl -s -f -o /dev/null "$WISP_URL/wisp/v1/health" || die "wisp did not become healthy in 30 s"
sleep 1
result wisp.rss_start_kb "$(rss_kb "$WISP_PID")"

wisp_deploy() { # name
  "$WISP_BIN" deploy "$1" --dir "$HERE/functions/noop" --runtime python3.11 --handler handler.handler \
    --memory 512 --timeout 15 >>"$OUT/wisp-deploy.log" 2>&1 || { cat "$OUT/wisp-deploy.log" >&2; die "wisp deploy $1 failed"; }
}
wisp_invoke_url() { echo "$WISP_URL/2015-03-31/functions/$1/invocations"; }
wisp_curl_invoke() { # url [curl args...]: POST {} to the Invoke API, signed when auth is on
  local url="$1"; shift
  sign_for "$url"
  local hdr=()
  [ -n "$WISP_BENCH_AUTHORIZATION" ] &&
    hdr=(-H "X-Amz-Date: $WISP_BENCH_AMZ_DATE" -H "Authorization: $WISP_BENCH_AUTHORIZATION")
  curl -sS "${hdr[@]}" -X POST -H 'Content-Type: application/json' -d '{}' "$@" "$url"
}

log "wisp: first invocation after deploy, $FIRST_RUNS times"
raw "## wisp: first invocation after deploy (s)"
wisp_first=()
for i in $(seq 1 "$FIRST_RUNS"); do
  name="noopfirst$i"
  wisp_deploy "$name"
  url="$(wisp_invoke_url "$name")"
  sign_for "$url"   # signed before the clock starts: curl's time is the request alone
  hdr=()
  [ -n "$WISP_BENCH_AUTHORIZATION" ] &&
    hdr=(-H "X-Amz-Date: $WISP_BENCH_AMZ_DATE" -H "Authorization: $WISP_BENCH_AUTHORIZATION")
  t="$(curl -sS "${hdr[@]}" -o "$OUT/wisp-first-body.txt" -D "$OUT/wisp-first-headers.txt" -w '%{time_total}' \
       -X POST -H 'Content-Type: application/json' -d '{}' "$url")"
  grep -q '"ok"' "$OUT/wisp-first-body.txt" || die "wisp invoke $name answered: $(cat "$OUT/wisp-first-body.txt")"
  ! grep -qi '^x-amz-function-error' "$OUT/wisp-first-headers.txt" || die "wisp invoke $name: function error"
  raw "run $i: $t"
  wisp_first+=("$t")
done
result wisp.first_s "$(printf '%s\n' "${wisp_first[@]}" | median)"

log "wisp: throughput runs"
wisp_deploy noop
body="$(wisp_curl_invoke "$(wisp_invoke_url noop)" -f)" ||
  die "wisp invoke noop failed"
case "$body" in *'"ok"'*) ;; *) die "wisp invoke noop answered: $body" ;; esac
for c in $CONNS; do
  run_wrk wisp_invoke "$c" "$(wisp_invoke_url noop)" "$HERE/wrk/invoke.lua" sign
done
result wisp.rss_after_kb "$(rss_kb "$WISP_PID")"
result wisp.tree_rss_after_kb "$(tree_rss_kb "$WISP_PID")"
raw "wisp python: $(for p in $(descendants "$WISP_PID"); do readlink "/proc/$p/exe" 2>/dev/null; done | sort | uniq -c | tr '\n' ';')"

wait_s=$((KEEPALIVE_SECS + 5))
log "wisp: waiting ${wait_s}s for keep-alive expiry"
sleep "$wait_s"
result wisp.rss_idle_kb "$(rss_kb "$WISP_PID")"
result wisp.tree_rss_idle_kb "$(tree_rss_kb "$WISP_PID")"
result wisp.children_idle "$(descendants "$WISP_PID" | wc -l)"
forget "$WISP_PID"
rm -rf "$DATA"
fi

# ---------------------------------------------------------------- report
raw ""
PY_REPORT="$PY_REAL"
"$PY_REPORT" "$HERE/report.py" "$RESULTS" >"$OUT/table-$STAMP.md"
cat "$OUT/table-$STAMP.md" >>"$RESULTS"
cat "$OUT/table-$STAMP.md"
log "raw results: $RESULTS"
