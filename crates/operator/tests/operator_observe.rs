//! Observe: Kubernetes objects in, engine snapshots out. Fed with fixtures, no API server.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use kubedrs_engine::{CpuRequirement, InFlight, NodeState, PastMove, Resources, Shares, Snapshot, Vm, VmAutomation};
use kubedrs_operator::fixtures::*;
use kubedrs_operator::keys;
use kubedrs_operator::observe::{Cluster, DemandWindow, Observation, observe};

const GI: u64 = 1 << 30;
const MI: u64 = 1 << 20;
const NOW: u64 = 1_750_000_000;

#[derive(Default)]
struct World(Cluster);

impl World {
    fn pool(mut self, p: kubedrs_operator::crd::HostPool) -> Self {
        self.0.pools.push(Arc::new(p));
        self
    }
    fn node(mut self, n: k8s_openapi::api::core::v1::Node) -> Self {
        self.0.nodes.push(Arc::new(n));
        self
    }
    fn vmi(mut self, v: kubedrs_operator::kubevirt::VirtualMachineInstance) -> Self {
        self.0.vmis.push(Arc::new(v));
        self
    }
    fn vm(mut self, v: kubedrs_operator::kubevirt::VirtualMachine) -> Self {
        self.0.vms.push(Arc::new(v));
        self
    }
    fn pod(mut self, p: k8s_openapi::api::core::v1::Pod) -> Self {
        self.0.pods.push(Arc::new(p.into()));
        self
    }
    fn namespace(mut self, n: k8s_openapi::api::core::v1::Namespace) -> Self {
        self.0.namespaces.push(Arc::new(n));
        self
    }
    fn migration(mut self, m: kubedrs_operator::kubevirt::VirtualMachineInstanceMigration) -> Self {
        self.0.migrations.push(Arc::new(m));
        self
    }
    fn observe(&self) -> Observation {
        observe(&self.0, &DemandWindow::default(), NOW)
    }
    fn snapshot(&self, pool: &str) -> Snapshot {
        let o = self.observe();
        o.pool(pool).unwrap().snapshot.clone().unwrap()
    }
}

/// A pool `prod` selecting `kubedrs.io/pool=prod`, with two 16-core 64Gi nodes.
fn prod() -> World {
    World::default()
        .pool(pool("prod").selects(keys::POOL, "prod").build())
        .node(node("n1").cpu("16").memory("64Gi").in_pool("prod").build())
        .node(node("n2").cpu("16").memory("64Gi").in_pool("prod").build())
}

fn the_vm<'a>(s: &'a Snapshot, name: &str) -> &'a Vm {
    s.vms.iter().find(|v| v.name == name).unwrap_or_else(|| panic!("{name} not in {:?}", s.vms))
}

#[test]
fn nodes_get_allocatable_minus_other_pods_and_cpu_labels() {
    let s = World::default()
        .pool(pool("prod").selects(keys::POOL, "prod").build())
        .node(
            node("n1")
                .cpu("16")
                .memory("64Gi")
                .in_pool("prod")
                .vendor("Intel")
                .cpu_models(&["Haswell-noTSX", "Skylake-Client"])
                .host_model("Skylake-Client-IBRS")
                .build(),
        )
        .pod(pod("kube-system/agent").on("n1").requests("500m", "1Gi").build())
        .pod(pod("kube-system/done").on("n1").requests("8", "8Gi").phase("Succeeded").build())
        .snapshot("prod");
    let n = &s.nodes[0];
    assert_eq!(n.capacity, Resources::new(15_500, 63 * GI));
    assert_eq!(n.cpu_vendor.as_deref(), Some("Intel"));
    assert_eq!(n.cpu_models.iter().map(String::as_str).collect::<Vec<_>>(), ["Haswell-noTSX", "Skylake-Client"]);
    assert_eq!(n.host_model.as_deref(), Some("Skylake-Client-IBRS"));
    assert_eq!(s.pool.name, "prod");
    assert_eq!(s.now, NOW);
}

