//! The typed KubeVirt resources against KubeVirt's own schemas (`data/kubevirt/schemas`, gzipped).
//!
//! 1. From each schema an example object is generated that sets every property, with every string equal to
//!    its own path (`status.migrationState.sourceNode`): deserializing it must succeed, every field kubedrs
//!    models must come out with the value of the path it claims to read, and nothing may be lost on the way
//!    back (unknown fields are kept).
//! 2. Our types with every modelled field set serialize to objects the schemas accept. The schemas forbid
//!    unknown properties (`additionalProperties: false`), so a misspelled field name fails here.
#![allow(clippy::unwrap_used)]

use kubedrs_engine::Reason;
use kubedrs_operator::kubevirt::*;
use serde_json::{Map, Value, json};

fn schema(file: &str) -> Value {
    let path = format!("{}/../../data/kubevirt/schemas/{file}.gz", env!("CARGO_MANIFEST_DIR"));
    let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_reader(flate2::read::GzDecoder::new(f)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const TIME: &str = "2025-01-02T03:04:05Z";

/// An example of `s` with every property set; strings are their own path, maps have one key `key`.
fn example(s: &Value, path: &str) -> Value {
    if s.get("x-kubernetes-int-or-string").is_some() || s.get("anyOf").is_some() {
        return json!("1");
    }
    let ty = s.get("type").and_then(Value::as_str).unwrap_or("object");
    match ty {
        "object" => {
            let mut out = Map::new();
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (k, p) in props {
                    let child = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    out.insert(k.clone(), example(p, &child));
                }
            } else if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
                out.insert("key".into(), example(ap, &format!("{path}.key")));
            }
            Value::Object(out)
        }
        "array" => json!([example(&s["items"], &format!("{path}[]"))]),
        "string" if s.get("format").and_then(Value::as_str) == Some("date-time") => json!(TIME),
        "string" if s.get("pattern").is_some() => json!("1"),
        "string" => match s.get("enum").and_then(|e| e.get(0)) {
            Some(first) => first.clone(),
            None => json!(path),
        },
        "integer" => json!(s.get("minimum").and_then(Value::as_i64).unwrap_or(0).max(1)),
        "number" => json!(1.5),
        "boolean" => json!(true),
        other => panic!("{path}: type {other}"),
    }
}

fn generated(file: &str, kind: &str) -> Value {
    let mut v = example(&schema(file), "");
    v["apiVersion"] = json!("kubevirt.io/v1");
    v["kind"] = json!(kind);
    v["metadata"] = json!({"name": "a", "namespace": "ns", "labels": {"app": "web"}});
    v
}

fn validate(file: &str, instance: &Value) {
    let schema = schema(file);
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> =
        validator.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{file} refuses\n{}\n{errors:#?}", serde_json::to_string_pretty(instance).unwrap());
}

fn time() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    serde_json::from_value(json!(TIME)).unwrap()
}

