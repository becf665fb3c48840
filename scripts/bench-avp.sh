#!/usr/bin/env bash
# `IsAuthorized` through the AWS SDK for Rust against the sidecar (release
# build, durable audit on): calls per second and latency percentiles.
#   scripts/bench-avp.sh [CONCURRENCY] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
concurrency=${1:-32}
seconds=${2:-15}
cargo build --locked --release --bins --example avp_load
bin=target/release
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin/cedargate-admin" import --store "sqlite:$work/store.db" --audit-spool "$work/spool" demo/data.json >/dev/null
RUST_LOG=warn "$bin/cedargate" serve --identity trusted --listen "127.0.0.1:$port" \
  --store "sqlite:$work/store.db" --audit-spool "$work/spool" ${AUDIT_MODE:+--audit-mode "$AUDIT_MODE"} &
pid=$!
for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
"$bin/examples/avp_load" "http://127.0.0.1:$port" "$concurrency" "$seconds"
echo "sidecar RSS: $(ps -o rss= -p "$pid") KiB"
