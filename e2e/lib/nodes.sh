# shellcheck shell=bash
# Fake KWOK nodes from templates/node.yaml.
# shellcheck source=../templates/cpu-generations.env
source "$E2E_DIR/templates/cpu-generations.env"

# render_node NAME GENERATION CPU MEMORY PODS -> YAML on stdout
render_node() {
  local name="$1" gen="$2" cpu="$3" mem="$4" pods="$5"
  local vendor_var="GEN_${gen}_VENDOR" host_var="GEN_${gen}_HOST_MODEL" models_var="GEN_${gen}_MODELS"
  [[ -n "${!models_var:-}" ]] || die "unknown CPU generation '$gen' (known: $CPU_GENERATIONS)"
  local labels="" m
  for m in ${!models_var}; do
    labels+="    cpu-model.node.kubevirt.io/$m: \"true\""$'\n'
  done
  # virt-handler's node-labeller also publishes every model the host could run a host-model guest as
  # (getKnownCpuModels): the labels a host-model VMI's migration target must have.
  for m in ${!models_var}; do
    labels+="    cpu-model-migration.node.kubevirt.io/$m: \"true\""$'\n'
  done
  labels="${labels%$'\n'}"
  local t
  t="$(grep -v '^#' "$E2E_DIR/templates/node.yaml")"
  t="${t//'${NODE_NAME}'/$name}"
  t="${t//'${CPU_GENERATION}'/$gen}"
  t="${t//'${CPU_VENDOR}'/${!vendor_var}}"
  t="${t//'${HOST_MODEL}'/${!host_var}}"
  t="${t//'${CPU_MODEL_LABELS}'/$labels}"
  t="${t//'${CPU}'/$cpu}"
  t="${t//'${MEMORY}'/$mem}"
  t="${t//'${PODS}'/$pods}"
  printf '%s\n' "$t"
}

# nodes_cmd N [--generations g1,g2,..] [--cpu C] [--memory M] [--pods P] [--prefix P]
# Makes exactly N nodes <prefix>-0..N-1 (default prefix kwok-node); node i gets
# generation i mod len(generations). Extra nodes with the same prefix are deleted.
nodes_cmd() {
  local n="${1:-}"; shift || true
  [[ "$n" =~ ^[0-9]+$ ]] || die "usage: e2e/cluster nodes N [--generations g1,g2,...] [--cpu C] [--memory M] [--pods P] [--prefix P]"
  local gens="${E2E_NODE_GENERATIONS:-${CPU_GENERATIONS// /,}}" cpu="${E2E_NODE_CPU:-$NODE_CPU}"
  local mem="${E2E_NODE_MEMORY:-$NODE_MEMORY}" pods="${E2E_NODE_PODS:-$NODE_PODS}" prefix="kwok-node"
  while (($#)); do
    case "$1" in
      --generations) gens="$2"; shift 2 ;;
      --cpu) cpu="$2"; shift 2 ;;
      --memory) mem="$2"; shift 2 ;;
      --pods) pods="$2"; shift 2 ;;
      --prefix) prefix="$2"; shift 2 ;;
      *) die "unknown nodes option $1" ;;
    esac
  done
  local -a glist; IFS=',' read -r -a glist <<<"$gens"
  local i docs=""
  for ((i = 0; i < n; i++)); do
    docs+="---"$'\n'"$(render_node "$prefix-$i" "${glist[i % ${#glist[@]}]}" "$cpu" "$mem" "$pods")"$'\n'
  done
  mkdir -p "$RUN_DIR"
  printf '%s' "$docs" >"$RUN_DIR/nodes.yaml"
  if ((n > 0)); then
    kubectl_ apply --server-side --force-conflicts --field-manager=e2e-cluster \
      -f "$RUN_DIR/nodes.yaml" >/dev/null
    # Status is a subresource: an apply of the object only sets it on create.
    # Apply it separately so --cpu/--memory/--pods also resize existing nodes.
    kubectl_ apply --server-side --force-conflicts --field-manager=e2e-cluster \
      --subresource=status -f "$RUN_DIR/nodes.yaml" >/dev/null
  fi
  # Delete surplus nodes of this prefix.
  local name idx
  for name in $(kubectl_ get nodes -l type=kwok -o name); do
    name="${name#node/}"; idx="${name#"$prefix"-}"
    [[ "$name" == "$prefix-"* && "$idx" =~ ^[0-9]+$ ]] || continue
    if ((idx >= n)); then kubectl_ delete node "$name" --wait=false >/dev/null; fi
  done
  # Wait until kwok has initialised them (Ready=True).
  if ((n > 0)); then
    retry_until 60 "$n kwok nodes Ready" kubectl_ wait --for=condition=Ready --timeout=2s \
      $(for ((i = 0; i < n; i++)); do echo "node/$prefix-$i"; done) \
      || die "kwok nodes did not become Ready (see .run/logs/kwok.log)"
  fi
  log "$n kwok node(s) ready (prefix $prefix, generations $gens, cpu=$cpu memory=$mem pods=$pods)"
}
