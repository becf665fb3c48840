#!/usr/bin/env bash
# Load test of POST /v1/authorize on a release build: imports the demo data
# into a fresh SQLite store, starts `cedargate serve`, warms the cache and runs
# wrk (apt-get install wrk) against it. Loopback only; bounded in time.
#   scripts/loadtest.sh [DURATION] [CONNECTIONS] [THREADS]
# DECISION_CACHE=0 turns the decision cache off (every request evaluated).
# AUDIT=durable|buffered|off picks the audit mode (default durable).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-20s}
connections=${2:-32}
threads=${3:-1}
port=${PORT:-18180}

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
cargo build --locked --release --bins
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

./target/release/cedargate-admin import --store "sqlite:$work/store.db" demo/data.json
printf '[cache]\ndecision_capacity = %s\n' "${DECISION_CACHE:-16384}" > "$work/cedargate.toml"
RUST_LOG=warn ./target/release/cedargate serve --identity trusted --config "$work/cedargate.toml" \
  --listen "127.0.0.1:$port" --store "sqlite:$work/store.db" --audit-mode "${AUDIT:-durable}" &
pid=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done

body='{"principal":{"id":"dave","tenant":"acme","roles":["editor"],"clearance":1},"action":"Read","resource":{"type":"Document","id":"q3-report"}}'
curl -fsS "http://127.0.0.1:$port/v1/authorize" -d "$body"; echo
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
LUA
wrk -t"$threads" -c"$connections" -d"$duration" --latency -s "$work/post.lua" \
  "http://127.0.0.1:$port/v1/authorize"
echo
echo "server RSS after the run: $(ps -o rss= -p "$pid") KiB"
curl -fsS "http://127.0.0.1:$port/metrics" \
  | grep -E '^cedargate_(decisions_total|fail_closed|audit_(records|spool_bytes|store_write))' || true
