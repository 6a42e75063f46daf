//! The label and annotation keys of api.md, in one place.

/// VM label or namespace label naming the VM's pool; label on the migrations kubedrs creates.
pub const POOL: &str = "kubedrs.io/pool";
/// Label on the migrations kubedrs creates: `balance`, `maintenance`, `rule` or `placement`.
pub const REASON: &str = "kubedrs.io/reason";
/// Annotation on the migrations kubedrs creates: the node the VM left (for adoption after a restart).
pub const SOURCE_NODE: &str = "kubedrs.io/source-node";
/// Annotation on the migrations kubedrs creates: the node the VM is sent to.
pub const TARGET_NODE: &str = "kubedrs.io/target-node";

/// VM annotation: CPU shares, `low` | `normal` | `high` | a positive integer (per vCPU).
pub const CPU_SHARES: &str = "kubedrs.io/cpu-shares";
/// VM annotation: memory shares, `low` | `normal` | `high` | a positive integer (per MiB).
pub const MEMORY_SHARES: &str = "kubedrs.io/memory-shares";
/// VM annotation: `Disabled` | `Manual` | unset (the pool's level).
pub const AUTOMATION: &str = "kubedrs.io/automation";
/// VMI annotation set by the admission webhook: the baseline model it set.
pub const CPU_BASELINE: &str = "kubedrs.io/cpu-baseline";

/// Node annotation set by the user: `"true"` (any case, surrounding spaces ignored) asks for maintenance;
/// any other value is reported on the node (`BadAnnotation`) and ignored.
pub const MAINTENANCE: &str = "kubedrs.io/maintenance";
/// Node annotation set by kubedrs, mirrored in a node label of the same key: `Entering` | `InMaintenance` |
/// `Blocked`.
pub const MAINTENANCE_STATE: &str = "kubedrs.io/maintenance-state";
/// Node annotation set by kubedrs when it cordoned the node for maintenance (it uncordons only then).
pub const CORDONED_BY_KUBEDRS: &str = "kubedrs.io/maintenance-cordoned";
/// Node annotation set by kubedrs: what is left or why maintenance is blocked, in words.
pub const MAINTENANCE_MESSAGE: &str = "kubedrs.io/maintenance-message";

/// `spec.template.spec.schedulerName` that asks kubedrs to place the VM's virt-launcher pods.
pub const SCHEDULER_NAME: &str = "kubedrs";

/// KubeVirt node-labeller: `cpu-model.node.kubevirt.io/<Model>=true`.
pub const KUBEVIRT_CPU_MODEL_PREFIX: &str = "cpu-model.node.kubevirt.io/";
/// KubeVirt node-labeller: `host-model-cpu.node.kubevirt.io/<Model>=true`.
pub const KUBEVIRT_HOST_MODEL_PREFIX: &str = "host-model-cpu.node.kubevirt.io/";
/// KubeVirt node-labeller: `cpu-vendor.node.kubevirt.io/<Vendor>=true`.
pub const KUBEVIRT_CPU_VENDOR_PREFIX: &str = "cpu-vendor.node.kubevirt.io/";
/// Label KubeVirt puts on virt-launcher pods: the VMI's UID.
pub const KUBEVIRT_CREATED_BY: &str = "kubevirt.io/created-by";
/// Label KubeVirt puts on virt-launcher pods (`kubevirt.io=virt-launcher`).
pub const KUBEVIRT_APP: &str = "kubevirt.io";
/// Label KubeVirt puts on virt-launcher pods: the VMI's name (`vm.kubevirt.io/name`).
pub const KUBEVIRT_VM_NAME: &str = "vm.kubevirt.io/name";
/// Node label used as the migration target selector.
pub const HOSTNAME: &str = "kubernetes.io/hostname";
/// Label KubeVirt puts on a migration's target pod: the migration's UID.
pub const MIGRATION_JOB_LABEL: &str = "kubevirt.io/migrationJobUID";