#[test]
fn generated_vmi_reads_every_modelled_field() {
    let raw = generated("virtualmachineinstance_v1.json", "VirtualMachineInstance");
    let vmi: VirtualMachineInstance = serde_json::from_value(raw.clone()).unwrap();
    assert_eq!(serde_json::to_value(&vmi).unwrap(), raw, "a round trip loses nothing");

    let d = &vmi.spec.domain;
    let cpu = d.cpu.as_ref().unwrap();
    assert_eq!((cpu.cores, cpu.sockets, cpu.threads), (Some(1), Some(1), Some(1)));
    assert_eq!(cpu.model.as_deref(), Some("spec.domain.cpu.model"));
    assert_eq!(cpu.dedicated_cpu_placement, Some(true));
    let mem = d.memory.as_ref().unwrap();
    assert_eq!((mem.guest.clone(), mem.max_guest.clone()), (Some("1".into()), Some("1".into())));
    let res = d.resources.as_ref().unwrap();
    assert_eq!(res.requests.as_ref().unwrap()["key"].as_str(), "1");
    assert_eq!(res.limits.as_ref().unwrap()["key"].as_str(), "1");
    assert_eq!(res.overcommit_guest_overhead, Some(true));
    assert_eq!(vmi.spec.node_selector.as_ref().unwrap()["key"], "spec.nodeSelector.key");
    assert!(vmi.spec.affinity.as_ref().unwrap().is_object());
    assert_eq!(vmi.spec.scheduler_name.as_deref(), Some("spec.schedulerName"));
    assert_eq!(vmi.spec.eviction_strategy.as_deref(), Some("spec.evictionStrategy"));

    let st = vmi.status.as_ref().unwrap();
    assert_eq!(st.node_name.as_deref(), Some("status.nodeName"));
    assert_eq!(st.phase.as_deref(), Some("status.phase"));
    let c = &st.conditions[0];
    assert_eq!((c.type_.as_str(), c.status.as_str()), ("status.conditions[].type", "status.conditions[].status"));
    assert_eq!(
        (c.reason.as_deref(), c.message.as_deref()),
        (Some("status.conditions[].reason"), Some("status.conditions[].message"))
    );
    assert_eq!((c.last_transition_time.clone(), c.last_probe_time.clone()), (Some(time()), Some(time())));
    let m = st.migration_state.as_ref().unwrap();
    assert_eq!(m.source_node.as_deref(), Some("status.migrationState.sourceNode"));
    assert_eq!(m.target_node.as_deref(), Some("status.migrationState.targetNode"));
    assert_eq!((m.completed, m.failed, m.abort_requested), (Some(true), Some(true), Some(true)));
    assert_eq!((m.start_timestamp.clone(), m.end_timestamp.clone()), (Some(time()), Some(time())));
    assert_eq!(m.mode.as_deref(), Some("status.migrationState.mode"));
    assert_eq!(m.migration_uid.as_deref(), Some("status.migrationState.migrationUid"));
    assert_eq!(m.failure_reason.as_deref(), Some("status.migrationState.failureReason"));
    assert_eq!(st.active_pods.as_ref().unwrap()["key"], "status.activePods.key");
    assert_eq!(st.migration_method.as_deref(), Some("status.migrationMethod"));
    assert_eq!(st.current_cpu_topology, Some(CpuTopology { cores: Some(1), sockets: Some(1), threads: Some(1) }));
    assert_eq!(st.evacuation_node_name.as_deref(), Some("status.evacuationNodeName"));
}

#[test]
fn generated_vm_reads_every_modelled_field() {
    let raw = generated("virtualmachine_v1.json", "VirtualMachine");
    let vm: VirtualMachine = serde_json::from_value(raw.clone()).unwrap();
    assert_eq!(serde_json::to_value(&vm).unwrap(), raw, "a round trip loses nothing");
    assert_eq!(vm.spec.running, Some(true));
    assert_eq!(vm.spec.run_strategy.as_deref(), Some("spec.runStrategy"));
    assert!(vm.spec.instancetype.as_ref().unwrap().is_object());
    let t = vm.spec.template.as_ref().unwrap();
    let tspec = t.spec.as_ref().unwrap();
    assert_eq!(tspec.domain.cpu.as_ref().unwrap().model.as_deref(), Some("spec.template.spec.domain.cpu.model"));
    assert_eq!(tspec.scheduler_name.as_deref(), Some("spec.template.spec.schedulerName"));
    let st = vm.status.as_ref().unwrap();
    assert_eq!(st.printable_status.as_deref(), Some("status.printableStatus"));
    assert_eq!((st.ready, st.created), (Some(true), Some(true)));
}

#[test]
fn vm_template_metadata_is_free_form_and_read() {
    // The schema keeps spec.template.metadata free-form (x-kubernetes-preserve-unknown-fields): fill it by hand.
    let mut raw = generated("virtualmachine_v1.json", "VirtualMachine");
    raw["spec"]["template"]["metadata"] =
        json!({"labels": {"app": "web"}, "annotations": {"kubedrs.io/cpu-shares": "high"}, "creationTimestamp": null});
    validate("virtualmachine_v1.json", &raw);
    let vm: VirtualMachine = serde_json::from_value(raw.clone()).unwrap();
    let md = vm.spec.template.as_ref().unwrap().metadata.as_ref().unwrap();
    assert_eq!(md.labels.as_ref().unwrap()["app"], "web");
    assert_eq!(md.annotations.as_ref().unwrap()["kubedrs.io/cpu-shares"], "high");
    assert_eq!(serde_json::to_value(&vm).unwrap(), raw);
}

