#!/usr/bin/env bash
# Cache-miss decision latency and revocation delay against SQLite and
# DynamoDB Local (started here on a free loopback port, stopped afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${DYNAMODB_LOCAL_DIR:-$(ls -d "$PWD"/.tools/package/lib/dynamodb_local_* 2>/dev/null | head -n 1)}
[ -f "$dir/DynamoDBLocal.jar" ] || { echo "DynamoDB Local not found: run scripts/test.sh once"; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
java -Djava.library.path="$dir/DynamoDBLocal_lib" -jar "$dir/DynamoDBLocal.jar" \
  -inMemory -sharedDb -port "$port" >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
CEDARGATE_BENCH_DYNAMODB="http://127.0.0.1:$port" cargo bench --locked --bench store
