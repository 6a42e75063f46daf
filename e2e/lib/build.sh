# shellcheck shell=bash
# Build every component from its pinned Go module (wrapper modules in e2e/go/).
# Binaries are cached in e2e/.cache/bin/<component>-<version>/; a stamp file
# records the go.sum hash + flags so a version bump rebuilds.

# Not in common.sh: only build.sh and e2e/descheduler/build use it.
DESCHEDULER_BIN="$BIN_ROOT/descheduler-$DESCHEDULER_VERSION"

# Binary name for a main package: last path element, skipping a /vN suffix;
# go.etcd.io/etcd/server/v3 is special-cased to "etcd".
bin_name() {
  case "$1" in
    go.etcd.io/etcd/server/v3) echo etcd ;;
    */v[0-9]*) local d="${1%/v[0-9]*}"; echo "${d##*/}" ;;
    *) echo "${1##*/}" ;;
  esac
}

go_build() { # name outdir moddir ldflags pkg...
  local name="$1" out="$2" moddir="$3" ldflags="$4"; shift 4
  if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
    export PATH="/usr/local/go/bin:$PATH"   # non-login shells may lack it
  fi
  command -v go >/dev/null 2>&1 || die "go toolchain not found (need Go >= 1.26)"
  local stamp
  # go.mod, go.sum, any Go source of the wrapper module itself (e2e/go/kubevirt/cmd/...), flags, Go version.
  stamp="$( { cat "$moddir/go.mod" "$moddir/go.sum"; find "$moddir" -name '*.go' -print0 | sort -z | xargs -0r cat
              echo "$ldflags $*"; go env GOVERSION; } | sha256sum | cut -c1-16)"
  if [[ -f "$out/.stamp" && "$(cat "$out/.stamp")" == "$stamp" ]]; then
    local missing=0 p
    for p in "$@"; do [[ -x "$out/$(bin_name "$p")" ]] || missing=1; done
    (( missing == 0 )) && return 0
  fi
  mkdir -p "$out" "$RUN_DIR"
  log "building $name ($*) -> ${out#"$E2E_DIR"/} (cold build takes minutes; log: ${RUN_DIR#"$E2E_DIR"/}/build-$name.log)"
  local t0=$SECONDS
  if ! (cd "$moddir" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -trimpath -buildvcs=false" \
        go build -ldflags "$ldflags" -o "$out/$([[ $# -eq 1 ]] && bin_name "$1")" "$@") \
        >"$RUN_DIR/build-$name.log" 2>&1; then
    tail -40 "$RUN_DIR/build-$name.log" >&2
    die "build of $name failed"
  fi
  echo "$stamp" >"$out/.stamp"
  log "built $name in $((SECONDS - t0))s"
  echo "$name $((SECONDS - t0))s" >>"$RUN_DIR/build-times.log"
}

# versions.env is the source of truth; the committed wrapper go.mod files
# must agree with it (else: e2e/go/update-gomods.sh).
check_gomods() {
  local spec dir mod ver
  for spec in "k8s k8s.io/kubernetes $K8S_VERSION" "etcd go.etcd.io/etcd/server/v3 $ETCD_VERSION" \
              "kwok sigs.k8s.io/kwok $KWOK_VERSION" "metrics-server sigs.k8s.io/metrics-server $METRICS_SERVER_VERSION" \
              "helm helm.sh/helm/v3 $HELM_VERSION" "k8s k8s.io/api $K8S_STAGING_VERSION" \
              "descheduler sigs.k8s.io/descheduler $DESCHEDULER_VERSION" \
              "kubevirt kubevirt.io/kubevirt $KUBEVIRT_VERSION" "kubevirt kubevirt.io/api $KUBEVIRT_VERSION"; do
    read -r dir mod ver <<<"$spec"
    grep -qE "^\s*(require )?$mod( => $mod)? $ver\b" "$E2E_DIR/go/$dir/go.mod" ||
      die "e2e/go/$dir/go.mod does not pin $mod $ver from versions.env: run e2e/go/update-gomods.sh"
  done
}

build_all() {
  check_gomods
  local kv="${K8S_VERSION#v}" major minor
  major="${kv%%.*}"; minor="${kv#*.}"; minor="${minor%%.*}"
  local kflags="-s -w"
  local p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    kflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
    kflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  go_build etcd "$ETCD_BIN" "$E2E_DIR/go/etcd" "-s -w" go.etcd.io/etcd/server/v3
  go_build kubernetes "$K8S_BIN" "$E2E_DIR/go/k8s" "$kflags" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
  go_build kwok "$KWOK_BIN" "$E2E_DIR/go/kwok" \
    "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$kv" \
    sigs.k8s.io/kwok/cmd/kwok
  go_build metrics-server "$MS_BIN" "$E2E_DIR/go/metrics-server" \
    "-s -w -X sigs.k8s.io/metrics-server/pkg/version.gitVersion=$METRICS_SERVER_VERSION" \
    sigs.k8s.io/metrics-server/cmd/metrics-server
  go_build helm "$HELM_BIN" "$E2E_DIR/go/helm" \
    "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
    helm.sh/helm/v3/cmd/helm
  build_kubevirt
  # `e2e/cluster build` builds everything; `up` leaves the descheduler out (it is no part of the running
  # cluster, so a fresh `up` does not wait minutes for it): tests build it through e2e/descheduler/build.
  if [[ "${cmd:-}" == build ]]; then build_descheduler; fi
}

# The descheduler (sigs.k8s.io/descheduler), with the version ldflags its Makefile sets.
build_descheduler() {
  local p=sigs.k8s.io/descheduler/pkg/version
  go_build descheduler "$DESCHEDULER_BIN" "$E2E_DIR/go/descheduler" \
    "-s -w -X $p.version=$DESCHEDULER_VERSION -X $p.buildDate=1970-01-01T00:00:00Z -X $p.gitbranch=release -X $p.gitsha1=none" \
    sigs.k8s.io/descheduler/cmd/descheduler
}

# KubeVirt's virt-controller and virt-api, with the version ldflags of KubeVirt's hack/version.sh, and
# kubevirt-install (e2e/go/kubevirt/cmd/kubevirt-install): what virt-operator would install, from
# KubeVirt's own generators.
build_kubevirt() {
  local p=kubevirt.io/client-go/version
  go_build kubevirt "$KUBEVIRT_BIN" "$E2E_DIR/go/kubevirt" \
    "-s -w -X $p.gitVersion=$KUBEVIRT_VERSION -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z" \
    kubevirt.io/kubevirt/cmd/virt-controller kubevirt.io/kubevirt/cmd/virt-api kubedrs.e2e/kubevirt/cmd/kubevirt-install
}
