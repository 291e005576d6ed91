#!/usr/bin/env bash
# Issue #14's side-by-side run: the gateway, its baselines and Node-RED in ONE run of the
# ../shared/bench-peers kit (same wrk load with a new data.id in every request, same nginx sink,
# same RSS/CPU sampling). Then gateway-only measurements: ingest at half its rate, ingest with
# 100,000 deliveries pending, and the drain of those 100,000 (with the RSS of every process).
# Every gateway row is checked: events stored must equal the requests the gateway accepted (the
# run fails loudly otherwise).
#
#   ../shared/bench-peers/setup.sh     # once (wrk, nginx, Node-RED, the kit's venv)
#   .venv/bin/pip install -e '.[bench]' # once (psutil: RSS and CPU of process trees)
#   bench/peers.sh                     # ~9 min; each pass's tables in $RUN_DIR/passN/summary.md
#   PASSES=1 bench/peers.sh            # one pass, ~3 min: $RUN_DIR/summary.md
#
# ROUTES=path runs the gateway rows on another routes.yaml (the kit's by default).
# PASSES=3 (the default) runs all of it three times, each pass in $RUN_DIR/passN, then sums the
# passes up against issue #23's targets in $RUN_DIR/passes.md: a target is met only if every
# pass meets it (a user reads the worst pass, not the best).
#
# Knobs: PASSES=3 DURATION=10 WARMUP=3 CONCS=32 PENDING=100000 ONLY='glob ...'
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PASSES="${PASSES:-3}"
if (( PASSES > 1 )); then
  base="${RUN_DIR:-$(mktemp -d /tmp/peers.XXXXXX)}"
  for n in $(seq 1 "$PASSES"); do
    RUN_DIR="$base/pass$n" PASSES=1 bash "${BASH_SOURCE[0]}" || echo "!! pass $n exited $?"
  done
  "$REPO/.venv/bin/python" "$REPO/bench/peers.py" passes "$base"/pass*/results.jsonl | tee "$base/passes.md"
  echo "passes: $base"
  exit 0
fi
KIT="${KIT:-$REPO/../shared/bench-peers}"
export CONCS="${CONCS:-32}"
PENDING="${PENDING:-100000}"
ONLY="${ONLY:-}"
# shellcheck source=/dev/null
source "$KIT/lib.sh"
GATEWAY="$REPO/.venv/bin/gateway"
TOOL=("$REPO/.venv/bin/python" "$REPO/bench/peers.py")
export WRK_UNIQUE=1 GO_WEBHOOK_TOKEN=benchtok
command -v wrk >/dev/null && [[ -x "$VENV/bin/python" ]] || { echo "run $KIT/setup.sh first" >&2; exit 1; }
[[ -x "$GATEWAY" ]] || { echo "install the gateway first (README: python3 -m venv .venv && ...)" >&2; exit 1; }
"${TOOL[0]}" -c "import psutil" 2>/dev/null || { echo "install the bench extra first: .venv/bin/pip install -e '.[bench]'" >&2; exit 1; }

init_run_dir
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM
versions
log "run dir: $RUN_DIR (duration=${DURATION}s warmup=${WARMUP}s concs=$CONCS)"
start_sink || exit 1
SINK_LOG="$RUN_DIR/logs/sink-access.log"
UV=("$VENV/bin/uvicorn" --app-dir "$KIT/apps" --host 127.0.0.1 --no-access-log --log-level warning
    --loop uvloop --http httptools --backlog 4096)
ROUTES="${ROUTES:-$KIT/gateway/routes.yaml}"
URL="http://127.0.0.1:8600/hooks/go?token=benchtok"
READY="http://127.0.0.1:8600/healthz"

gateway_target() {  # gateway_target NAME DB [serve options...]: one row, then stored == accepted
  local name="$1" db="$2"; shift 2
  want "$name" || return 0
  run_target "$name" "$URL" "$READY" env SINK_URL="$SINK_URL" \
    "$GATEWAY" serve --config "$ROUTES" --db "sqlite:///$db" --port 8600 "$@" \
    -- --sink-log "$SINK_LOG" --note "gateway serve $* (shipped defaults, the kit's routes.yaml)"
  "${TOOL[@]}" stored "$name" "$db" "$RESULTS" || log "!! $name: events stored != requests accepted"
}

