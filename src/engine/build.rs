//! Builders for snapshots that read like sentences, shared by tests, benches and docs:
//! `Node::test("n1").cores(16).gib(64)`, `Vm::test("a").on("n1").demand(2.0, 4.0)`.

use super::cpu::models_up_to;
use super::model::*;

const GIB: u64 = 1 << 30;

impl Node {
    /// A ready node with 16 cores and 64 GiB.
    pub fn test(name: &str) -> Node {
        Node { name: name.into(), capacity: Resources::new(16_000, 64 * GIB), ..Default::default() }
    }

    pub fn cores(mut self, cores: u64) -> Self {
        self.capacity.cpu_millis = cores * 1000;
        self
    }

    pub fn gib(mut self, gib: u64) -> Self {
        self.capacity.memory_bytes = gib * GIB;
        self
    }

    pub fn state(mut self, state: NodeState) -> Self {
        self.state = state;
        self
    }

    pub fn cordoned(self) -> Self {
        self.state(NodeState::Cordoned)
    }

    pub fn maintenance(self) -> Self {
        self.state(NodeState::EnteringMaintenance)
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }

    /// An Intel node of the generation whose newest model is `newest` (all older models too).
    pub fn generation(mut self, newest: &str) -> Self {
        self.cpu_vendor = Some(super::cpu::generation(newest).map_or("Intel", |g| g.0).into());
        self.cpu_models = models_up_to(newest).into_iter().collect();
        self.host_model = Some(newest.into());
        self
    }
}

impl Vm {
    /// A pending VM: 2 vCPUs, 4 GiB, KubeVirt's default request (vCPUs/10) and 1 GiB reserved,
    /// demanding 1 core and 2 GiB.
    pub fn test(name: &str) -> Vm {
        Vm {
            name: name.into(),
            node: None,
            namespace: "default".into(),
            vcpus: 2,
            memory_size_bytes: 4 * GIB,
            cpu: Allocation { reservation: 200, limit: None, shares: Shares::Normal },
            memory: Allocation { reservation: GIB, limit: None, shares: Shares::Normal },
            demand: Resources::new(1000, 2 * GIB),
            dirty_rate_bytes_per_sec: 0,
            cpu_requirement: CpuRequirement::Any,
            labels: Labels::new(),
            automation: VmAutomation::Default,
            live_migratable: true,
        }
    }

    pub fn on(mut self, node: &str) -> Self {
        self.node = Some(node.into());
        self
    }

    pub fn vcpus(mut self, n: u32) -> Self {
        self.vcpus = n;
        self
    }

    pub fn memory_gib(mut self, gib: u64) -> Self {
        self.memory_size_bytes = gib * GIB;
        self
    }

    /// Demand in cores and GiB.
    pub fn demand(mut self, cores: f64, gib: f64) -> Self {
        self.demand = Resources::new((cores * 1000.0) as u64, (gib * GIB as f64) as u64);
        self
    }

    /// Reservation in cores and GiB.
    pub fn reserve(mut self, cores: f64, gib: f64) -> Self {
        self.cpu.reservation = (cores * 1000.0) as u64;
        self.memory.reservation = (gib * GIB as f64) as u64;
        self
    }

    pub fn cpu_shares(mut self, s: Shares) -> Self {
        self.cpu.shares = s;
        self
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }

    pub fn model(mut self, m: &str) -> Self {
        self.cpu_requirement = CpuRequirement::Model(m.into());
        self
    }

    pub fn automation(mut self, a: VmAutomation) -> Self {
        self.automation = a;
        self
    }
}

impl Rule {
    pub fn anti_affinity(name: &str, selector: Selector) -> Rule {
        Rule {
            name: name.into(),
            kind: RuleKind::VMAntiAffinity { vm_selector: selector },
            enforcement: Enforcement::Required,
        }
    }

    pub fn affinity(name: &str, selector: Selector) -> Rule {
        Rule {
            name: name.into(),
            kind: RuleKind::VMAffinity { vm_selector: selector },
            enforcement: Enforcement::Required,
        }
    }

    pub fn vm_node(name: &str, vm_selector: Selector, node_selector: Selector) -> Rule {
        Rule {
            name: name.into(),
            kind: RuleKind::VMNodeAffinity { vm_selector, node_selector },
            enforcement: Enforcement::Required,
        }
    }

    pub fn preferred(mut self) -> Self {
        self.enforcement = Enforcement::Preferred;
        self
    }
}

impl Snapshot {
    /// A pool with default settings at threshold 3.
    pub fn test(nodes: Vec<Node>, vms: Vec<Vm>) -> Snapshot {
        Snapshot { pool: PoolSettings::default(), nodes, vms, ..Default::default() }
    }

    pub fn threshold(mut self, t: u8) -> Self {
        self.pool.migration_threshold = t;
        self
    }

    pub fn rule(mut self, r: Rule) -> Self {
        self.rules.push(r);
        self
    }
}
