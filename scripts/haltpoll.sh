# Sourced by the benchmark scripts. HALTPOLL=NS sets a virtual machine's
# guest halt polling (/sys/module/haltpoll/parameters/guest_halt_poll_ns,
# as root) for the run: with it off, waking an idle vCPU costs
# milliseconds, which a fixed-rate tail then measures. Call
# haltpoll_restore from the script's EXIT trap to put the setting back.
haltpoll=/sys/module/haltpoll/parameters/guest_halt_poll_ns
haltpoll_was=
if [ -n "${HALTPOLL:-}" ]; then
  haltpoll_was=$(cat "$haltpoll")
  echo "$HALTPOLL" > "$haltpoll"
fi
haltpoll_restore() { if [ -n "$haltpoll_was" ]; then echo "$haltpoll_was" > "$haltpoll"; fi; }
