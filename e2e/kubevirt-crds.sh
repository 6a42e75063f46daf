#!/usr/bin/env bash
# Generate KubeVirt CustomResourceDefinitions from the real schemas in
# <repo>/data/kubevirt/schemas/*.json.gz (each file is a CRD's openAPIV3Schema, gzipped)
# into e2e/.run/kubevirt-crds.yaml, and apply them unless --no-apply.
#   env KUBEVIRT_SCHEMAS=<dir> overrides the schema directory (files *.json.gz or *.json).
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib/common.sh"
need_cmd jq
need_cmd gzip

schemas="${KUBEVIRT_SCHEMAS:-$REPO_ROOT/data/kubevirt/schemas}"
[[ -d "$schemas" ]] || die "KubeVirt schemas not found at $schemas (set KUBEVIRT_SCHEMAS)"
# The path of a schema file, gzipped or not.
schema_path() {
  if [[ -f "$schemas/$1.gz" ]]; then echo "$schemas/$1.gz"
  elif [[ -f "$schemas/$1" ]]; then echo "$schemas/$1"
  else die "missing schema $schemas/$1.gz"
  fi
}

out="$RUN_DIR/kubevirt-crds.yaml"
mkdir -p "$RUN_DIR"
# file  group  version  kind  plural  singular  shortNames(comma)  scope
crds=(
  "virtualmachine_v1.json kubevirt.io v1 VirtualMachine virtualmachines virtualmachine vm,vms Namespaced"
  "virtualmachineinstance_v1.json kubevirt.io v1 VirtualMachineInstance virtualmachineinstances virtualmachineinstance vmi,vmis Namespaced"
  "virtualmachineinstancemigration_v1.json kubevirt.io v1 VirtualMachineInstanceMigration virtualmachineinstancemigrations virtualmachineinstancemigration vmim,vmims Namespaced"
  "kubevirt_v1.json kubevirt.io v1 KubeVirt kubevirts kubevirt kv,kvs Namespaced"
  "virtualmachineclusterinstancetype_v1beta1.json instancetype.kubevirt.io v1beta1 VirtualMachineClusterInstancetype virtualmachineclusterinstancetypes virtualmachineclusterinstancetype vmclusterinstancetype,vmclusterinstancetypes,vmcf,vmcfs Cluster"
)
: >"$out.tmp"
for c in "${crds[@]}"; do
  read -r file group version kind plural singular shorts scope <<<"$c"
  path="$(schema_path "$file")"
  # JSON is valid YAML: one CRD document per schema. The schemas come from
  # the datree CRDs-catalog, which adds `additionalProperties: false` next to
  # `properties` (strict validation for kubeconform); the apiserver rejects
  # that combination ("mutual exclusive") and KubeVirt's own CRDs don't have
  # it (they prune unknown fields), so it is dropped. Nothing else changes.
  # Printer columns are the ones KubeVirt's own CRDs declare.
  jq -c --arg group "$group" --arg version "$version" --arg kind "$kind" \
        --arg plural "$plural" --arg singular "$singular" --arg shorts "$shorts" --arg scope "$scope" '
    def col($n; $t; $p): {name: $n, type: $t, jsonPath: $p};
    def unstrict: walk(if type == "object" and has("properties") and .additionalProperties == false
                       then del(.additionalProperties) else . end);
    def age: col("Age"; "date"; ".metadata.creationTimestamp");
    def columns: {
      VirtualMachine: [age, col("Status"; "string"; ".status.printableStatus"),
                       col("Ready"; "string"; ".status.conditions[?(@.type==\"Ready\")].status")],
      VirtualMachineInstance: [age, col("Phase"; "string"; ".status.phase"),
                       col("IP"; "string"; ".status.interfaces[0].ipAddress"),
                       col("NodeName"; "string"; ".status.nodeName"),
                       col("Ready"; "string"; ".status.conditions[?(@.type==\"Ready\")].status")],
      VirtualMachineInstanceMigration: [col("Phase"; "string"; ".status.phase"),
                       col("VMI"; "string"; ".spec.vmiName"), age],
      KubeVirt: [age, col("Phase"; "string"; ".status.phase")]
    }[$kind] // [age];
    {
      apiVersion: "apiextensions.k8s.io/v1",
      kind: "CustomResourceDefinition",
      metadata: {
        name: ($plural + "." + $group),
        labels: {"app.kubernetes.io/part-of": "kubedrs-e2e"},
        annotations: {"kubedrs.io/generated-by": "e2e/kubevirt-crds.sh"}
      },
      spec: {
        group: $group,
        scope: $scope,
        names: {kind: $kind, listKind: ($kind + "List"), plural: $plural, singular: $singular,
                shortNames: ($shorts | split(",")), categories: ["all"]},
        versions: [{
          name: $version, served: true, storage: true,
          subresources: {status: {}},
          additionalPrinterColumns: columns,
          schema: {openAPIV3Schema: unstrict}
        }]
      }
    }' <(gzip -dcf "$path") >>"$out.tmp"
  echo "---" >>"$out.tmp"
done
mv "$out.tmp" "$out"
log "generated $(grep -c '^---' "$out") KubeVirt CRDs into ${out#"$E2E_DIR"/}"

if [[ "${1:-}" != "--no-apply" ]]; then
  if ! kubectl_ apply --server-side --force-conflicts -f "$out" >"$RUN_DIR/kubevirt-crds.apply.log" 2>&1; then
    cut -c1-2000 "$RUN_DIR/kubevirt-crds.apply.log" >&2
    die "applying KubeVirt CRDs failed (full output: .run/kubevirt-crds.apply.log)"
  fi
  wait_established virtualmachines.kubevirt.io virtualmachineinstances.kubevirt.io \
    virtualmachineinstancemigrations.kubevirt.io kubevirts.kubevirt.io \
    virtualmachineclusterinstancetypes.instancetype.kubevirt.io
  log "KubeVirt CRDs applied and established"
fi
