# shellcheck shell=bash
# Start/stop/inspect the local processes. Each process has
#   .run/pids/<name>.pid   its pid
#   .run/logs/<name>.log   its stdout+stderr
# A pid only counts as ours if /proc/<pid>/exe is the binary we started
# (guards against pid reuse after a reboot or a crash).
# Supervised processes (proc_supervise: virt-api, virt-controller) also have
#   .run/pids/<name>.supervisor.pid   the supervisor (lib/supervise.sh) that restarts them
#   .run/restarts/<name>              their restart count

# Start order; stop runs it backwards.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok metrics-server virt-api virt-controller)

proc_pid() { # name -> prints pid if that process is alive and ours
  local f="$PIDS/$1.pid" pid exe
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  [[ -n "$pid" && -d "/proc/$pid" ]] || return 1
  exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
  exe="${exe% (deleted)}"
  [[ "$exe" == "$BIN_ROOT"/* ]] || return 1
  echo "$pid"
}

proc_alive() { proc_pid "$1" >/dev/null; }

# proc_start NAME BINARY ARGS...: start detached (own session), unless running.
proc_start() {
  local name="$1" bin="$2"; shift 2
  if proc_alive "$name"; then return 0; fi
  mkdir -p "$PIDS" "$LOGS"
  [[ -x "$bin" ]] || die "missing binary $bin (run: e2e/cluster build)"
  # Keep the previous log of a crashed run for post-mortems.
  [[ -s "$LOGS/$name.log" ]] && mv -f "$LOGS/$name.log" "$LOGS/$name.log.prev"
  log "starting $name"
  printf '%q ' "$bin" "$@" >"$LOGS/$name.cmdline"
  # 9>&-: do not leak the e2e/cluster lock fd into the long-lived process.
  setsid "$bin" "$@" </dev/null >"$LOGS/$name.log" 2>&1 9>&- &
  echo $! >"$PIDS/$name.pid"
  disown $! 2>/dev/null || true
}

# supervisor_pid NAME -> prints the pid of NAME's supervisor if it runs.
supervisor_pid() {
  local f="$PIDS/$1.supervisor.pid" pid
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  [[ -n "$pid" && -d "/proc/$pid" ]] || return 1
  [[ "$( { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null)" == *"lib/supervise.sh $1 "* ]] || return 1
  echo "$pid"
}

# proc_supervise NAME BINARY ARGS...: like proc_start, under lib/supervise.sh, which starts the binary again
# whenever it exits (logged in .run/logs/<name>.restarts.log, counted in .run/restarts/<name>).
proc_supervise() {
  local name="$1" bin="$2"; shift 2
  if supervisor_pid "$name" >/dev/null; then return 0; fi
  mkdir -p "$PIDS" "$LOGS"
  [[ -x "$bin" ]] || die "missing binary $bin (run: e2e/cluster build)"
  [[ -s "$LOGS/$name.log" ]] && mv -f "$LOGS/$name.log" "$LOGS/$name.log.prev"
  rm -f "$LOGS/$name.restarts.log" "$PIDS/$name.pid"
  log "starting $name (supervised: restarted when it exits)"
  printf '%q ' "$bin" "$@" >"$LOGS/$name.cmdline"
  setsid bash "$E2E_DIR/lib/supervise.sh" "$name" "$RUN_DIR" "$bin" "$@" </dev/null >/dev/null 2>&1 9>&- &
  disown $! 2>/dev/null || true
}

# Fail fast with the log tail if a process died while we wait for it.
proc_expect_alive() {
  local name="$1" pid
  # A supervised process is alive as long as its supervisor is (it may be between two runs).
  if supervisor_pid "$name" >/dev/null; then return 0; fi
  # Right after the start the pid may still be setsid's, before it execs the binary (seen on a loaded
  # machine): alive all the same.
  pid="$(cat "$PIDS/$name.pid" 2>/dev/null || true)"
  if [[ -n "$pid" && "$(readlink "/proc/$pid/exe" 2>/dev/null)" == */setsid ]]; then return 0; fi
  if ! proc_alive "$name"; then
    log "$name exited; last lines of .run/logs/$name.log:"
    tail -25 "$LOGS/$name.log" >&2 || true
    return 1
  fi
}

