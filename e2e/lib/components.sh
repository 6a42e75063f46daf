# shellcheck shell=bash
# How each component is started and how its health is checked.

_curl_tls() { # url: GET with admin client cert, verified against our CA
  curl -fsS --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$1"
}

write_kubeconfigs() {
  [[ -f "$KUBECONFIG_PATH" ]] || write_kubeconfig "$KUBECONFIG_PATH" admin
  local c
  for c in kube-controller-manager kube-scheduler kwok metrics-server; do
    [[ -f "$RUN_DIR/$c.kubeconfig" ]] || write_kubeconfig "$RUN_DIR/$c.kubeconfig" "$c"
  done
}

start_etcd() {
  mkdir -p "$RUN_DIR/etcd-data"; chmod 700 "$RUN_DIR/etcd-data"
  proc_start etcd "$ETCD_BIN/etcd" \
    --name=e2e --data-dir="$RUN_DIR/etcd-data" \
    --listen-client-urls="https://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls="https://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster-state=new \
    --cert-file="$PKI/etcd.crt" --key-file="$PKI/etcd.key" \
    --client-cert-auth --trusted-ca-file="$PKI/ca.crt" \
    --unsafe-no-fsync \
    --quota-backend-bytes=4294967296 \
    --snapshot-count=10000 \
    --log-level=warn
  wait_ready etcd 60 "etcd /health" _curl_tls "https://127.0.0.1:$ETCD_CLIENT_PORT/health"
}

start_apiserver() {
  proc_start kube-apiserver "$K8S_BIN/kube-apiserver" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
    --etcd-servers="https://127.0.0.1:$ETCD_CLIENT_PORT" \
    --etcd-cafile="$PKI/ca.crt" --etcd-certfile="$PKI/apiserver-etcd-client.crt" \
    --etcd-keyfile="$PKI/apiserver-etcd-client.key" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --authorization-mode=Node,RBAC \
    --allow-privileged=true \
    --endpoint-reconciler-type=none \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-username-headers=X-Remote-User \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" \
    --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --enable-aggregator-routing=false \
    --max-requests-inflight=1000 --max-mutating-requests-inflight=500 \
    --profiling=false \
    --v="${E2E_APISERVER_V:-1}"
  wait_ready kube-apiserver 90 "kube-apiserver /readyz" _curl_tls "https://127.0.0.1:$APISERVER_PORT/readyz"
}

start_controller_manager() {
  proc_start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig="$RUN_DIR/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="$RUN_DIR/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="$RUN_DIR/kube-controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" \
    --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --allocate-node-cidrs=false \
    --node-monitor-grace-period=60s \
    --profiling=false \
    --v="${E2E_KCM_V:-1}"
}

start_scheduler() {
  proc_start kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig="$RUN_DIR/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$RUN_DIR/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="$RUN_DIR/kube-scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" \
    --leader-elect=false \
    --profiling=false \
    --v="${E2E_SCHEDULER_V:-1}"
}

_healthz() { # port
  curl -fsS --max-time 2 -k "https://127.0.0.1:$1/healthz"
}

wait_controllers() {
  wait_ready kube-controller-manager 60 "kube-controller-manager /healthz" _healthz "$KCM_PORT"
  wait_ready kube-scheduler 60 "kube-scheduler /healthz" _healthz "$SCHEDULER_PORT"
}

apply_kwok_manifests() {
  kubectl_ apply --server-side --force-conflicts -f "$E2E_DIR/manifests/kwok/crds.yaml" >/dev/null
  wait_established stages.kwok.x-k8s.io metrics.kwok.x-k8s.io \
    clusterresourceusages.kwok.x-k8s.io resourceusages.kwok.x-k8s.io
  kubectl_ apply --server-side --force-conflicts \
    -f "$E2E_DIR/manifests/kwok/stages.yaml" -f "$E2E_DIR/manifests/kwok/metrics.yaml" >/dev/null
}

start_kwok() {
  proc_start kwok "$KWOK_BIN/kwok" \
    --kubeconfig="$RUN_DIR/kwok.kubeconfig" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-ip=127.0.0.1 --node-name=localhost --node-port="$KWOK_PORT" \
    --server-address="127.0.0.1:$KWOK_PORT" \
    --tls-cert-file="$PKI/kwok.crt" --tls-private-key-file="$PKI/kwok.key" \
    --cidr=10.244.0.0/16 \
    --node-lease-duration-seconds=40 \
    --enable-crds=Stage,Metric,ClusterResourceUsage,ResourceUsage
  wait_ready kwok 60 "kwok /healthz" curl -fsS --max-time 2 -k "https://127.0.0.1:$KWOK_PORT/healthz"
}

start_metrics_server() {
  local ca_bundle m
  ca_bundle="$(base64 -w0 <"$PKI/ca.crt")"
  m="$(cat "$E2E_DIR/manifests/metrics-server.yaml")"
  m="${m//'${METRICS_SERVER_PORT}'/$METRICS_SERVER_PORT}"
  m="${m//'${CA_BUNDLE}'/$ca_bundle}"
  printf '%s\n' "$m" >"$RUN_DIR/metrics-server.yaml"
  kubectl_ apply --server-side --force-conflicts -f "$RUN_DIR/metrics-server.yaml" >/dev/null
  proc_start metrics-server "$MS_BIN/metrics-server" \
    --kubeconfig="$RUN_DIR/metrics-server.kubeconfig" \
    --authentication-kubeconfig="$RUN_DIR/metrics-server.kubeconfig" \
    --authorization-kubeconfig="$RUN_DIR/metrics-server.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$METRICS_SERVER_PORT" \
    --tls-cert-file="$PKI/metrics-server.crt" --tls-private-key-file="$PKI/metrics-server.key" \
    --kubelet-preferred-address-types=InternalIP \
    --kubelet-use-node-status-port \
    --kubelet-certificate-authority="$PKI/ca.crt" \
    --metric-resolution="${E2E_METRIC_RESOLUTION:-10s}" --kubelet-request-timeout=5s \
    --profiling=false
  wait_ready metrics-server 60 "metrics-server /readyz" curl -fsS --max-time 2 -k "https://127.0.0.1:$METRICS_SERVER_PORT/livez"
  wait_ready metrics-server 90 "metrics.k8s.io API via kube-apiserver" \
    kubectl_ get --raw /apis/metrics.k8s.io/v1beta1/nodes
}
