#!/usr/bin/env bash
# End-to-end check of the metrics pipeline on a running e2e cluster:
# pod annotation kwok.x-k8s.io/usage-{cpu,memory} -> KWOK ClusterResourceUsage
# -> KWOK Metric (/metrics/nodes/<node>/metrics/resource) -> metrics-server
# -> kube-apiserver aggregation -> metrics.k8s.io PodMetrics.
# Creates pod default/e2e-metrics-check, changes its usage, checks the API
# follows, deletes the pod. Exit 0 on success.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib/common.sh"
need_cmd jq
ns=default pod=e2e-metrics-check
timeout="${E2E_METRICS_TIMEOUT:-120}"

# quantity -> millicores / bytes
to_milli() { awk -v q="$1" 'BEGIN{ if (q ~ /n$/) print substr(q,1,length(q)-1)/1e6; else if (q ~ /u$/) print substr(q,1,length(q)-1)/1e3; else if (q ~ /m$/) print substr(q,1,length(q)-1)+0; else print q*1000 }'; }
to_bytes() { awk -v q="$1" 'BEGIN{ n=q+0; if (q ~ /Ki$/) n*=1024; else if (q ~ /Mi$/) n*=1048576; else if (q ~ /Gi$/) n*=1073741824; else if (q ~ /k$/) n*=1000; else if (q ~ /M$/) n*=1e6; printf "%d\n", n }'; }

usage_matches() { # want_millicores want_bytes
  local j cpu mem
  j="$(kubectl_ get --raw "/apis/metrics.k8s.io/v1beta1/namespaces/$ns/pods/$pod" 2>/dev/null)" || return 1
  cpu="$(jq -r '.containers[0].usage.cpu' <<<"$j")"; mem="$(jq -r '.containers[0].usage.memory' <<<"$j")"
  [[ "$cpu" != null && "$mem" != null ]] || return 1
  last="cpu=$cpu memory=$mem"
  # CPU is a rate over two scrapes of a cumulative counter: allow 10%.
  awk -v got="$(to_milli "$cpu")" -v want="$1" 'BEGIN{ d=got-want; if (d<0) d=-d; exit !(d <= want*0.10) }' || return 1
  [[ "$(to_bytes "$mem")" == "$2" ]]
}

wait_usage() { # millicores bytes
  local start=$SECONDS; last="(no PodMetrics yet)"
  until usage_matches "$1" "$2"; do
    if (( SECONDS - start > timeout )); then
      log "FAIL: PodMetrics did not reach cpu=${1}m memory=$2 within ${timeout}s; last: $last"
      return 1
    fi
    sleep 1
  done
  log "PodMetrics $ns/$pod: $last (after $((SECONDS - start))s)"
}

cleanup() { kubectl_ delete pod -n "$ns" "$pod" --ignore-not-found --wait=false >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup; kubectl_ wait --for=delete -n "$ns" "pod/$pod" --timeout=30s >/dev/null 2>&1 || true

kubectl_ apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: $pod
  namespace: $ns
  annotations:
    kwok.x-k8s.io/usage-cpu: "250m"
    kwok.x-k8s.io/usage-memory: "300Mi"
spec:
  nodeSelector: {type: kwok}
  containers:
  - name: app
    image: registry.invalid/fake:1
    resources:
      requests: {cpu: 100m, memory: 128Mi}
YAML
kubectl_ wait --for=condition=Ready -n "$ns" "pod/$pod" --timeout=60s >/dev/null
log "pod $ns/$pod Running on $(kubectl_ get pod -n "$ns" "$pod" -o jsonpath='{.spec.nodeName}')"
t0=$SECONDS
wait_usage 250 $((300 * 1048576))
kubectl_ annotate --overwrite pod -n "$ns" "$pod" kwok.x-k8s.io/usage-cpu=750m kwok.x-k8s.io/usage-memory=600Mi >/dev/null
wait_usage 750 $((600 * 1048576))
kubectl_ top pod -n "$ns" "$pod" || true
kubectl_ top node | head -5 || true
log "metrics pipeline OK ($((SECONDS - t0))s)"
