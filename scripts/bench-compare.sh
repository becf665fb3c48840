#!/usr/bin/env bash
# Side by side, in one run, on a release build: a bare hyper server (the
# ceiling) and the sidecar's configurations, each under the same wrk load
# (POST /v1/authorize, dave reads q3-report; forward-auth GETs the same
# document), alternating, ROUNDS times; then a fixed-rate run of the
# default configuration. Prints one table with ratios. Loopback only;
# bounded in time (about 4 minutes at the defaults).
#   [MIGRATE=1] [PIN=1] [HALTPOLL=NS] scripts/bench-compare.sh [DURATION] [CONNECTIONS] [ROUNDS]
# PIN=1 runs the server and the load generators on CPUs of their own
# (SERVER_CPU, LOAD_CPU: 0 and 1); HALTPOLL=NS sets a virtual machine's
# guest halt polling for the run (scripts/bench-host.sh).
# Besides throughput and latency, each run's CPU a request: the server's
# (its threads, from /proc/PID/stat) and the whole machine's (all busy
# time, from /proc/stat: the load generator, the kernel's writeback and
# network work included), so that a run shows where a configuration's
# time goes.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-8s}
connections=${2:-32}
rounds=${3:-2}
port=18190
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
cargo build --locked --release --bins --example bare_hyper --example fixed_rate 2>&1 | tail -1
bin=target/release
work=$(mktemp -d)
pid=
. scripts/bench-host.sh
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; haltpoll_restore' EXIT
tick_us=$((1000000 / $(getconf CLK_TCK)))
# CPU ticks: the server's threads; the machine's busy time (user, nice,
# system, irq, softirq, steal).
server_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

"$bin/cedargate-admin" import --store "sqlite:$work/store.db" --audit-spool "$work/spool" demo/data.json >/dev/null
# MIGRATE=1: the store as production runs it, after `cedargate-admin
# migrate` (the audit filter indexes, which the drain maintains too).
if [ "${MIGRATE:-0}" = 1 ]; then
  "$bin/cedargate-admin" migrate --store "sqlite:$work/store.db" --audit-spool "$work/spool" >/dev/null
fi
"$bin/cedargate" token keygen --dir "$work/keys" >/dev/null
token=$("$bin/cedargate" token mint --key "$work/keys/dev-key.pem" --sub dave --tenant acme --groups editor --clearance 1 --ttl-secs 3600)
trusted_body='{"principal":{"id":"dave","tenant":"acme","roles":["editor"],"clearance":1},"action":"Read","resource":{"type":"Document","id":"q3-report"}}'
token_body='{"action":"Read","resource":{"type":"Document","id":"q3-report"}}'

# name|server|audit|decision cache capacity/residual capacity|identity|request
configs=(
  "bare hyper (ceiling)|bare|-|-|-|post-trusted"
  "audit off, decision cache on|cedargate|off|16384/4096|trusted|post-trusted"
  "audit off, decision cache off|cedargate|off|0/4096|trusted|post-trusted"
  "audit off, no caches (Cedar each time)|cedargate|off|0/0|trusted|post-trusted"
  "default (durable, cache on)|cedargate|durable|16384/4096|trusted|post-trusted"
  "default, drain not in idle time|cedargate|durable-busy|16384/4096|trusted|post-trusted"
  "default, drain held back|cedargate|durable-held|16384/4096|trusted|post-trusted"
  "default, bearer token|cedargate|durable|16384/4096|jwt|post-token"
  "default, forward-auth, bearer token|cedargate|durable|16384/4096|jwt|forward-auth"
)

start() { # server audit cache identity
  if [ "$1" = bare ]; then
    "${server_cpu[@]}" "$bin/examples/bare_hyper" "127.0.0.1:$port" &
  else
    rm -rf "$work/spool-run"
    printf '[cache]\ndecision_capacity = %s\nresidual_capacity = %s\n[audit]\nspool_dir = "%s"\n' "${3%/*}" "${3#*/}" "$work/spool-run" > "$work/c.toml"
    # durable-busy: the drain at nice +10 only, as before idle-time draining.
    [ "$2" = durable-busy ] && echo "idle_drain_bytes = 0" >> "$work/c.toml"
    # durable-held: nothing reaches the store during the run (a diagnostic:
    # what the default would do if the drain cost nothing).
    [ "$2" = durable-held ] && printf 'drain_delay_ms = 3600000\ndrain_batch = 100000000\n' >> "$work/c.toml"
    local identity=(--identity trusted)
    [ "$4" = jwt ] && identity=(--jwks-file "$work/keys/jwks.json" --issuer https://cedargate.invalid/dev --audience cedargate-dev --allow-dev-keys)
    RUST_LOG=error "${server_cpu[@]}" "$bin/cedargate" serve --config "$work/c.toml" --listen "127.0.0.1:$port" \
      --store "sqlite:$work/store.db" --audit-mode "${2%-*}" "${identity[@]}" &
  fi
  pid=$!
  for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && return
    [ "$1" = bare ] && curl -fsS -o /dev/null -d x "http://127.0.0.1:$port/" 2>/dev/null && return
    sleep 0.05
  done
}

stop() { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; pid=; }

lua() { # request
  case "$1" in
    post-trusted) printf "wrk.method = \"POST\"\nwrk.body = '%s'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n" "$trusted_body" ;;
    post-token) printf "wrk.method = \"POST\"\nwrk.body = '%s'\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer %s\"\n" "$token_body" "$token" ;;
    forward-auth) printf 'wrk.method = "GET"\nwrk.headers["Authorization"] = "Bearer %s"\n' "$token" ;;
  esac
}

