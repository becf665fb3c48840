#!/usr/bin/env bash
# Valid requests during a flood of bad tokens, on a release build, loopback
# only. The sidecar runs its default (durable audit, bearer tokens); wrk
# sends a valid token's request (dave reads q3-report) with CONNECTIONS
# connections for DURATION, first alone, then while a second wrk floods
# the same sidecar with requests carrying a token with a bad signature (as
# fast as it can, FLOOD connections, from a rotating X-Forwarded-For, so
# the refusals are counted under many sources). Prints both runs, the
# flood's rate, the spool's size and the authentication records written.
#   scripts/bench-auth-flood.sh [DURATION] [CONNECTIONS] [FLOOD]
# Defaults: 15s 32 64. Not part of the test command.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-15s}
connections=${2:-32}
flood=${3:-64}
port=18197
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
bin=target/release
[ -x "$bin/cedargate" ] || cargo build --locked --release --bins 2>&1 | tail -1
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

"$bin/cedargate-admin" import --store "sqlite:$work/store.db" --audit-spool "$work/spool" demo/data.json >/dev/null
"$bin/cedargate" token keygen --dir "$work/keys" >/dev/null
token=$("$bin/cedargate" token mint --key "$work/keys/dev-key.pem" --sub dave --tenant acme --groups editor --clearance 1 --ttl-secs 3600)
# The same token with its signature's last characters changed.
bad="${token%????}AAAA"
body='{"action":"Read","resource":{"type":"Document","id":"q3-report"}}'
printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["Authorization"] = "Bearer %s"\n' \
  "'$body'" "$token" > "$work/valid.lua"
cat > "$work/flood.lua" <<EOF
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $bad"
local n = 0
request = function()
  n = n + 1
  local k = n % 50000
  wrk.headers["X-Forwarded-For"] = "198.51." .. math.floor(k / 250) .. "." .. (k % 250)
  return wrk.format()
end
EOF

printf '[audit]\nspool_dir = "%s"\n' "$work/spool-run" > "$work/c.toml"
RUST_LOG=error "$bin/cedargate" serve --config "$work/c.toml" --listen "127.0.0.1:$port" \
  --store "sqlite:$work/store.db" --jwks-file "$work/keys/jwks.json" \
  --issuer https://cedargate.invalid/dev --audience cedargate-dev --allow-dev-keys &
pid=$!
for _ in $(seq 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && break
  sleep 0.05
done
url="http://127.0.0.1:$port/v1/authorize"
summary() { grep -E 'Requests/sec|^ +(50|99)%|Non-2xx'; }

echo "== valid requests alone ($(nproc) vCPU, wrk -t1 -c$connections -d$duration)"
wrk -t1 -c"$connections" -d2s -s "$work/valid.lua" "$url" >/dev/null
wrk -t1 -c"$connections" -d"$duration" --latency -s "$work/valid.lua" "$url" | summary

echo "== valid requests during the flood (flood: wrk -t1 -c$flood, bad signature, 50,000 sources)"
wrk -t1 -c"$flood" -d"$duration" -s "$work/flood.lua" "$url" > "$work/flood.out" &
flooder=$!
wrk -t1 -c"$connections" -d"$duration" --latency -s "$work/valid.lua" "$url" | summary
wait "$flooder"
echo "-- the flood:"
grep -E 'Requests/sec|Non-2xx' "$work/flood.out"
du -sb "$work/spool-run" | awk '{printf "spool now: %.1f MiB\n", $1/1048576}'
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
python3 - "$work/store.db" <<'EOF'
import json, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
rows = c.execute("SELECT record FROM audit WHERE tenant_id = '_platform'").fetchall()
refused = [json.loads(r[0]) for r in rows if json.loads(r[0])["action"] == "Authenticate"]
print(f"authentication records in _platform: {len(refused)}, refusals counted: {sum(r['details']['count'] for r in refused)}")
acme = c.execute("SELECT count(*) FROM audit WHERE tenant_id = 'acme'").fetchone()[0]
print(f"decision records in acme: {acme}")
EOF
