#!/usr/bin/env bash
# Console pages under load: `cedargate-admin serve` (release build) over the
# demo data in SQLite, signed in through the development user picker as
# acme's administrator; wrk GETs each page with the session cookie, and the
# same page's API call with the same token for comparison (a page is one
# or more in-process API calls, the policy questions of its navigation,
# and the HTML).
#   scripts/bench-console.sh [DURATION] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-8s}
connections=${2:-4}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
cargo build --locked --release --bins
bin=target/release
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"

"$bin/cedargate" token keygen --dir "$work/keys" >/dev/null
"$bin/cedargate-admin" import --store "sqlite:$work/s.db" --audit-spool "$work/spool-import" demo/data.json >/dev/null
RUST_LOG=warn "$bin/cedargate-admin" serve --listen "127.0.0.1:$port" --store "sqlite:$work/s.db" \
  --audit-spool "$work/spool" --jwks-file "$work/keys/jwks.json" --allow-dev-keys \
  --issuer https://cedargate.invalid/dev --audience cedargate-dev &
pid=$!
for _ in $(seq 200); do curl -fsS -o /dev/null "$base/healthz" 2>/dev/null && break; sleep 0.05; done

# Sign in through the picker, as a browser does.
login=$(curl -fsS -c "$work/jar" "$base/console/login")
field=$(printf '%s' "$login" | sed -n 's/.*name="login" value="\([^"]*\)".*/\1/p')
curl -fsS -o /dev/null -b "$work/jar" -c "$work/jar" \
  --data "login=$field&tenant=acme&user=ada&role=admin&clearance=3" "$base/console/login/dev"
session=$(awk '$6 == "cedargate_console" {print $7}' "$work/jar")
token=$("$bin/cedargate" token mint --key "$work/keys/dev-key.pem" --sub ada --tenant acme --groups admin --clearance 3)
printf 'wrk.headers["Cookie"] = "cedargate_console=%s"\n' "$session" > "$work/page.lua"
printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$token" > "$work/api.lua"

load() { # lua path
  wrk -t1 -c"$connections" -d"$duration" --latency -s "$work/$1" "$base$2" |
    awk '/Requests\/sec/ {r=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$NF}
         END {printf "%10.0f req/s  p50 %-8s p99 %-8s%s", r, p50, p99, bad ? "  non-2xx: " bad : ""}'
}

for pair in \
  "overview|/console/t/acme|/v1/tenants/acme" \
  "documents|/console/t/acme/documents|/v1/tenants/acme/documents?limit=25" \
  "audit log|/console/t/acme/audit|/v1/tenants/acme/audit-logs?limit=50" \
  "access checker|/console/t/acme/access?user=bob&roles=viewer&action=Read&document=handbook|"; do
  IFS='|' read -r name page api <<<"$pair"
  printf '%-15s page %s\n' "$name" "$(load page.lua "$page")"
  if [ -n "$api" ]; then printf '%-15s API  %s\n' "" "$(load api.lua "$api")"; fi
done
