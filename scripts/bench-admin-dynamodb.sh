#!/usr/bin/env bash
# Import and management queries on DynamoDB Local (started here, loopback
# only) at the emulator's scale: TENANTS tenants and DOCUMENTS documents
# imported (time, rate, peak RSS),
# then the sidecar answers the generated request mix for SECONDS with the
# durable audit (real audit records, written through the store), then
# `cedargate-admin serve` is timed one request at a time
# (scripts/bench_admin.py measure) without the index steps, then
# `cedargate-admin migrate` builds them (timed: it gives the records
# already written their index keys, then creates the GSIs) and the queries
# are timed again.
#   scripts/bench-admin-dynamodb.sh [TENANTS] [DOCUMENTS] [SECONDS]
# Defaults: 1000 100000 60. Not part of the test command.
set -euo pipefail
cd "$(dirname "$0")/.."
tenants=${1:-1000}
documents=${2:-100000}
seconds=${3:-60}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
bin=target/release
[ -x "$bin/cedargate-admin" ] || cargo build --locked --release --bins 2>&1 | tail -1
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.1; done; }

"$bin/cedargate-admin" generate --tenants "$tenants" --documents "$documents" --out "$work/data.json" \
  --requests "$work/requests.ndjson" --request-count 100000
dir=${DYNAMODB_LOCAL_DIR:-$(ls -d "$PWD"/.tools/package/lib/dynamodb_local_* 2>/dev/null | head -n 1)}
ddb=$(free_port)
java -Djava.library.path="$dir/DynamoDBLocal_lib" -jar "$dir/DynamoDBLocal.jar" \
  -inMemory -sharedDb -port "$ddb" >/dev/null 2>&1 &
pids+=($!)
wait_port "$ddb"
sleep 1
export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
url="dynamodb://bench-?region=us-east-1&endpoint=http://127.0.0.1:$ddb"
"$bin/cedargate-admin" migrate --store "$url" --audit-spool "$work/spool-admin" >/dev/null
for step in 0004-deleted-documents-index 0003-audit-filter-indexes; do
  "$bin/cedargate-admin" migrate --store "$url" --audit-spool "$work/spool-admin" --rollback "$step" >/dev/null
done
echo "== import into DynamoDB Local"
start=$(date +%s.%N)
/usr/bin/time -f "import: %e s, peak RSS %M KiB" \
  "$bin/cedargate-admin" import --store "$url" --audit-spool "$work/spool-admin" "$work/data.json"
awk -v s="$start" -v e="$(date +%s.%N)" -v n="$documents" \
  'BEGIN {printf "rate: %.0f documents/s\n", n / (e - s)}'

port=$(free_port)
printf '[audit]\nspool_dir = "%s"\n' "$work/spool-sidecar" > "$work/c.toml"
RUST_LOG=error "$bin/cedargate" serve --config "$work/c.toml" --listen "127.0.0.1:$port" \
  --store "$url" --identity trusted &
sidecar=$!
pids+=($sidecar)
wait_port "$port"
echo "== the sidecar on DynamoDB Local, the request mix for ${seconds}s (durable audit)"
wrk -t1 -c32 -d"${seconds}s" --latency -s scripts/authorize-mix.lua "http://127.0.0.1:$port/v1/authorize" -- "$work/requests.ndjson" \
  | grep -E 'Requests/sec|^ +(50|99)%|Non-2xx'
kill "$sidecar"
wait "$sidecar" 2>/dev/null || true

"$bin/cedargate" token keygen --dir "$work/keys" >/dev/null
mint() { "$bin/cedargate" token mint --key "$work/keys/dev-key.pem" --ttl-secs 7200 "$@"; }
admin_token=$(mint --sub pam --tenant t00001 --groups platform-admin)
tenant_token=$(mint --sub u0 --tenant t00000 --groups admin --clearance 3)
serve() {
  port=$(free_port)
  RUST_LOG=error "$bin/cedargate-admin" serve --listen "127.0.0.1:$port" --store "$url" \
    --audit-spool "$work/spool-serve" --jwks-file "$work/keys/jwks.json" \
    --issuer https://cedargate.invalid/dev --audience cedargate-dev --allow-dev-keys &
  admin=$!
  pids+=($admin)
  wait_port "$port"
}
serve
echo "== management queries on DynamoDB Local without the index steps (machine: $(nproc) vCPU), one at a time, keep-alive"
python3 scripts/bench_admin.py measure "http://127.0.0.1:$port" "$admin_token" "$tenant_token" t00000
kill "$admin"
wait "$admin" 2>/dev/null || true
echo "== cedargate-admin migrate (the index steps)"
/usr/bin/time -f "migrate: %e s, peak RSS %M KiB" \
  "$bin/cedargate-admin" migrate --store "$url" --audit-spool "$work/spool-admin" | grep -E "000[34]"
serve
echo "== management queries on DynamoDB Local with the indexes"
python3 scripts/bench_admin.py measure "http://127.0.0.1:$port" "$admin_token" "$tenant_token" t00000
