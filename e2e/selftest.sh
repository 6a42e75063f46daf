#!/usr/bin/env bash
# Self-test of the e2e cluster tooling (what CI can run):
#   down (clean slate) -> up -> status -> KubeVirt CRDs accept a VM -> helm
#   install -> metrics pipeline -> nodes resize -> down leaves no process
#   -> up again (timed) -> down.
# Prints "N passed, N failed" at the end; exit status 0 only if all passed.
set -uo pipefail
E2E="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$E2E/lib/common.sh"
pass=0 fail=0
check() { # description cmd...
  local d="$1"; shift
  local t0=$SECONDS
  if "$@"; then pass=$((pass + 1)); echo "PASS: $d ($((SECONDS - t0))s)"
  else fail=$((fail + 1)); echo "FAIL: $d ($((SECONDS - t0))s)"; fi
}
k() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

no_processes_left() {
  local left
  left="$(source "$E2E/lib/procs.sh"; stragglers)"
  if [[ -n "$left" ]]; then ps -o pid,args -p "$(echo $left | tr ' ' ,)" >&2; return 1; fi
  [[ ! -d "$RUN_DIR/etcd-data" ]] || { echo "etcd data left behind" >&2; return 1; }
}

kubevirt_vm() {
  k apply -f - >/dev/null <<'YAML' || return 1
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: selftest-vm, namespace: default}
spec:
  runStrategy: Always
  template:
    spec:
      domain:
        cpu: {cores: 2, model: Cascadelake-Server}
        memory: {guest: 2Gi}
        devices: {}
YAML
  k get vm selftest-vm -o jsonpath='{.spec.template.spec.domain.cpu.model}' | grep -qx Cascadelake-Server &&
    k delete vm selftest-vm >/dev/null
}

helm_install() {
  local d; d="$(mktemp -d)"
  "$HELM_BIN/helm" create "$d/selftest" >/dev/null &&
    KUBECONFIG="$KUBECONFIG_PATH" "$HELM_BIN/helm" install selftest "$d/selftest" --wait --timeout 90s >/dev/null &&
    KUBECONFIG="$KUBECONFIG_PATH" "$HELM_BIN/helm" uninstall selftest >/dev/null
  local rc=$?; rm -rf "$d"; return $rc
}

nodes_resize() {
  "$E2E/cluster" nodes 4 --generations broadwell,icelake --cpu 8 --memory 16Gi &&
    [[ "$(k get nodes -l type=kwok --no-headers | wc -l)" == 4 ]] &&
    [[ "$(k get node kwok-node-1 -o jsonpath='{.metadata.labels.host-model-cpu\.node\.kubevirt\.io/Icelake-Server}')" == true ]] &&
    [[ "$(k get node kwok-node-1 -o jsonpath='{.status.allocatable.cpu}')" == 8 ]] &&
    "$E2E/cluster" nodes 3 &&
    [[ "$(k get nodes -l type=kwok --no-headers | wc -l)" == 3 ]]
}

timed_up() { # max-seconds
  local t0=$SECONDS
  "$E2E/cluster" up >/dev/null || return 1
  echo "  up took $((SECONDS - t0))s (limit $1s)"
  (( SECONDS - t0 <= $1 ))
}

"$E2E/cluster" down >/dev/null 2>&1
check "up (builds missing binaries)" "$E2E/cluster" up
check "status" "$E2E/cluster" status
check "up again is a quick no-op" timed_up 5
check "kube-apiserver version" bash -c "'$K8S_BIN/kubectl' --kubeconfig '$KUBECONFIG_PATH' version | grep -q 'Server Version: $K8S_VERSION'"
check "KubeVirt CRDs accept a VirtualMachine" kubevirt_vm
check "helm install of a chart" helm_install
check "pod usage annotation -> metrics.k8s.io" "$E2E/check-metrics.sh"
check "nodes resize" nodes_resize
check "down" "$E2E/cluster" down
check "down leaves no process and no etcd data" no_processes_left
check "up from cached binaries under 30s" timed_up 30
check "down again" "$E2E/cluster" down
check "no process left" no_processes_left
echo "$pass passed, $fail failed"
((fail == 0))