path() { [ "$1" = forward-auth ] && echo /v1/forward-auth/documents/q3-report || echo /v1/authorize; }

# wrk's output → "rps p50 p99" (ms)
parse() {
  awk '/Requests\/sec/ {rps=$2}
       /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
       function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
       END { printf "%.0f %.2f %.2f", rps, ms(p50), ms(p99) }'
}

declare -A results
for round in $(seq "$rounds"); do
  for c in "${configs[@]}"; do
    IFS='|' read -r name server audit cache identity request <<<"$c"
    start "$server" "$audit" "$cache" "$identity"
    lua "$request" > "$work/req.lua"
    # Warm: caches, the token check, the first segment.
    wrk -t1 -c4 -d1s -s "$work/req.lua" "http://127.0.0.1:$port$(path "$request")" >/dev/null
    s0=$(server_ticks); m0=$(machine_ticks)
    out=$("${load_cpu[@]}" wrk -t1 -c"$connections" -d"$duration" --latency -s "$work/req.lua" "http://127.0.0.1:$port$(path "$request")")
    s1=$(server_ticks); m1=$(machine_ticks)
    if echo "$out" | grep -q "Non-2xx"; then echo "$name: non-2xx answers:"; echo "$out"; exit 1; fi
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    cpu=$(awk -v s=$((s1 - s0)) -v m=$((m1 - m0)) -v t="$tick_us" -v n="$requests" 'BEGIN { printf "%.1f %.1f", s * t / n, m * t / n }')
    rss=$(ps -o rss= -p "$pid" | tr -d ' ')
    # Records answered but not yet in the store when the run ended (the
    # drain runs behind the requests, within its bound): MiB.
    spool=$(curl -fsS "http://127.0.0.1:$port/metrics" 2>/dev/null | awk '/^cedargate_audit_spool_bytes / {printf "%.0f", $2 / 1048576}')
    results["$name#$round"]="$(echo "$out" | parse) $rss ${spool:--} $cpu"
    stop
  done
done

bare_mean=0; off_mean=0
mean() { # name → mean rps
  local sum=0
  for round in $(seq "$rounds"); do sum=$((sum + $(echo "${results[$1#$round]}" | cut -d' ' -f1))); done
  echo $((sum / rounds))
}
bare_mean=$(mean "bare hyper (ceiling)")
off_mean=$(mean "audit off, decision cache on")
auth_mean=$(mean "default, bearer token")
printf '\n%-38s %-24s %-20s %-20s %-12s %-12s %-16s %-16s %s\n' configuration "requests/s (runs)" "p50 ms (runs)" "p99 ms (runs)" "RSS MiB" "spool MiB" "server µs/req" "machine µs/req" "ratios"
for c in "${configs[@]}"; do
  IFS='|' read -r name _ <<<"$c"
  rps=(); p50=(); p99=(); rss=(); spool=(); scpu=(); mcpu=()
  for round in $(seq "$rounds"); do
    read -r r a b m s sc mc <<<"${results[$name#$round]}"
    rps+=("$r"); p50+=("$a"); p99+=("$b"); rss+=("$((m / 1024))"); spool+=("$s"); scpu+=("$sc"); mcpu+=("$mc")
  done
  m=$(mean "$name")
  ratio=$(awk -v m="$m" -v b="$bare_mean" -v o="$off_mean" 'BEGIN { printf "%.0f%% of bare, %.0f%% of audit-off", 100*m/b, 100*m/o }')
  case "$name" in *forward-auth*) ratio="$ratio, $(awk -v m="$m" -v a="$auth_mean" 'BEGIN { printf "%.0f%% of /v1/authorize with the token", 100*m/a }')" ;; esac
  printf '%-38s %-24s %-20s %-20s %-12s %-12s %-16s %-16s %s\n' "$name" "${rps[*]}" "${p50[*]}" "${p99[*]}" "${rss[*]}" "${spool[*]}" "${scpu[*]}" "${mcpu[*]}" "$ratio"
done

# Open loop: the default configuration at fixed rates (a quarter, half and
# three quarters of its measured maximum), latency from when each request
# was due; the bare server at the same rates is the machine's floor (on a
# virtual machine whose idle vCPUs halt, waking one costs milliseconds at
# low rates, whatever the server), and the default with its drain held
# back shows the drain's share of the tail.
default_mean=$(mean "default (durable, cache on)")
echo
echo "fixed rates (open loop, 64 connections, ${duration%s} s each; halt polling: $(cat /sys/module/haltpoll/parameters/guest_halt_poll_ns 2>/dev/null || echo n/a) ns):"
for server in bare cedargate held; do
  case "$server" in
    bare) start bare; label="bare hyper (floor)" ;;
    cedargate) start cedargate durable 16384/4096 trusted; label="default (durable)" ;;
    held) start cedargate durable-held 16384/4096 trusted; label="drain held back" ;;
  esac
  for share in 25 50 75; do
    rate=$((default_mean * share / 100))
    printf '  %-19s %3d%% (%6d/s): ' "$label" "$share" "$rate"
    "${load_cpu[@]}" "$bin/examples/fixed_rate" "http://127.0.0.1:$port/$([ "$server" != bare ] && echo v1/authorize)" "$rate" "${duration%s}" "$trusted_body"
  done
  stop
done
