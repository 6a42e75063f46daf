//! Builders for snapshots that read like sentences, shared by tests, benches and docs:
//! `Node::test("n1").cores(16).gib(64)`, `Vm::test("a").on("n1").demand(2.0, 4.0)`.

use super::cpu::models_up_to;
use super::model::*;

const GIB: u64 = 1 << 30;

/// Cores to millicores, rounded: 1.001 cores is 1001m, where truncating 1000.9999... would give 1000.
pub fn millis(cores: f64) -> u64 {
    (cores * 1000.0).round() as u64
}

/// GiB to bytes, rounded.
pub fn bytes(gib: f64) -> u64 {
    (gib * GIB as f64).round() as u64
}

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
        self.demand = Resources::new(millis(cores), bytes(gib));
        self
    }

    /// Reservation in cores and GiB.
    pub fn reserve(mut self, cores: f64, gib: f64) -> Self {
        self.cpu.reservation = millis(cores);
        self.memory.reservation = bytes(gib);
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

/// A deterministic pseudo-random sequence (SplitMix64) for generated pools: no dependency, same pool on
/// every machine.
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// A generated pool for benchmarks and scale tests: `nodes` nodes of mixed sizes (32 or 64 cores,
/// 4 GiB per core) and two CPU generations, `vms` VMs of 1-8 vCPUs and 2-32 GiB whose demand is
/// 10-80% of their size, spread so that the first tenth of the nodes carries about twice its share.
pub fn generated_pool(nodes: usize, vms: usize, seed: u64) -> Snapshot {
    let mut rng = SplitMix::new(seed);
    let ns: Vec<Node> = (0..nodes)
        .map(|i| {
            let cores = if rng.below(2) == 0 { 32 } else { 64 };
            Node::test(&format!("node-{i:05}")).cores(cores).gib(cores * 4).generation(if i % 3 == 0 {
                "Haswell-noTSX"
            } else {
                "Icelake-Server"
            })
        })
        .collect();
    let hot = (nodes / 10).max(1);
    let vs: Vec<Vm> = (0..vms)
        .map(|i| {
            let vcpus = 1 << rng.below(4);
            let gib = [2, 4, 8, 16, 32][rng.below(5) as usize];
            let node = if rng.below(5) == 0 { rng.below(hot as u64) } else { rng.below(nodes as u64) } as usize;
            let busy = 0.1 + 0.7 * rng.unit();
            let mut vm = Vm::test(&format!("vm-{i:06}"))
                .on(&ns[node].name)
                .vcpus(vcpus as u32)
                .memory_gib(gib)
                .demand(vcpus as f64 * busy, gib as f64 * (0.3 + 0.5 * rng.unit()))
                .reserve(vcpus as f64 / 10.0, gib as f64 / 8.0);
            vm.dirty_rate_bytes_per_sec = rng.below(64) << 20;
            vm
        })
        .collect();
    let mut snap = Snapshot::test(ns, vs);
    snap.pool.concurrency = Concurrency { per_pool: 1000, per_node_outbound: 8, per_node_inbound: Some(8) };
    snap.pool.max_migrations_per_pass = 64;
    snap
}

/// `generated_pool` with one node in maintenance holding `on_node` VMs.
pub fn evacuation_pool(nodes: usize, vms: usize, on_node: usize, seed: u64) -> Snapshot {
    let mut snap = generated_pool(nodes, vms, seed);
    let name = snap.nodes[nodes / 2].name.clone();
    snap.nodes[nodes / 2].state = NodeState::EnteringMaintenance;
    snap.vms.retain(|v| v.node.as_deref() != Some(name.as_str()));
    let mut rng = SplitMix::new(seed ^ 0xABCD);
    for i in 0..on_node {
        let vcpus = 1 << rng.below(3);
        snap.vms.push(
            Vm::test(&format!("evac-{i:04}"))
                .on(&name)
                .vcpus(vcpus)
                .memory_gib(4)
                .demand(vcpus as f64 * 0.5, 2.0)
                .reserve(0.2, 1.0),
        );
    }
    snap
}