#[test]
fn node_states_follow_conditions_cordon_and_the_maintenance_annotation() {
    let w = |honor: bool| {
        let p = pool("prod").selects(keys::POOL, "prod");
        World::default()
            .pool(if honor { p.honor_cordon() } else { p }.build())
            .node(node("ready").cpu("4").memory("8Gi").in_pool("prod").build())
            .node(node("down").cpu("4").memory("8Gi").in_pool("prod").not_ready().build())
            .node(node("cordoned").cpu("4").memory("8Gi").in_pool("prod").cordoned().build())
            .node(node("leaving").cpu("4").memory("8Gi").in_pool("prod").maintenance().build())
            .node(node("empty").cpu("4").memory("8Gi").in_pool("prod").maintenance().build())
            .node(node("leaving-down").cpu("4").memory("8Gi").in_pool("prod").maintenance().not_ready().build())
            .vmi(vmi("ns/a").on("leaving").cpus(1).memory("1Gi").build())
            .vmi(vmi("ns/c").on("leaving-down").cpus(1).memory("1Gi").build())
            .vmi(vmi("ns/b").on("cordoned").cpus(1).memory("1Gi").build())
            .snapshot("prod")
    };
    let state = |s: &Snapshot, n: &str| s.nodes.iter().find(|x| x.name == n).unwrap().state;
    let s = w(false);
    assert_eq!(state(&s, "ready"), NodeState::Ready);
    assert_eq!(state(&s, "down"), NodeState::NotReady);
    assert_eq!(state(&s, "cordoned"), NodeState::Cordoned);
    assert_eq!(state(&s, "leaving"), NodeState::EnteringMaintenance);
    assert_eq!(state(&s, "empty"), NodeState::InMaintenance);
    assert_eq!(state(&s, "leaving-down"), NodeState::NotReady, "a node that is down: nothing can leave yet");
    let s = w(true);
    assert_eq!(state(&s, "cordoned"), NodeState::EnteringMaintenance, "honorCordon: cordon means maintenance");
}

#[test]
fn a_node_matched_by_two_pools_is_reported_on_both_and_left_out() {
    let o = World::default()
        .pool(pool("a").selects("zone", "z1").build())
        .pool(pool("b").selects("rack", "r1").build())
        .node(node("shared").cpu("4").memory("8Gi").label("zone", "z1").label("rack", "r1").build())
        .node(node("only-a").cpu("4").memory("8Gi").label("zone", "z1").build())
        .observe();
    for p in ["a", "b"] {
        let po = o.pool(p).unwrap();
        assert_eq!(po.conflicting_nodes.len(), 1, "{p}");
        assert_eq!(po.conflicting_nodes[0].node, "shared");
        assert_eq!(po.conflicting_nodes[0].pools, ["a", "b"]);
        assert!(po.snapshot.as_ref().unwrap().nodes.iter().all(|n| n.name != "shared"));
    }
    assert_eq!(o.pool("a").unwrap().snapshot.as_ref().unwrap().nodes.len(), 1);
}

#[test]
fn vm_membership_label_then_namespace_then_node() {
    let o = prod()
        .pool(pool("dev").selects(keys::POOL, "dev").build())
        .node(node("d1").cpu("4").memory("8Gi").in_pool("dev").build())
        .namespace(namespace("team", &[(keys::POOL, "dev")]))
        // Its node's pool.
        .vmi(vmi("other/by-node").on("n1").cpus(1).memory("1Gi").build())
        // Its namespace's pool.
        .vmi(vmi("team/by-namespace").on("d1").cpus(1).memory("1Gi").build())
        // Its own label wins over the namespace's.
        .vmi(vmi("team/by-label").on("n2").cpus(1).memory("1Gi").label(keys::POOL, "prod").build())
        // Labelled for prod but running on a dev node: outside its pool.
        .vmi(vmi("other/astray").on("d1").cpus(1).memory("1Gi").label(keys::POOL, "prod").build())
        // A pool that does not exist.
        .vmi(vmi("other/lost").on("n1").cpus(1).memory("1Gi").label(keys::POOL, "nope").build())
        .observe();
    let names = |p: &str| -> Vec<String> {
        o.pool(p).unwrap().snapshot.as_ref().unwrap().vms.iter().map(|v| v.name.clone()).collect()
    };
    assert_eq!(names("prod"), ["other/by-node", "team/by-label"]);
    assert_eq!(names("dev"), ["team/by-namespace"]);
    assert_eq!(o.pool("prod").unwrap().vms_outside, [("other/astray".to_string(), "d1".to_string())]);
    let w = o.warnings.iter().find(|w| w.name == "lost").unwrap();
    assert_eq!(w.reason, "UnknownPool");
    assert!(w.message.contains("kubedrs.io/pool=nope"), "{}", w.message);
}

