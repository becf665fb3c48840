#!/usr/bin/env bash
# Management queries at scale, on a release build, loopback only. Reads
# the store scripts/bench-scale.sh left in $WORK (10,000 tenants, 1M
# documents), copies it, adds AUDIT synthetic audit records for the biggest
# tenant (t00000) straight into SQLite (scripts/bench_admin.py seed: the
# record shape the sidecar writes, over 90 days, Pareto-skewed users), then
# times each management query one request at a time; then builds the
# index steps (cedargate-admin migrate: 0003 audit filters, 0004 deleted
# documents), timed, and times the queries again; then a retention run
# over a copy of the 1M-document store without and with the
# deleted-documents index:
#   WORK=/path/of/bench-scale scripts/bench-admin-scale.sh [AUDIT]
# Default AUDIT: 10000000. Not part of the test command.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${WORK:?set WORK to the directory scripts/bench-scale.sh used}"
audit=${1:-10000000}
port=18196
bin=target/release
[ -x "$bin/cedargate-admin" ] || cargo build --locked --release --bins 2>&1 | tail -1
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null' EXIT

db="$WORK/admin.db"
if [ ! -f "$db.seeded-$audit" ]; then
  rm -f "$db" "$db"-*
  cp "$WORK/store.db" "$db"
  python3 scripts/bench_admin.py seed "$db" t00000 "$audit"
  touch "$db.seeded-$audit"
fi
ls -la "$db" | awk '{printf "store file with the audit records: %.0f MiB\n", $5/1048576}'

keys="$WORK/keys"
"$bin/cedargate" token keygen --dir "$keys" >/dev/null
mint() { "$bin/cedargate" token mint --key "$keys/dev-key.pem" --ttl-secs 7200 "$@"; }
admin_token=$(mint --sub pam --tenant t00001 --groups platform-admin)
tenant_token=$(mint --sub u0 --tenant t00000 --groups admin --clearance 3)

serve() {
  RUST_LOG=error "$bin/cedargate-admin" serve --listen "127.0.0.1:$port" --store "sqlite:$db" \
    --audit-spool "$WORK/admin-spool" --jwks-file "$keys/jwks.json" \
    --issuer https://cedargate.invalid/dev --audience cedargate-dev --allow-dev-keys &
  pid=$!
  for _ in $(seq 200); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null && break
    sleep 0.05
  done
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

if [ -z "${SKIP_BEFORE:-}" ]; then
  "$bin/cedargate-admin" migrate --store "sqlite:$db" --rollback 0003-audit-filter-indexes \
    --audit-spool "$WORK/admin-spool" >/dev/null 2>&1 || true
  serve
  echo "== management queries without the filter indexes (machine: $(nproc) vCPU), one at a time, keep-alive"
  python3 scripts/bench_admin.py measure "http://127.0.0.1:$port" "$admin_token" "$tenant_token" t00000
  stop
fi

echo "== cedargate-admin migrate (builds the index steps)"
/usr/bin/time -f "migrate: %e s, peak RSS %M KiB" \
  "$bin/cedargate-admin" migrate --store "sqlite:$db" --audit-spool "$WORK/admin-spool" | grep -E "000[34]"
ls -la "$db" | awk '{printf "store file with the indexes: %.0f MiB\n", $5/1048576}'
serve
echo "== management queries with the filter indexes"
python3 scripts/bench_admin.py measure "http://127.0.0.1:$port" "$admin_token" "$tenant_token" t00000
stop

echo "== retention over the 1M-document store (a copy), without and with the deleted-documents index"
for indexed in no yes; do
  copy="$WORK/retention.db"
  rm -f "$copy" "$copy"-*
  cp "$WORK/store.db" "$copy"
  if [ "$indexed" = yes ]; then
    "$bin/cedargate-admin" migrate --store "sqlite:$copy" --audit-spool "$WORK/retention-spool" >/dev/null
  fi
  for run in first again; do
    /usr/bin/time -f "index $indexed, $run run: %e s, peak RSS %M KiB" \
      "$bin/cedargate-admin" retention run --store "sqlite:$copy" --audit-spool "$WORK/retention-spool" \
      --json > "$WORK/retention-$indexed-$run.json"
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("  tenants checked:", r["tenantsChecked"], "documents purged:", r["documentsPurged"], "failures:", len(r["failures"]))' \
      "$WORK/retention-$indexed-$run.json" || true
  done
done
rm -f "$WORK/retention.db"*
