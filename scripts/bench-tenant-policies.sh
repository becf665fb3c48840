#!/usr/bin/env bash
# Tenant policies under load, side by side in one run on a release build:
# the same Read (dave, an editor of acme, reads q3-report) against a store
# with the demo data alone, and against the same store plus 1,001 tenants'
# own policies (20 each, 20,020 in all, acme's among them: its own roles
# over the document actions and search). Decision cache off, so every
# request is decided; audit off, so the decision is what is measured.
# Alternating, ROUNDS times. Then the first decision of each of the 1,001
# tenants (their record and policies read and compiled). Loopback only.
#   scripts/bench-tenant-policies.sh [DURATION] [CONNECTIONS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-8s}
connections=${2:-32}
rounds=${3:-2}
port=18191
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
cargo build --locked --release --bins 2>&1 | tail -1
bin=target/release
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

# The demo data, and the demo data with the tenants' policies.
python3 - "$work" <<'EOF'
import json, sys, copy
work = sys.argv[1]
data = json.load(open("demo/data.json"))
json.dump(data, open(f"{work}/plain.json", "w"))
acme = next(t for t in data["tenants"] if t["tenantId"] == "acme")
actions = ["Read", "Update", "Share", "Delete", "Search"]
def policies(tenant):
    out = []
    for j in range(20):
        a = actions[j % len(actions)]
        if a == "Search":
            text = f'permit (principal in CedarGate::Role::"custom-{j}", action == CedarGate::Action::"Search", resource is CedarGate::Tenant);'
        else:
            text = (f'permit (principal in CedarGate::Role::"custom-{j}", action == CedarGate::Action::"{a}", '
                    f'resource is CedarGate::Document) when {{ resource.classification <= {j % 4} && resource.visibility != "private" }};')
        out.append({"tenantId": tenant, "policyId": f"custom-{j}", "definition": {"static": {"statement": text}},
                    "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z"})
    return out
more = copy.deepcopy(data)
more["policies"] = policies("acme")
for k in range(1000):
    t = copy.deepcopy(acme)
    t["tenantId"] = f"tp{k:04}"
    more["tenants"].append(t)
    more["policies"] += policies(t["tenantId"])
json.dump(more, open(f"{work}/policies.json", "w"))
print(f"{len(more['policies'])} tenant policies of {len(more['tenants'])} tenants")
EOF
for s in plain policies; do
  started=$(date +%s.%N)
  "$bin/cedargate-admin" import --store "sqlite:$work/$s.db" --audit-spool "$work/spool-$s" "$work/$s.json" >/dev/null
  echo "import $s: $(echo "$(date +%s.%N) - $started" | bc) s"
done
body='{"principal":{"id":"dave","tenant":"acme","roles":["editor"],"clearance":1},"action":"Read","resource":{"type":"Document","id":"q3-report"}}'
printf "wrk.method = \"POST\"\nwrk.body = '%s'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n" "$body" > "$work/req.lua"

start() { # store residual-capacity
  rm -rf "$work/spool-run"
  # Room for every tenant's policies (~12.5 KB each, stored and compiled:
  # examples/cache_memory.rs): 1,001 × 20 need ~250 MiB, over the default
  # 16 MiB tenant budget.
  printf '[cache]\ndecision_capacity = 0\nresidual_capacity = %s\ntenant_max_bytes = %s\n[audit]\nspool_dir = "%s"\n' "$2" "$((512 << 20))" "$work/spool-run" > "$work/c.toml"
  RUST_LOG=error "$bin/cedargate" serve --config "$work/c.toml" --listen "127.0.0.1:$port" \
    --store "sqlite:$work/$1.db" --audit-mode off --identity trusted &
  pid=$!
  for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && return
    sleep 0.05
  done
}
stop() { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; pid=; }
parse() {
  awk '/Requests\/sec/ {rps=$2}
       /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
       function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
       END { printf "%.0f %.2f %.2f", rps, ms(p50), ms(p99) }'
}

# name|store|residual capacity
configs=(
  "global policies only, Cedar each time|plain|0"
  "+ 20,020 tenant policies, Cedar each time|policies|0"
  "global policies only, residual decisions|plain|4096"
  "+ 20,020 tenant policies, residual decisions|policies|4096"
)
declare -A results
for round in $(seq "$rounds"); do
  for c in "${configs[@]}"; do
    IFS='|' read -r name store residual <<<"$c"
    start "$store" "$residual"
    # Check the answer, warm up, then measure.
    curl -fsS -d "$body" -H 'content-type: application/json' "http://127.0.0.1:$port/v1/authorize" | grep -q '"Allow"'
    wrk -t1 -c"$connections" -d2s -s "$work/req.lua" "http://127.0.0.1:$port/v1/authorize" >/dev/null
    out=$(wrk -t1 -c"$connections" -d"$duration" --latency -s "$work/req.lua" "http://127.0.0.1:$port/v1/authorize" | parse)
    results["$name"]+="$out;"
    stop
  done
done
echo
echo "| configuration | requests/s (each round) | p50 ms | p99 ms |"
echo "|---|---|---|---|"
for c in "${configs[@]}"; do
  IFS='|' read -r name _ _ <<<"$c"
  rps=$(echo "${results[$name]}" | tr ';' '\n' | awk 'NF {printf "%s%s", sep, $1; sep=" / "}')
  p50=$(echo "${results[$name]}" | tr ';' '\n' | awk 'NF {printf "%s%s", sep, $2; sep=" / "}')
  p99=$(echo "${results[$name]}" | tr ';' '\n' | awk 'NF {printf "%s%s", sep, $3; sep=" / "}')
  echo "| $name | $rps | $p50 | $p99 |"
done
mean() { echo "${results[$1]}" | tr ';' '\n' | awk 'NF {s += $1; n++} END {printf "%.0f", s / n}'; }
for pair in "Cedar each time" "residual decisions"; do
  a=$(mean "global policies only, $pair"); b=$(mean "+ 20,020 tenant policies, $pair")
  echo "with tenant policies / without ($pair): $(echo "scale=2; $b / $a" | bc)"
done

# The first decision of every tenant: its record and 20 policies read and
# compiled (one request at a time).
start policies 0
python3 - "$port" <<'EOF'
import json, sys, time, urllib.request
port = sys.argv[1]
def ask(tenant):
    body = json.dumps({"principal": {"id": "dave", "tenant": tenant, "roles": ["custom-0"], "clearance": 1},
                       "action": "Read", "resource": {"type": "Document", "id": "q3-report"}}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/authorize", body, {"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req))
tenants = [f"tp{k:04}" for k in range(1000)] + ["acme"]
started = time.perf_counter()
for t in tenants:
    ask(t)
cold = time.perf_counter() - started
started = time.perf_counter()
for t in tenants:
    ask(t)
warm = time.perf_counter() - started
print(f"first decision of each of {len(tenants)} tenants (record and 20 policies read and compiled): "
      f"{cold * 1000 / len(tenants):.2f} ms each, {cold:.2f} s in all; again, cached: {warm * 1000 / len(tenants):.2f} ms each")
EOF
echo "sidecar RSS after every tenant's policies are cached: $(($(awk '/VmRSS/ {print $2}' /proc/$pid/status) / 1024)) MiB"
stop