#[test]
fn the_vm_object_label_places_it_too() {
    let s = World::default()
        .pool(pool("prod").selects("hw", "big").build())
        .pool(pool("dev").selects("hw", "small").build())
        .node(node("n1").cpu("4").memory("8Gi").label("hw", "big").build())
        .vm(vm("ns/a").label(keys::POOL, "prod").build())
        .vmi(vmi("ns/a").pending().cpus(1).memory("1Gi").build())
        .snapshot("prod");
    assert_eq!(s.vms[0].node, None, "a VMI waiting for kubedrs is in the snapshot without a node");
}

#[test]
fn a_vmi_whose_launcher_pod_is_bound_counts_on_that_node_before_its_status_says_so() {
    // kubedrs (or kube-scheduler) bound the pod; virt-controller has not written the VMI's node yet. The
    // kubelet holds the pod's requests on n2 already: so must the snapshot (else a second pod could be
    // bound into the same room).
    let mine = vmi("ns/a").pending().cpus(2).memory("4Gi").build();
    let mut theirs_default = vmi("ns/b").pending().cpus(2).memory("4Gi").build();
    theirs_default.spec.scheduler_name = None;
    let s = prod()
        .vm(vm("ns/a").label(keys::POOL, "prod").build())
        .vm(vm("ns/b").label(keys::POOL, "prod").build())
        .pod(launcher(&mine).on("n2").requests("2", "4300Mi").build())
        .pod(launcher(&theirs_default).on("n1").requests("2", "4300Mi").build())
        .vmi(mine)
        .vmi(theirs_default)
        .snapshot("prod");
    let a = the_vm(&s, "ns/a");
    assert_eq!(a.node.as_deref(), Some("n2"));
    assert_eq!(a.memory.reservation, 4300 * MI);
    // A VMI of the default scheduler is left alone while it waits, but not once its pod holds a node's room.
    assert_eq!(the_vm(&s, "ns/b").node.as_deref(), Some("n1"));
}

#[test]
fn reservation_comes_from_the_launcher_pod_when_there_is_one() {
    let v = vmi("ns/a").on("n1").cpus(4).memory("8Gi").requests("1", "8Gi").limits("4", "8Gi").build();
    let s = prod().pod(launcher(&v).requests("1100m", "8392Mi").build()).vmi(v).snapshot("prod");
    let a = the_vm(&s, "ns/a");
    assert_eq!((a.vcpus, a.memory_size_bytes), (4, 8 * GI));
    assert_eq!(a.cpu.reservation, 1100);
    assert_eq!(a.memory.reservation, 8392 * MI);
    // The memory limit counts at least the reservation (the pod's request adds the overhead).
    assert_eq!((a.cpu.limit, a.memory.limit), (Some(4000), Some(8392 * MI)));
    assert_eq!(a.namespace, "ns");
}

