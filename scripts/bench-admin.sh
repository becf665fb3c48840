#!/usr/bin/env bash
# GET /v1/tenants/{id} on `cedargate-admin serve` (release build) over
# SQLite and over DynamoDB Local (started here on loopback), with wrk.
#   scripts/bench-admin.sh [DURATION] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
connections=${2:-4}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
cargo build --locked --release --bins
bin=target/release
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.1; done; }

"$bin/cedargate" token keygen --dir "$work/keys" >/dev/null
token=$("$bin/cedargate" token mint --key "$work/keys/dev-key.pem" --sub ada --tenant acme --groups admin)
cat > "$work/get.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $token"
LUA

run() { # name store-url
  "$bin/cedargate-admin" import --store "$2" --audit-spool "$work/spool-import" demo/data.json >/dev/null
  local port; port=$(free_port)
  RUST_LOG=warn "$bin/cedargate-admin" serve --listen "127.0.0.1:$port" --store "$2" \
    --audit-spool "$work/spool-$1" --jwks-file "$work/keys/jwks.json" --allow-dev-keys \
    --issuer https://cedargate.invalid/dev --audience cedargate-dev &
  pids+=($!)
  wait_port "$port"
  echo "== $1"
  wrk -t1 -c"$connections" -d"$duration" --latency -s "$work/get.lua" \
    "http://127.0.0.1:$port/v1/tenants/acme" | grep -E 'Requests/sec|^ +(50|90|99)%|Non-2xx'
}

run sqlite "sqlite:$work/admin.db"
dir=${DYNAMODB_LOCAL_DIR:-$(ls -d "$PWD"/.tools/package/lib/dynamodb_local_* 2>/dev/null | head -n 1)}
ddb_port=$(free_port)
java -Djava.library.path="$dir/DynamoDBLocal_lib" -jar "$dir/DynamoDBLocal.jar" \
  -inMemory -sharedDb -port "$ddb_port" >/dev/null 2>&1 &
pids+=($!)
wait_port "$ddb_port"
sleep 1
"$bin/cedargate-admin" migrate --store "dynamodb://bench-?region=us-east-1&endpoint=http://127.0.0.1:$ddb_port" \
  --audit-spool "$work/spool-migrate" >/dev/null

run dynamodb-local "dynamodb://bench-?region=us-east-1&endpoint=http://127.0.0.1:$ddb_port"
