# shellcheck shell=bash
# Common settings for e2e/cluster and helper scripts. Source, don't execute.
E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_ROOT="$(cd "$E2E_DIR/.." && pwd)"
# shellcheck source=../versions.env
source "$E2E_DIR/versions.env"

CACHE_DIR="${E2E_CACHE_DIR:-$E2E_DIR/.cache}"
RUN_DIR="${E2E_RUN_DIR:-$E2E_DIR/.run}"
BIN_ROOT="$CACHE_DIR/bin"
K8S_BIN="$BIN_ROOT/kubernetes-$K8S_VERSION"
ETCD_BIN="$BIN_ROOT/etcd-$ETCD_VERSION"
KWOK_BIN="$BIN_ROOT/kwok-$KWOK_VERSION"
MS_BIN="$BIN_ROOT/metrics-server-$METRICS_SERVER_VERSION"
HELM_BIN="$BIN_ROOT/helm-$HELM_VERSION"
KUBEVIRT_BIN="$BIN_ROOT/kubevirt-$KUBEVIRT_VERSION"

# Loopback ports (override with env if they clash with something else).
ETCD_CLIENT_PORT="${E2E_ETCD_PORT:-32379}"
ETCD_PEER_PORT="${E2E_ETCD_PEER_PORT:-32380}"
APISERVER_PORT="${E2E_APISERVER_PORT:-36443}"
KCM_PORT="${E2E_KCM_PORT:-30257}"
SCHEDULER_PORT="${E2E_SCHEDULER_PORT:-30259}"
KWOK_PORT="${E2E_KWOK_PORT:-30250}"
METRICS_SERVER_PORT="${E2E_METRICS_SERVER_PORT:-30443}"
VIRT_API_PORT="${E2E_VIRT_API_PORT:-30844}"
VIRT_CONTROLLER_PORT="${E2E_VIRT_CONTROLLER_PORT:-30845}"

KUBECONFIG_PATH="$RUN_DIR/kubeconfig"
PKI="$RUN_DIR/pki"
LOGS="$RUN_DIR/logs"
PIDS="$RUN_DIR/pids"

log()  { printf '[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die()  { log "ERROR: $*"; exit 1; }

# need_cmd CMD [apt-package]: install via apt only when the command is missing.
need_cmd() {
  local cmd="$1" pkg="${2:-$1}"
  command -v "$cmd" >/dev/null 2>&1 && return 0
  log "installing $pkg (for $cmd) with apt-get"
  local sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  if [[ ! -f "$RUN_DIR/.apt-updated" ]] && mkdir -p "$RUN_DIR"; then
    $sudo apt-get update -qq >/dev/null && touch "$RUN_DIR/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$pkg" >/dev/null
  command -v "$cmd" >/dev/null 2>&1 || die "could not install $cmd"
}

# retry_until TIMEOUT_SECONDS DESCRIPTION CMD...: poll CMD (every 0.2-1s) until it succeeds.
retry_until() {
  local timeout="$1" what="$2"; shift 2
  local start=$SECONDS delay=0.2
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS - start >= timeout )); then
      log "timed out after ${timeout}s waiting for: $what"
      return 1
    fi
    sleep "$delay"
    [[ $delay == 0.2 ]] && delay=0.5 || delay=1
  done
}

kubectl_() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

# wait_established CRD-NAME...: right after creation a CRD has no conditions
# yet and `kubectl wait` errors out instead of waiting, so poll.
wait_established() {
  retry_until 60 "CRDs established: $*" kubectl_ wait --for=condition=Established --timeout=5s \
    $(printf 'crd/%s ' "$@") || die "CRDs not established: $*"
}
