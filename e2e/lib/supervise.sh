#!/usr/bin/env bash
# supervise.sh NAME RUN_DIR BINARY ARGS...: runs BINARY and starts it again whenever it exits, as a kubelet
# restarts a crashed container (virt-controller exits when it loses its leader lease, e.g. after an API
# server restart; a Deployment would bring it back). Started detached by proc_supervise (lib/procs.sh).
#
#   RUN_DIR/pids/NAME.pid              the running binary's pid (rewritten at every start)
#   RUN_DIR/pids/NAME.supervisor.pid   this script's pid
#   RUN_DIR/restarts/NAME              how many times it was restarted (0 at the first start)
#   RUN_DIR/logs/NAME.log              the binary's output, appended across restarts
#   RUN_DIR/logs/NAME.restarts.log     one line per exit: time, exit status, run time, restart number, backoff
#
# Backoff between restarts: 1 s, doubling up to 30 s (the kubelet's CrashLoopBackOff, 10 s up to 5 min, is
# too slow for a test run); back to 1 s after a run of at least 60 s. SIGTERM stops the binary (SIGTERM,
# then SIGKILL after 10 s) and the supervisor without a restart.
set -uo pipefail
name="$1" run_dir="$2" bin="$3"
shift 3
pids="$run_dir/pids" logs="$run_dir/logs" restarts="$run_dir/restarts"
mkdir -p "$pids" "$logs" "$restarts"
echo $$ >"$pids/$name.supervisor.pid"
count=0
printf '%s\n' "$count" >"$restarts/$name"

child=""
stopping=0
stop() {
  stopping=1
  [[ -n "$child" ]] && kill -TERM "$child" 2>/dev/null
}
trap stop TERM INT

backoff=1
while :; do
  started=$SECONDS
  "$bin" "$@" </dev/null >>"$logs/$name.log" 2>&1 &
  child=$!
  echo "$child" >"$pids/$name.pid"
  # `wait` returns early when a trapped signal arrives: wait again until the binary is gone.
  rc=0
  while kill -0 "$child" 2>/dev/null; do
    wait "$child"; rc=$?
    if ((stopping)); then
      for _ in $(seq 1 100); do kill -0 "$child" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$child" 2>/dev/null
    fi
  done
  ((stopping)) && break
  ran=$((SECONDS - started))
  ((ran >= 60)) && backoff=1
  count=$((count + 1))
  printf '%s %s exited with status %s after %ss; restart %s in %ss\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$name" "$rc" "$ran" "$count" "$backoff" >>"$logs/$name.restarts.log"
  printf '%s\n' "$count" >"$restarts/$name.tmp" && mv -f "$restarts/$name.tmp" "$restarts/$name"
  sleep "$backoff" & wait $! || true
  ((stopping)) && break
  backoff=$((backoff * 2 > 30 ? 30 : backoff * 2))
done
rm -f "$pids/$name.supervisor.pid"
