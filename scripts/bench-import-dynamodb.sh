#!/usr/bin/env bash
# cedargate-admin import into DynamoDB Local (started here, loopback only):
# TENANTS tenants and DOCUMENTS documents from cedargate-admin generate;
# time, rate and peak RSS.
#   scripts/bench-import-dynamodb.sh [TENANTS] [DOCUMENTS]
# Defaults: 1000 100000. Not part of the test command.
set -euo pipefail
cd "$(dirname "$0")/.."
tenants=${1:-1000}
documents=${2:-100000}
bin=target/release
[ -x "$bin/cedargate-admin" ] || cargo build --locked --release --bins 2>&1 | tail -1
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.1; done; }

"$bin/cedargate-admin" generate --tenants "$tenants" --documents "$documents" --out "$work/data.json"
dir=${DYNAMODB_LOCAL_DIR:-$(ls -d "$PWD"/.tools/package/lib/dynamodb_local_* 2>/dev/null | head -n 1)}
port=$(free_port)
java -Djava.library.path="$dir/DynamoDBLocal_lib" -jar "$dir/DynamoDBLocal.jar" \
  -inMemory -sharedDb -port "$port" >/dev/null 2>&1 &
pid=$!
wait_port "$port"
sleep 1
export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
url="dynamodb://bench-?region=us-east-1&endpoint=http://127.0.0.1:$port"
"$bin/cedargate-admin" migrate --store "$url" --audit-spool "$work/spool" >/dev/null
echo "== import into DynamoDB Local (machine: $(nproc) vCPU)"
start=$(date +%s.%N)
/usr/bin/time -f "import: %e s, peak RSS %M KiB" \
  "$bin/cedargate-admin" import --store "$url" --audit-spool "$work/spool" "$work/data.json"
end=$(date +%s.%N)
awk -v s="$start" -v e="$end" -v n="$documents" -v t="$tenants" \
  'BEGIN {printf "rate: %.0f documents/s (%.0f items/s with their change-log entries)\n", n / (e - s), 2 * (n + t) / (e - s)}'
