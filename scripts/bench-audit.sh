#!/usr/bin/env bash
# Decision throughput with the audit trail durable, buffered and off, one
# after the other on the same build (scripts/loadtest.sh for each).
#   scripts/bench-audit.sh [DURATION] [CONNECTIONS]
# DECISION_CACHE=0 makes every request evaluated.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-15s}
connections=${2:-32}
cargo build --locked --release --bins
for mode in off durable buffered; do
  echo "== audit $mode"
  AUDIT=$mode PORT=$((18300 + RANDOM % 500)) scripts/loadtest.sh "$duration" "$connections" 1 \
    | grep -E 'Requests/sec|^ +(50|99)%|audit_records|RSS'
done
