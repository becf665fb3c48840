#!/usr/bin/env bash
# Audit-drain settings side by side, on one release build and a migrated
# SQLite store with the demo data: each VARIANT is `name|[audit] lines`
# (lines separated by `;`), run in turn, twice, alternating. Each run: wrk
# (32 connections) on POST /v1/authorize, the spool left when it ended,
# the drain rounds in idle time abandoned (their hold limit passed), the
# server's CPU per request by thread, the records a spool commit held,
# and the bytes it wrote to disk per request once the drain has caught
# up: the pages it dirtied (from /proc; for small writes it counts about
# twice what reaches the device) and what the block device under the work
# directory received (from /sys/class/block: bytes and cache flushes, the
# whole machine's, after a sync), then an open-loop run at RATE requests/s (0: none).
# LOCKS=1 also takes SQLite's write lock on the store every 20 ms during
# the wrk run, as a management write would, and prints how long it waited
# (p50, p99, max). HOGS=N runs N busy loops (other processes wanting the
# CPUs) during the wrk run; with HOG_CLASS=idle they run in the
# SCHED_IDLE class (CPU time nothing else wants, as the idle-time drain
# uses it). LOAD=N makes that run open-loop at N
# requests/s (the fixed-rate generator, the one demo request) instead of
# wrk: its columns are then the rate done and its p99. PIN=1 puts the
# server and the load generators on CPUs of their own (SERVER_CPU,
# LOAD_CPU: 0 and 1). A
# variant whose name starts with `json` runs on a copy of the store with
# 0005-audit-filter-columns rolled back: the filter indexes on JSON
# expressions, as stores migrated before that step have them; one whose
# name starts with `plain` runs on a copy of the store made before
# `migrate` (no audit filter indexes); `no_INDEX…` on a copy of the
# migrated store without that index (e.g. `no_audit_user`); `pageN…` on a
# copy of the migrated store rewritten (VACUUM) with pages of N bytes
# (e.g. `page16384`; stores are made with SQLite's default, 4096).
# TENANTS=N: a generated data set of N tenants (20 documents each on
# average, Zipf-skewed) and a request mix over all of them
# (scripts/authorize-mix.lua), instead of the demo data and one request;
# the fixed-rate run then still sends the one demo request (RATE=0: none).
# A variant named `name@PATH` runs the server binary at PATH (another
# build, kept aside) instead of this build's. A variant whose name starts
# with `spoolshm` has its spool on /dev/shm (an fdatasync there costs
# nothing), one starting with `storeshm` runs on a copy of the store on
# /dev/shm.
# HALTPOLL=NS sets the VM's guest halt polling for the run
# (scripts/bench-host.sh).
#   [PIN=1] [RATE=8000] [DURATION=8] [HALTPOLL=NS] scripts/bench-drain.sh 'a|drain_batch = 1000' 'b|drain_batch = 10000'
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || { sed -n '2,/^set /{/^#/p}' "$0"; exit 2; }
rate=${RATE:-8000}
duration=${DURATION:-8}
port=18196
cargo build --locked --release --bins --example fixed_rate 2>&1 | tail -1
bin=target/release
work=$(mktemp -d)
shm=$(mktemp -d -p /dev/shm)
pid=
. scripts/bench-host.sh
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work" "$shm"; haltpoll_restore' EXIT
data=demo/data.json
# What wrk runs: the one demo request, or the mix.
wrk_args=(-s "$work/req.lua" "http://127.0.0.1:$port/v1/authorize")
if [ -n "${TENANTS:-}" ]; then
  data=$work/data.json
  "$bin/cedargate-admin" generate --tenants "$TENANTS" --documents $((TENANTS * 20)) --out "$data" \
    --requests "$work/requests.ndjson" --request-count 100000 >/dev/null
  wrk_args=(-s scripts/authorize-mix.lua "http://127.0.0.1:$port/v1/authorize" -- "$work/requests.ndjson")
fi
"$bin/cedargate-admin" import --store "sqlite:$work/store.db" --audit-spool "$work/spool" "$data" >/dev/null
cp "$work/store.db" "$work/plain.db"
"$bin/cedargate-admin" migrate --store "sqlite:$work/store.db" --audit-spool "$work/spool" >/dev/null
cp "$work/store.db" "$work/json.db"
"$bin/cedargate-admin" migrate --store "sqlite:$work/json.db" --audit-spool "$work/spool" \
  --rollback 0005-audit-filter-columns >/dev/null