# wait_ready NAME TIMEOUT DESCRIPTION CMD...: poll CMD, failing early if NAME died.
wait_ready() {
  local name="$1" timeout="$2" what="$3"; shift 3
  local start=$SECONDS delay=0.1
  until "$@" >/dev/null 2>&1; do
    proc_expect_alive "$name" || die "$name is not running"
    if (( SECONDS - start >= timeout )); then
      tail -25 "$LOGS/$name.log" >&2 || true
      die "timed out after ${timeout}s waiting for $what"
    fi
    sleep "$delay"
    case $delay in 0.1) delay=0.25 ;; 0.25) delay=0.5 ;; *) delay=1 ;; esac
  done
}

# proc_stop_all NAME...: SIGTERM all at once (supervisors first, so that nothing is restarted), wait up to
# 10s, then SIGKILL.
proc_stop_all() {
  local name pid i alive
  local -a pids=() names=()
  for name in "$@"; do
    if pid="$(supervisor_pid "$name")"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid"); names+=("$name supervisor")
    fi
  done
  for name in "$@"; do
    if pid="$(proc_pid "$name")"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid"); names+=("$name")
    fi
  done
  for ((i = 0; i < 100; i++)); do
    alive=0
    for pid in "${pids[@]}"; do [[ -d "/proc/$pid" ]] && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for i in "${!pids[@]}"; do
    if [[ -d "/proc/${pids[i]}" ]]; then
      log "${names[i]} (pid ${pids[i]}) ignored SIGTERM for 10s; sending SIGKILL"
      kill -KILL "${pids[i]}" 2>/dev/null || true
    fi
    log "stopped ${names[i]} (pid ${pids[i]})"
  done
  for name in "$@"; do rm -f "$PIDS/$name.pid" "$PIDS/$name.supervisor.pid"; done
}

# Server processes started from our binary cache whose command line points
# into our run dir (left over from an interrupted run, or a lost pid file);
# supervisors of such processes first (killed first, they cannot restart them); then the operators and node
# emulators started from $RUN_DIR/bin.
stragglers() {
  local p exe cmd
  for p in /proc/[0-9]*; do
    cmd="$( { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null)" || continue
    [[ "$cmd" == *"lib/supervise.sh "* && "$cmd" == *" $RUN_DIR "* ]] || continue
    echo "${p#/proc/}"
  done
  for p in /proc/[0-9]*; do
    exe="$(readlink "$p/exe" 2>/dev/null)" || continue
    exe="${exe% (deleted)}"
    [[ "$exe" == "$BIN_ROOT"/* ]] || continue
    # Only server components (never a test's kubectl/helm).
    [[ " ${COMPONENTS[*]} " == *" ${exe##*/} "* ]] || continue
    tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "$RUN_DIR/" || continue
    echo "${p#/proc/}"
  done
  # The operators and node emulators a test started from its copies in $RUN_DIR/bin (left running when the
  # test process itself was killed).
  for p in /proc/[0-9]*; do
    exe="$(readlink "$p/exe" 2>/dev/null)" || continue
    exe="${exe% (deleted)}"
    [[ "$exe" == "$RUN_DIR/bin/"* ]] || continue
    echo "${p#/proc/}"
  done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Before starting anything: a listening port that no process of ours holds
# means another cluster (another checkout?) or service is in the way.
check_ports_free() {
  local spec name port
  for spec in etcd:$ETCD_CLIENT_PORT etcd:$ETCD_PEER_PORT kube-apiserver:$APISERVER_PORT \
              kube-controller-manager:$KCM_PORT kube-scheduler:$SCHEDULER_PORT kwok:$KWOK_PORT \
              metrics-server:$METRICS_SERVER_PORT virt-api:$VIRT_API_PORT virt-controller:$VIRT_CONTROLLER_PORT; do
    name="${spec%%:*}"; port="${spec##*:}"
    proc_alive "$name" && continue
    if port_open "$port"; then
      die "127.0.0.1:$port (for $name) is already in use by another process; stop it (another checkout's e2e/cluster down?) or set the E2E_*_PORT variables (lib/common.sh)"
    fi
  done
}