#[test]
fn without_a_pod_the_reservation_is_the_requests_or_kubevirts_defaults() {
    let s = prod()
        .vmi(vmi("ns/with-requests").on("n1").cpus(2).memory("4Gi").requests("500m", "4Gi").build())
        .vmi(vmi("ns/defaults").on("n1").cpus(4).memory("4Gi").build())
        .vmi(vmi("ns/no-topology").on("n1").requests("2500m", "1Gi").build())
        .snapshot("prod");
    let overhead = |guest: u64, vcpus: u64| 200 * MI + vcpus * 8 * MI + guest / 512;
    let r = the_vm(&s, "ns/with-requests");
    assert_eq!((r.cpu.reservation, r.memory.reservation), (500, 4 * GI + overhead(4 * GI, 2)));
    let d = the_vm(&s, "ns/defaults");
    assert_eq!(d.cpu.reservation, 400, "KubeVirt requests vCPUs / 10 by default");
    assert_eq!(d.memory.reservation, 4 * GI + overhead(4 * GI, 4));
    assert_eq!(d.cpu.limit, None);
    let t = the_vm(&s, "ns/no-topology");
    assert_eq!(t.vcpus, 3, "no topology: the CPU request, rounded up");
    assert_eq!(t.memory_size_bytes, GI, "no guest memory: the request");
}

#[test]
fn shares_and_automation_annotations_with_warnings_for_bad_values() {
    let s_and_o = prod()
        .vmi(
            vmi("ns/high")
                .on("n1")
                .cpus(1)
                .memory("1Gi")
                .annotation(keys::CPU_SHARES, "high")
                .annotation(keys::MEMORY_SHARES, "40")
                .build(),
        )
        .vmi(
            vmi("ns/bad")
                .on("n1")
                .cpus(1)
                .memory("1Gi")
                .annotation(keys::CPU_SHARES, "lots")
                .annotation(keys::AUTOMATION, "Sometimes")
                .build(),
        )
        .vmi(vmi("ns/manual").on("n1").cpus(1).memory("1Gi").annotation(keys::AUTOMATION, "Manual").build())
        // The VM object's annotation wins over the VMI's.
        .vm(vm("ns/disabled").annotation(keys::AUTOMATION, "Disabled").build())
        .vmi(vmi("ns/disabled").on("n1").cpus(1).memory("1Gi").annotation(keys::AUTOMATION, "Manual").build());
    let o = s_and_o.observe();
    let s = o.pool("prod").unwrap().snapshot.clone().unwrap();
    let h = the_vm(&s, "ns/high");
    assert_eq!((h.cpu.shares, h.memory.shares), (Shares::High, Shares::Custom(40)));
    let b = the_vm(&s, "ns/bad");
    assert_eq!((b.cpu.shares, b.automation), (Shares::Normal, VmAutomation::Default));
    assert_eq!(the_vm(&s, "ns/manual").automation, VmAutomation::Manual);
    assert_eq!(the_vm(&s, "ns/disabled").automation, VmAutomation::Disabled);
    let bad: Vec<_> = o.warnings.iter().filter(|w| w.name == "bad").collect();
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(bad.iter().all(|w| w.reason == "BadAnnotation" && w.kind == "VirtualMachineInstance"));
    assert!(bad.iter().any(|w| w.message.contains(keys::CPU_SHARES) && w.message.contains("using normal")));
    assert!(bad.iter().any(|w| w.message.contains(keys::AUTOMATION)));
}

#[test]
fn cpu_requirement_from_the_model_and_the_node_host_model() {
    let s = World::default()
        .pool(pool("prod").build())
        .node(node("n1").cpu("4").memory("8Gi").host_model("Skylake-Client-IBRS").build())
        .vmi(vmi("ns/any").on("n1").cpus(1).memory("1Gi").build())
        .vmi(vmi("ns/named").on("n1").cpus(1).memory("1Gi").model("Haswell-noTSX").build())
        .vmi(vmi("ns/hm").on("n1").cpus(1).memory("1Gi").model("host-model").build())
        .vmi(vmi("ns/hp").on("n1").cpus(1).memory("1Gi").model("host-passthrough").build())
        .snapshot("prod");
    assert_eq!(the_vm(&s, "ns/any").cpu_requirement, CpuRequirement::Any);
    assert_eq!(the_vm(&s, "ns/named").cpu_requirement, CpuRequirement::Model("Haswell-noTSX".into()));
    assert_eq!(the_vm(&s, "ns/hm").cpu_requirement, CpuRequirement::HostModel("Skylake-Client-IBRS".into()));
    assert_eq!(the_vm(&s, "ns/hp").cpu_requirement, CpuRequirement::HostPassthrough("Skylake-Client-IBRS".into()));
}