body='{"principal":{"id":"dave","tenant":"acme","roles":["editor"],"clearance":1},"action":"Read","resource":{"type":"Document","id":"q3-report"}}'
printf "wrk.method = \"POST\"\nwrk.body = '%s'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n" "$body" > "$work/req.lua"
# The open-loop generator at $1 requests/s, with the demo request.
fixed() { "${load_cpu[@]}" "$bin/examples/fixed_rate" "http://127.0.0.1:$port/v1/authorize" "$1" "$duration" "$body"; }

# The block device under the work directory, for its counters.
blockdev=$(basename "$(readlink -f "$(df --output=source "$work" | tail -1)")")
blockstat=/sys/class/block/$blockdev/stat
[ -r "$blockstat" ] || blockstat=

# CPU seconds of the server's threads, by role, the bytes it dirtied, the
# device's counters (none without a block device) and the audit commits
# so far: "appender= drainer= workers= other= disk= [dev= flushes=] commits=".
cpu() {
  sync
  python3 - "$1" "$blockstat" <<'PY'
import collections, os, sys
pid, tick, out = sys.argv[1], os.sysconf("SC_CLK_TCK"), collections.Counter()
for t in os.listdir(f"/proc/{pid}/task"):
    try:
        s = open(f"/proc/{pid}/task/{t}/stat").read()
    except FileNotFoundError:
        continue
    comm, f = s[s.index("(") + 1 : s.rindex(")")], s[s.rindex(")") + 2 :].split()
    role = {"audit-appender": "appender", "audit-drainer": "drainer", "audit-idle": "drainer",
            "audit-store": "drainer"}.get(comm, "workers" if comm.startswith("tokio") else "other")
    out[role] += (int(f[11]) + int(f[12])) / tick
# Bytes the process sent (or will send) to the disk: pages it dirtied.
disk = next(int(l.split()[1]) for l in open(f"/proc/{pid}/io") if l.startswith("write_bytes"))
line = " ".join(f"{k}={out[k]:.3f}" for k in ("appender", "drainer", "workers", "other")) + f" disk={disk}"
# Bytes written (sectors of 512) and flushes the device completed.
if sys.argv[2]:
    f = open(sys.argv[2]).read().split()
    line += f" dev={int(f[6]) * 512} flushes={int(f[15])}"
print(line, end="")
PY
  printf ' commits=%s\n' "$(metric cedargate_audit_commit_records_count)"
}
# A metric's value (0 when the server does not export it).
metric() { curl -fsS "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m {v = $2} END {printf "%.0f", v}'; }
spool() { metric cedargate_audit_spool_bytes; }

for round in 1 2; do
  for v in "$@"; do
    name=${v%%|*}
    server=$bin/cedargate
    case "$name" in *@*) server=${name#*@}; name=${name%%@*} ;; esac
    spool_dir=$work/spool-run
    store=$work/store.db
    case "$name" in
      json*) store=$work/json.db ;;
      plain*) store=$work/plain.db ;;
      no_*)
        index=${name#no_}; store=$work/without.db
        cp "$work/store.db" "$store"; rm -f "$store-wal" "$store-shm"
        python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute("DROP INDEX " + sys.argv[2]); c.commit()' "$store" "$index" ;;
      page[0-9]*)
        size=${name#page}; size=${size%%[!0-9]*}; store=$work/paged.db
        cp "$work/store.db" "$store"; rm -f "$store-wal" "$store-shm"
        python3 -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
for s in ("PRAGMA journal_mode = DELETE", "PRAGMA page_size = " + sys.argv[2], "VACUUM", "PRAGMA journal_mode = WAL"):
    c.execute(s)' "$store" "$size" ;;
      spoolshm*) spool_dir=$shm/spool-run ;;
      storeshm*) rm -f "$shm"/store.db*; cp "$work/store.db" "$shm/store.db"; store=$shm/store.db ;;
    esac
    rm -rf "$spool_dir"
    { printf '[audit]\nspool_dir = "%s"\n' "$spool_dir"; [ "${v#*|}" != "$v" ] && echo "${v#*|}" | tr ';' '\n'; } > "$work/c.toml"
    RUST_LOG=error "${server_cpu[@]}" "$server" serve --config "$work/c.toml" --listen "127.0.0.1:$port" \
      --store "sqlite:$store" --identity trusted &
    pid=$!
    for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && break; sleep 0.05; done
    wrk -t1 -c4 -d1s -s "$work/req.lua" "http://127.0.0.1:$port/v1/authorize" >/dev/null
    before=$(cpu "$pid")
    probe=
    if [ "${LOCKS:-0}" = 1 ]; then
      python3 - "$store" "$duration" > "$work/locks" <<'PY' &
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
waits, end = [], time.time() + float(sys.argv[2])
while time.time() < end:
    t = time.perf_counter()
    c.execute("BEGIN IMMEDIATE")
    waits.append((time.perf_counter() - t) * 1000)
    c.execute("COMMIT")
    time.sleep(0.02)