# The limits and the peer, as the kit runs them.
if want litestar-uvicorn-1w; then
  run_target litestar-uvicorn-1w http://127.0.0.1:8001/hook http://127.0.0.1:8001/hook \
    "${UV[@]}" --port 8001 --workers 1 litestar_bare:app -- --expect 202 --note "bare Litestar: parse JSON -> 202"
fi
if want litestar-sqlite-uvicorn-1w; then
  db="$RUN_DIR/data/litestar-sqlite.db"
  "$VENV/bin/python" -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA journal_mode=WAL'); c.execute('CREATE TABLE IF NOT EXISTS inbox (id INTEGER PRIMARY KEY, received_at REAL NOT NULL, event_id TEXT, body BLOB NOT NULL)'); c.commit()" "$db"
  run_target litestar-sqlite-uvicorn-1w http://127.0.0.1:8011/hook http://127.0.0.1:8011/hook \
    env BENCH_DB="$db" "${UV[@]}" --port 8011 --workers 1 litestar_sqlite:app -- --expect 202 --note "Litestar + one SQLite INSERT per request"
fi
NR_JS="$NODERED_DIR/node_modules/node-red/red.js"
if want nodered-sync; then
  ud="$RUN_DIR/nodered-sync"; mkdir -p "$ud"; cp "$KIT/nodered/flows.json" "$KIT/nodered/settings.js" "$ud/"
  run_target nodered-sync http://127.0.0.1:1880/hook http://127.0.0.1:1880/ \
    env SINK_URL="$SINK_URL" NR_PORT=1880 node "$NR_JS" --settings "$ud/settings.js" --userDir "$ud" flows.json \
    -- --expect 202 --sink-log "$SINK_LOG" --note "Node-RED: switch, template, POST to the sink, then 202"
fi

# The gateway, as `gateway serve` ships.
gateway_target gateway-serve "$RUN_DIR/data/serve.db"
gateway_target gateway-no-deliver "$RUN_DIR/data/no-deliver.db" --no-deliver
if want gateway-no-deliver-half; then  # the same, at half the rate it reached: latency at a load it can take
  db="$RUN_DIR/data/half.db"
  start_bg gateway-no-deliver-half env SINK_URL="$SINK_URL" "$GATEWAY" serve --config "$ROUTES" --db "sqlite:///$db" --port 8600 --no-deliver
  "${TOOL[@]}" half gateway-no-deliver-half "$db" "$URL" "$READY" "$RESULTS" || log "!! gateway-no-deliver-half: events stored != requests completed"
  stop_pid "$BG_PID"
fi
if want gateway-no-deliver-backlog; then
  "${TOOL[@]}" prefill "$RUN_DIR/data/backlog.db" "$PENDING" && \
    gateway_target gateway-no-deliver-backlog "$RUN_DIR/data/backlog.db" --no-deliver
fi

# The drain of a stored backlog of $PENDING deliveries to one destination, default settings:
# its rate, and the RSS of all the gateway's processes meanwhile.
if want gateway-drain; then
  db="$RUN_DIR/data/drain.db"
  "${TOOL[@]}" prefill "$db" "$PENDING"
  sink_before=$(wc -l < "$SINK_LOG")
  start_bg gateway-drain env SINK_URL="$SINK_URL" "$GATEWAY" serve --config "$ROUTES" --db "sqlite:///$db" --port 8600
  "${TOOL[@]}" drain gateway-drain "$db" "$PENDING" "$SINK_LOG" "$RESULTS" "$READY" "$BG_PID" "$sink_before"
  stop_pid "$BG_PID"
fi

stop_pid "$SINK_PID"
"$VENV/bin/python" "$KIT/report.py" "$RUN_DIR" > "$RUN_DIR/results.md"
"${TOOL[@]}" summary "$RESULTS" > "$RUN_DIR/summary.md"
cat "$RUN_DIR/results.md" "$RUN_DIR/summary.md"
log "results: $RUN_DIR"