#[test]
fn labels_live_migratability_and_which_vmis_count() {
    let s = prod()
        .vm(vm("ns/a").label("tier", "db").build())
        .vmi(
            vmi("ns/a")
                .on("n1")
                .cpus(1)
                .memory("1Gi")
                .label("app", "web")
                .label("tier", "x")
                .not_live_migratable()
                .build(),
        )
        .vmi(vmi("ns/kube-scheduled").pending().cpus(1).memory("1Gi").build())
        .vmi({
            let mut v = vmi("ns/default-scheduler").pending().cpus(1).memory("1Gi").build();
            v.spec.scheduler_name = None;
            v
        })
        .vmi(vmi("ns/done").on("n1").phase("Succeeded").build())
        .snapshot("prod");
    let a = the_vm(&s, "ns/a");
    assert_eq!(a.labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(a.labels.get("tier").map(String::as_str), Some("db"), "the VM's labels win");
    assert!(!a.live_migratable);
    // Pending VMIs need a pool from a label to be placed; the default-scheduler one is never kubedrs'.
    assert_eq!(s.vms.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["ns/a"]);
}

#[test]
fn migrations_in_flight_and_history() {
    let day = 24 * 3600;
    let s = prod()
        .vmi(vmi("ns/moving").on("n1").cpus(1).memory("1Gi").build())
        .vmi(vmi("ns/moved").on("n2").cpus(1).memory("1Gi").build())
        .vmi(vmi("ns/old").on("n2").cpus(1).memory("1Gi").build())
        .vmi(vmi("ns/someone-elses").on("n1").cpus(1).memory("1Gi").build())
        .vmi(vmi("ns/failed").on("n1").cpus(1).memory("1Gi").build())
        .migration(migration("ns/moving", "prod").from("n1").to("n2").build())
        .migration(migration("ns/moved", "prod").from("n1").to("n2").succeeded_at(NOW - 600).build())
        .migration(migration("ns/old", "prod").from("n1").to("n2").succeeded_at(NOW - 2 * day).build())
        .migration(migration("ns/someone-elses", "prod").foreign().phase("Scheduling").build())
        .migration(migration("ns/failed", "prod").from("n1").to("n2").phase("Failed").build())
        .snapshot("prod");
    // Someone else's migration counts too (budgets, one migration per VMI); its target is not known yet.
    assert_eq!(
        s.in_flight,
        [
            InFlight { vm: "ns/moving".into(), source: "n1".into(), target: "n2".into() },
            InFlight { vm: "ns/someone-elses".into(), source: "n1".into(), target: String::new() },
        ]
    );
    assert_eq!(
        s.history,
        [PastMove { vm: "ns/moved".into(), from: "n1".into(), to: "n2".into(), at: NOW - 600, succeeded: true }]
    );
    assert!(the_vm(&s, "ns/someone-elses").live_migratable, "in flight, not unmigratable");
    assert!(the_vm(&s, "ns/failed").live_migratable);
}

#[test]
fn an_invalid_pool_has_no_snapshot_and_says_why() {
    let o = World::default()
        .pool(pool("bad").with("rules: [{name: r, type: VMNodeAffinity, vmSelector: {}}]").build())
        .node(node("n1").cpu("4").memory("8Gi").build())
        .observe();
    let p = o.pool("bad").unwrap();
    assert!(p.snapshot.is_none());
    let err = p.config.as_ref().unwrap_err();
    assert_eq!(err.errors[0].field, "spec.rules[0].nodeSelector");
    assert_eq!(p.generation, Some(1));
}

#[test]
fn demand_comes_from_metrics_smoothed() {
    let v = vmi("ns/a").on("n1").cpus(4).memory("8Gi").build();
    let l = launcher(&v).build();
    let mut w = prod().pod(l.clone()).vmi(v);
    let mut demand = DemandWindow::default();
    let metrics: Vec<_> = (0..10).map(|i| pod_metrics(&l, NOW - 1800 + i * 60, "500m", "2Gi")).collect();
    let warnings = demand.record_pod_metrics(&w.0.pods, &metrics, NOW);
    assert!(warnings.is_empty());
    w.0.pods.push(Arc::new(pod("ns/unrelated").build().into()));
    let o = observe(&w.0, &demand, NOW);
    let po = o.pool("prod").unwrap();
    assert_eq!(the_vm(po.snapshot.as_ref().unwrap(), "ns/a").demand, Resources::new(500, 2 * GI));
    assert!(po.vms_without_metrics.is_empty());
    // Without metrics: the CPU reservation and the guest memory.
    let o = observe(&w.0, &DemandWindow::default(), NOW);
    let po = o.pool("prod").unwrap();
    assert_eq!(the_vm(po.snapshot.as_ref().unwrap(), "ns/a").demand, Resources::new(400, 8 * GI));
    assert_eq!(po.vms_without_metrics, ["ns/a"]);
}

#[test]
fn demand_rises_fast_and_falls_slowly() {
    let mut d = DemandWindow::new(300, 2400);
    let t0 = 10_000;
    for i in 0..40 {
        d.record("ns/a", t0 + i * 60, Resources::new(1000, GI));
    }
    let end = t0 + 39 * 60;
    assert_eq!(d.demand("ns/a", end), Some(Resources::new(1000, GI)));
    // A burst: within the short window the demand follows it.
    for i in 1..=5 {
        d.record("ns/a", end + i * 60, Resources::new(4000, GI));
    }
    let burst = d.demand("ns/a", end + 300).unwrap();
    assert!(burst.cpu_millis >= 3000, "{burst:?}");
    // The load drops: five minutes later the long average still remembers the burst.
    let mut t = end + 300;
    for _ in 0..5 {
        t += 60;
        d.record("ns/a", t, Resources::new(100, GI));
    }
    let after = d.demand("ns/a", t).unwrap();
    assert!(after.cpu_millis > 500, "falls slowly: {after:?}");
    // Repeated or older samples are ignored; unknown VMs have no demand.
    d.record("ns/a", t, Resources::new(999_999, 0));
    assert_eq!(d.demand("ns/a", t), Some(after));
    assert_eq!(d.demand("ns/b", t), None);
    // Forgetting.
    d.retain(&Default::default());
    assert!(d.is_empty());
}

#[test]
fn observation_does_not_depend_on_input_order() {
    let w = prod()
        .pool(pool("dev").selects(keys::POOL, "dev").build())
        .node(node("d1").cpu("4").memory("8Gi").in_pool("dev").build())
        .vmi(vmi("ns/a").on("n1").cpus(1).memory("1Gi").build())
        .vmi(vmi("ns/b").on("n2").cpus(1).memory("1Gi").annotation(keys::CPU_SHARES, "bad").build())
        .vmi(vmi("ns/c").on("d1").cpus(1).memory("1Gi").annotation(keys::CPU_SHARES, "bad").build())
        .migration(migration("ns/a", "prod").from("n1").to("n2").build());
    let mut r = Cluster { ..w.0.clone() };
    r.pools.reverse();
    r.nodes.reverse();
    r.vmis.reverse();
    r.pods.reverse();
    r.migrations.reverse();
    assert_eq!(observe(&w.0, &DemandWindow::default(), NOW), observe(&r, &DemandWindow::default(), NOW));
}

/// Observe and the maintenance state machine read `kubedrs.io/maintenance` with one grammar: a node annotated
/// `"True"` or `" true"` is evacuated (it was once cordoned and shown `Entering` for ever, never evacuated),
/// and a value that is not a request is reported on the node and ignored.
#[test]
fn the_maintenance_annotation_is_read_the_same_way_by_observe_and_maintenance() {
    let w = World::default()
        .pool(pool("prod").selects(keys::POOL, "prod").build())
        .node(node("upper").cpu("4").memory("8Gi").in_pool("prod").annotation(keys::MAINTENANCE, "True").build())
        .node(node("spaced").cpu("4").memory("8Gi").in_pool("prod").annotation(keys::MAINTENANCE, " true ").build())
        .node(node("maybe").cpu("4").memory("8Gi").in_pool("prod").annotation(keys::MAINTENANCE, "maybe").build())
        .vmi(vmi("ns/a").on("upper").cpus(1).memory("1Gi").build());
    let o = w.observe();
    let s = o.pool("prod").unwrap().snapshot.clone().unwrap();
    let state = |n: &str| s.nodes.iter().find(|x| x.name == n).unwrap().state;
    assert_eq!(state("upper"), NodeState::EnteringMaintenance);
    assert_eq!(state("spaced"), NodeState::InMaintenance);
    assert_eq!(state("maybe"), NodeState::Ready);
    for n in &w.0.nodes {
        let view = kubedrs_operator::observe::node_view(n);
        let in_maintenance = s.nodes.iter().find(|x| x.name == view.name).unwrap().state.in_maintenance();
        assert_eq!(view.annotated, in_maintenance, "{}: the two readers disagree", view.name);
    }
    let warned: Vec<_> = o.warnings.iter().filter(|w| w.kind == "Node" && w.reason == "BadAnnotation").collect();
    assert_eq!(warned.len(), 1, "{:?}", o.warnings);
    assert_eq!(warned[0].name, "maybe");
    assert!(warned[0].message.contains("\"true\""), "{}", warned[0].message);
    let plan = kubedrs_engine::plan(&s).unwrap();
    assert!(plan.moves.iter().any(|m| m.vm == "ns/a" && m.from == "upper"), "the VM leaves: {:?}", plan.moves);
}

/// A pass over one pool translates only that pool, and sees it exactly as observing every pool does.
#[test]
fn observing_one_pool_gives_that_pool_as_observing_all_does() {
    let w = World::default()
        .pool(pool("a").selects(keys::POOL, "a").build())
        .pool(pool("b").selects(keys::POOL, "b").build())
        .node(node("a1").cpu("8").memory("16Gi").in_pool("a").build())
        .node(node("b1").cpu("8").memory("16Gi").in_pool("b").build())
        .vmi(vmi("ns/x").on("a1").cpus(1).memory("1Gi").build())
        .vmi(vmi("ns/y").on("b1").cpus(1).memory("1Gi").annotation(keys::CPU_SHARES, "lots").build());
    let all = w.observe();
    let one = kubedrs_operator::observe::observe_pools(&w.0, &DemandWindow::default(), NOW, Some("a"));
    assert_eq!(one.pools.len(), 1);
    assert_eq!(one.pool("a"), all.pool("a"));
    assert!(one.pool("b").is_none());
    // Pool b's VM was not translated: its bad annotation is pool b's pass's to report.
    assert!(all.warnings.iter().any(|w| w.name == "y"), "{:?}", all.warnings);
    assert!(one.warnings.iter().all(|w| w.name != "y"), "{:?}", one.warnings);
}

/// A drain's eviction marks the VMI (`status.evacuationNodeName`) before KubeVirt's evacuation controller
/// creates its migration: kubedrs counts it as migrating already, so it never asks for a second one (virt-api
/// would refuse it: "in-flight migration detected").
#[test]
fn a_vmi_kubevirt_is_evacuating_counts_as_in_flight() {
    let mut v = vmi("ns/draining").on("n1").cpus(1).memory("1Gi").build();
    v.status.get_or_insert_default().evacuation_node_name = Some("n1".into());
    let s = prod().vmi(v).vmi(vmi("ns/calm").on("n1").cpus(1).memory("1Gi").build()).snapshot("prod");
    assert_eq!(s.in_flight, [InFlight { vm: "ns/draining".into(), source: "n1".into(), target: String::new() }]);
}