#[test]
fn generated_vmim_reads_every_modelled_field() {
    let raw = generated("virtualmachineinstancemigration_v1.json", "VirtualMachineInstanceMigration");
    let m: VirtualMachineInstanceMigration = serde_json::from_value(raw.clone()).unwrap();
    assert_eq!(serde_json::to_value(&m).unwrap(), raw, "a round trip loses nothing");
    assert_eq!(m.spec.vmi_name, "spec.vmiName");
    assert_eq!(m.spec.added_node_selector.as_ref().unwrap()["key"], "spec.addedNodeSelector.key");
    let st = m.status.as_ref().unwrap();
    assert_eq!(st.phase, Some(MigrationPhase::Other("status.phase".into())));
    assert_eq!(st.migration_state.as_ref().unwrap().source_node.as_deref(), Some("status.migrationState.sourceNode"));
    let t = &st.phase_transition_timestamps[0];
    assert_eq!(t.phase, Some(MigrationPhase::Other("status.phaseTransitionTimestamps[].phase".into())));
    assert_eq!(t.phase_transition_timestamp, Some(time()));
    assert_eq!(m.source_node(), Some("status.migrationState.sourceNode"));
    assert_eq!(m.finished_at(), Some(&time()));
}

fn full_migration_state() -> MigrationState {
    MigrationState {
        source_node: Some("n1".into()),
        target_node: Some("n2".into()),
        completed: Some(false),
        failed: Some(false),
        abort_requested: Some(false),
        start_timestamp: Some(time()),
        end_timestamp: Some(time()),
        mode: Some("PreCopy".into()),
        migration_uid: Some("uid".into()),
        failure_reason: Some("none".into()),
        other: Other::new(),
    }
}

fn full_vmi_spec() -> VirtualMachineInstanceSpec {
    VirtualMachineInstanceSpec {
        domain: DomainSpec {
            cpu: Some(CpuSpec {
                cores: Some(2),
                sockets: Some(1),
                threads: Some(1),
                model: Some("Haswell-noTSX".into()),
                dedicated_cpu_placement: Some(false),
                other: Other::new(),
            }),
            memory: Some(MemorySpec { guest: Some("4Gi".into()), max_guest: Some("8Gi".into()), other: Other::new() }),
            resources: Some(ResourceRequirements {
                requests: Some([("cpu".to_string(), "200m".into()), ("memory".to_string(), "4Gi".into())].into()),
                limits: Some([("cpu".to_string(), "2".into())].into()),
                overcommit_guest_overhead: Some(false),
            }),
            // `devices` is required by the schema.
            other: [("devices".to_string(), json!({}))].into(),
        },
        node_selector: Some([("disk".to_string(), "ssd".to_string())].into()),
        affinity: Some(json!({"nodeAffinity": {}})),
        scheduler_name: Some("kubedrs".into()),
        eviction_strategy: Some("LiveMigrate".into()),
        other: Other::new(),
    }
}

#[test]
fn our_vmi_fields_exist_in_the_schema() {
    let mut vmi = VirtualMachineInstance::new("a", full_vmi_spec());
    vmi.metadata.namespace = Some("ns".into());
    vmi.status = Some(VirtualMachineInstanceStatus {
        node_name: Some("n1".into()),
        phase: Some("Running".into()),
        conditions: vec![VmiCondition {
            type_: LIVE_MIGRATABLE.into(),
            status: "True".into(),
            reason: Some("r".into()),
            message: Some("m".into()),
            last_transition_time: Some(time()),
            last_probe_time: Some(time()),
        }],
        migration_state: Some(full_migration_state()),
        active_pods: Some([("uid".to_string(), "n1".to_string())].into()),
        migration_method: Some("LiveMigration".into()),
        current_cpu_topology: Some(CpuTopology { cores: Some(2), sockets: Some(1), threads: Some(1) }),
        evacuation_node_name: Some("n1".into()),
        other: Other::new(),
    });
    validate("virtualmachineinstance_v1.json", &serde_json::to_value(&vmi).unwrap());
}

