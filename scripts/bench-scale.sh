#!/usr/bin/env bash
# The sidecar at scale, on a release build, loopback only:
#   1. generate TENANTS tenants (Zipf-skewed sizes) and DOCUMENTS documents,
#      with a document in the biggest tenant shared with 10,000 users and
#      500 roles, and a request mix (cedargate-admin generate);
#   2. import them into SQLite (streamed): time, rate, peak RSS;
#   3. for each document cache size, entries:bytes (too small, the
#      default, large): start the sidecar, run the request mix with wrk
#      (the first 30 s after start, then the next DURATION), print
#      throughput, p50/p99, the cache hit rate, what the caches hold and
#      the RSS;
#   4. the wide document's decision next to an ordinary one's.
#   scripts/bench-scale.sh [TENANTS] [DOCUMENTS] [DURATION] [SIZES]
# Defaults: 10000 1000000 30s "10000:67108864 100000:67108864
# 1000000:4294967296". Not part of the test
# command (tests/it/scale.rs runs the same code paths at a small size).
set -euo pipefail
cd "$(dirname "$0")/.."
tenants=${1:-10000}
documents=${2:-1000000}
duration=${3:-30s}
sizes=${4:-"10000:67108864 100000:67108864 1000000:4294967296"}
port=18195
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
cargo build --locked --release --bins 2>&1 | tail -1
bin=target/release
work=${WORK:-$(mktemp -d)}
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; [ -z "${WORK:-}" ] && rm -rf "$work"' EXIT

echo "== data: $tenants tenants, $documents documents (machine: $(nproc) vCPU, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo))"
/usr/bin/time -f "generate: %e s, peak RSS %M KiB" \
  "$bin/cedargate-admin" generate --tenants "$tenants" --documents "$documents" \
  --wide-users 10000 --wide-roles 500 --out "$work/data.json" \
  --requests "$work/requests.ndjson" --request-count 200000
ls -la "$work/data.json" | awk '{printf "import file: %.0f MiB\n", $5/1048576}'

echo "== import (SQLite, streamed, one transaction)"
rm -f "$work/store.db"*
/usr/bin/time -f "import: %e s, peak RSS %M KiB" \
  "$bin/cedargate-admin" import --store "sqlite:$work/store.db" --audit-spool "$work/spool" "$work/data.json"
ls -la "$work/store.db" | awk '{printf "store file: %.0f MiB\n", $5/1048576}'


start() { # document capacity, document bytes, audit mode
  printf '[cache]\ndocument_capacity = %s\ndocument_max_bytes = %s\n[audit]\nspool_dir = "%s"\nmode = "%s"\n' \
    "$1" "$2" "$work/spool-run" "${3:-durable}" > "$work/c.toml"
  RUST_LOG=error "$bin/cedargate" serve --config "$work/c.toml" --listen "127.0.0.1:$port" \
    --store "sqlite:$work/store.db" --identity trusted &
  pid=$!
  for _ in $(seq 200); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && return
    sleep 0.05
  done
}
stop() { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; pid=; }
metric() { # name filter → sum
  curl -fsS "http://127.0.0.1:$port/metrics" | awk -v n="$1" -v f="$2" 'index($1, n) == 1 && index($1, f) > 0 {s += $2} END {printf "%.0f", s}'
}
run() { # label duration
  local out
  out=$(wrk -t1 -c32 -d"$2" --latency -s scripts/authorize-mix.lua "http://127.0.0.1:$port/v1/authorize" -- "$work/requests.ndjson")
  local hits misses
  hits=$(metric cedargate_cache_events_total 'cache="document",event="hit"')
  misses=$(metric cedargate_cache_events_total 'cache="document",event="miss"')
  printf '  %-6s %s req/s, p50 %s, p99 %s, non-2xx %s; document cache hits %s misses %s (%s%%), holds %s documents (%s MiB) and %s tenants (%s MiB); RSS %s MiB\n' "$1" \
    "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" \
    "$(echo "$out" | awk '/^ +50%/ {print $2}')" "$(echo "$out" | awk '/^ +99%/ {print $2}')" \
    "$(echo "$out" | awk '/Non-2xx/ {print $NF}' | grep . || echo 0)" \
    "$hits" "$misses" "$(awk -v h="$hits" -v m="$misses" 'BEGIN { if (h + m > 0) printf "%.1f", 100 * h / (h + m); else print "-" }')" \
    "$(metric cedargate_cache_entries 'cache="document"')" "$(($(metric cedargate_cache_bytes 'cache="document"') >> 20))" \
    "$(metric cedargate_cache_entries 'cache="tenant"')" "$(($(metric cedargate_cache_bytes 'cache="tenant"') >> 20))" \
    "$(($(ps -o rss= -p "$pid") / 1024))"
}

echo "== the request mix (200,000 bodies, cycled), wrk -t1 -c32, default configuration (audit durable)"
for size in $sizes; do
  echo "document cache: ${size%%:*} entries, $((${size##*:} >> 20)) MiB:"
  start "${size%%:*}" "${size##*:}"
  run cold 30s
  run warm "$duration"
  stop
done
echo "document cache: the default (100000 entries, 64 MiB), audit off (what the audit costs at this size):"
start 100000 67108864 off
run cold 30s
run warm "$duration"
stop

echo "== the wide document (10,000 users, 500 roles) next to an ordinary one, wrk -t1 -c32 10s each, decision cache off"
printf '[cache]\ndecision_capacity = 0\nresidual_capacity = 0\n[audit]\nspool_dir = "%s"\n' "$work/spool-run" > "$work/c.toml"
RUST_LOG=error "$bin/cedargate" serve --config "$work/c.toml" --listen "127.0.0.1:$port" \
  --store "sqlite:$work/store.db" --identity trusted --audit-mode off &
pid=$!
sleep 1
for doc in d0000001 wide-0; do
  body="{\"principal\":{\"id\":\"u7\",\"tenant\":\"t00000\",\"roles\":[\"viewer\"],\"clearance\":3},\"action\":\"Read\",\"resource\":{\"type\":\"Document\",\"id\":\"$doc\"}}"
  printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' "'$body'" > "$work/one.lua"
  curl -fsS "http://127.0.0.1:$port/v1/authorize" -d "$body" | head -c 120; echo
  wrk -t1 -c32 -d10s --latency -s "$work/one.lua" "http://127.0.0.1:$port/v1/authorize" \
    | awk -v d="$doc" '/Requests\/sec/ {r=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {printf "  %-9s %s req/s, p50 %s, p99 %s\n", d, r, p50, p99}'
done
stop
