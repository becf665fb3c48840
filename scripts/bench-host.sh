# Sourced by the benchmark scripts: where the server and the load run, and
# the virtual machine's halt polling, for the run.
#
# PIN=1 runs the server on CPU SERVER_CPU (0) and the load generators on
# CPU LOAD_CPU (1), so that neither takes the other's CPU (the server then
# has one CPU): prefix their commands with "${server_cpu[@]}" and
# "${load_cpu[@]}".
#
# HALTPOLL=NS sets the guest halt polling
# (/sys/module/haltpoll/parameters/guest_halt_poll_ns, as root) for the
# run: with it off, waking an idle vCPU costs milliseconds, which a
# fixed-rate tail then measures. Call haltpoll_restore from the script's
# EXIT trap to put the setting back.
server_cpu=(); load_cpu=()
if [ "${PIN:-0}" = 1 ]; then server_cpu=(taskset -c "${SERVER_CPU:-0}"); load_cpu=(taskset -c "${LOAD_CPU:-1}"); fi
haltpoll=/sys/module/haltpoll/parameters/guest_halt_poll_ns
haltpoll_was=
if [ -n "${HALTPOLL:-}" ]; then
  haltpoll_was=$(cat "$haltpoll")
  echo "$HALTPOLL" > "$haltpoll"
fi
haltpoll_restore() { if [ -n "$haltpoll_was" ]; then echo "$haltpoll_was" > "$haltpoll"; fi; }