#[test]
fn our_vm_fields_exist_in_the_schema() {
    let mut vm = VirtualMachine::new(
        "a",
        VirtualMachineSpec {
            running: None,
            run_strategy: Some("Always".into()),
            instancetype: Some(json!({"name": "u1.medium", "kind": "VirtualMachineClusterInstancetype"})),
            template: Some(VirtualMachineInstanceTemplateSpec {
                metadata: Some(TemplateMetadata {
                    labels: Some([("app".to_string(), "web".to_string())].into()),
                    annotations: Some([("kubedrs.io/automation".to_string(), "Manual".to_string())].into()),
                    other: Other::new(),
                }),
                spec: Some(full_vmi_spec()),
            }),
            other: Other::new(),
        },
    );
    vm.status = Some(VirtualMachineStatus {
        printable_status: Some("Running".into()),
        ready: Some(true),
        created: Some(true),
        other: Other::new(),
    });
    validate("virtualmachine_v1.json", &serde_json::to_value(&vm).unwrap());
    assert!(vm.wants_to_run());
}

#[test]
fn the_vmim_kubedrs_creates_validates_against_the_vmim_schema() {
    let m = VirtualMachineInstanceMigration::for_move("ns", "web-1", "n1", "n2", "prod", Reason::Maintenance);
    let v = serde_json::to_value(&m).unwrap();
    assert_eq!(v["apiVersion"], "kubevirt.io/v1");
    assert_eq!(v["kind"], "VirtualMachineInstanceMigration");
    assert_eq!(v["spec"], json!({"vmiName": "web-1", "addedNodeSelector": {"kubernetes.io/hostname": "n2"}}));
    assert_eq!(v["metadata"]["labels"], json!({"kubedrs.io/pool": "prod", "kubedrs.io/reason": "maintenance"}));
    assert!(v.get("status").is_none() || v["status"].is_null(), "{v}");
    validate("virtualmachineinstancemigration_v1.json", &v);

    // With a status as KubeVirt fills it in.
    let mut m = m;
    m.status = Some(VirtualMachineInstanceMigrationStatus {
        phase: Some(MigrationPhase::Succeeded),
        migration_state: Some(full_migration_state()),
        phase_transition_timestamps: vec![PhaseTransition {
            phase: Some(MigrationPhase::Running),
            phase_transition_timestamp: Some(time()),
        }],
        other: Other::new(),
    });
    validate("virtualmachineinstancemigration_v1.json", &serde_json::to_value(&m).unwrap());
}

#[test]
fn a_vmi_as_kubevirt_returns_it_during_a_migration() {
    let vmi: VirtualMachineInstance = serde_yaml::from_str(
        r#"
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {name: web-1, namespace: shop, labels: {app: web}}
spec:
  domain:
    cpu: {cores: 2, sockets: 1, threads: 1, model: host-model}
    memory: {guest: 4Gi}
    resources: {requests: {memory: 4Gi, cpu: 1}}
    devices: {}
  evictionStrategy: LiveMigrate
status:
  nodeName: n1
  phase: Running
  activePods: {aaa: n1, bbb: n2}
  conditions:
  - {type: Ready, status: "True"}
  - {type: LiveMigratable, status: "True", lastProbeTime: null}
  migrationState:
    sourceNode: n1
    targetNode: n2
    startTimestamp: "2025-01-02T03:04:05Z"
    mode: PreCopy
    migrationUid: 6f1c2f4e-1d0a-4a5e-9a8e-2b9c8e1f0a11
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(vmi.key(), "shop/web-1");
    assert_eq!(vmi.node_name(), Some("n1"));
    assert_eq!(vmi.live_migratable(), Some(true));
    assert!(vmi.is_migrating());
    assert_eq!(vmi.spec.domain.resources.unwrap().requests.unwrap()["cpu"].as_str(), "1");
}