waits.sort()
print(f"lock wait p50 {waits[len(waits) // 2]:.1f} p99 {waits[int(len(waits) * 0.99)]:.1f} max {waits[-1]:.1f} ms ({len(waits)})")
PY
      probe=$!
    fi
    hogs=()
    hog_class=()
    [ "${HOG_CLASS:-}" = idle ] && hog_class=(chrt --idle 0)
    for _ in $(seq "${HOGS:-0}"); do "${hog_class[@]}" python3 -c 'while True: pass' & hogs+=($!); done
    # Requests sent, requests/s, p99.
    if [ -n "${LOAD:-}" ]; then
      out=$(fixed "$LOAD")
      rps=$(echo "$out" | sed 's/.*asked, \([0-9]*\)\/s done.*/\1/')
      p99="$(echo "$out" | sed 's/.*p99 \([0-9.]*\) ms, p99.9.*/\1/')ms"
      sent=$((rps * duration))
    else
      out=$("${load_cpu[@]}" wrk -t1 -c32 -d"${duration}s" --latency "${wrk_args[@]}")
      rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
      p99=$(echo "$out" | awk '/^ +99%/ {print $2}')
      sent=$(echo "$out" | awk '/requests in/ {print $1}')
    fi
    left=$(spool)
    [ ${#hogs[@]} -gt 0 ] && kill "${hogs[@]}"
    locks=
    if [ -n "$probe" ]; then
      while kill -0 "$probe" 2>/dev/null; do sleep 0.1; done
      locks=" | $(cat "$work/locks")"
    fi
    # Until the drain has caught up (less than a segment left), so the CPU
    # per request includes it.
    for _ in $(seq 120); do [ "$(spool)" -lt 5000000 ] && break; sleep 0.5; done
    sleep 1.5
    after=$(cpu "$pid")
    per=$(python3 - "$before" "$after" "$sent" <<'PY'
import sys
a, b = (dict((k, float(v)) for k, v in (x.split("=") for x in s.split())) for s in sys.argv[1:3])
n = int(sys.argv[3])
delta = {k: b[k] - a[k] for k in b}
d = {k: delta[k] / n * 1e6 for k in ("appender", "drainer", "workers", "other")}
io = f"| disk {delta['disk'] / n / 1024:.2f} KiB/request dirtied"
if "dev" in delta:
    io += f", device {delta['dev'] / n / 1024:.2f} KiB and {delta['flushes'] / n:.3f} flushes/request"
if delta["commits"]:
    io += f" | {n / delta['commits']:.1f} records/commit"
print(" ".join(f"{k} {d[k]:.1f}" for k in ("workers", "appender", "drainer")), f"total {sum(d.values()):.1f} µs/request", io)
PY
)
    at_rate=-
    [ "$rate" != 0 ] && at_rate=$(fixed "$rate" | sed 's/.*latency //')
    rss=$(( $(ps -o rss= -p "$pid") / 1024 ))
    abandoned=$(metric cedargate_audit_idle_rounds_abandoned_total)
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    printf '%-12s round %d: %s/s, p99 %s, RSS %d MiB, spool left %d MiB, idle rounds abandoned %s | CPU %s | at %s/s: %s%s\n' \
      "$name" "$round" "$rps" "$p99" \
      "$rss" "$((left / 1048576))" "$abandoned" "$per" "$rate" "$at_rate" "$locks"
  done
done
