//! The pool as the planner sees it while it plans: where every VM is (planned), per-node sums kept
//! incrementally (entitlement, reservations, rule counts, load sums for the imbalance), and the migration
//! slots left. Every planning step reads and changes this one state through `remove`/`place`, so a move is
//! O(1) in the pool size and the imbalance after a candidate move is known without a rescan.

use super::entitlement::pool_entitlements;
use super::model::{Enforcement, Node, NodeState, PastMove, Resource, Rule, RuleKind, Snapshot, Vm, VmAutomation};
use super::plan::Reason;
use std::collections::HashMap;

const DAY_SECS: u64 = 24 * 3600;

/// A rule with its members and per-node counts.
pub struct CompiledRule<'a> {
    pub rule: &'a Rule,
    pub members: Vec<usize>,
    /// Placed members per node (VM-VM rules).
    pub count: HashMap<usize, u32>,
    pub placed: u32,
    /// For VM-node rules: which nodes the node selector matches.
    pub node_ok: Vec<bool>,
}

impl CompiledRule<'_> {
    pub fn is_hard(&self) -> bool {
        self.rule.enforcement == Enforcement::Required
    }
}

/// Migrations that can still start now.
struct Slots {
    pool_left: u32,
    out_used: Vec<u32>,
    in_used: Vec<u32>,
}

pub struct PoolState<'a> {
    pub snap: &'a Snapshot,
    pub nodes: Vec<&'a Node>,
    pub vms: Vec<&'a Vm>,
    /// Node at snapshot time (the target for a VM already migrating).
    pub origin: Vec<Option<usize>>,
    /// Node in the plan so far.
    pub pos: Vec<Option<usize>>,
    /// Why the plan moved or placed a VM (first reason wins).
    pub reason: Vec<Option<Reason>>,
    pub in_flight: Vec<bool>,
    /// A VM a mandatory step moved for another one: `(true, u)` out of the way to make room for `u`,
    /// `(false, u)` with `u`'s required affinity group.
    pub aside: Vec<Option<(bool, usize)>>,
    /// Pool-wide entitlement per VM, [cpu, memory] in millicores and bytes.
    pub ent: Vec<[f64; 2]>,
    pub cap: Vec<[f64; 2]>,
    pub node_ent: Vec<[f64; 2]>,
    pub node_res: Vec<[u64; 2]>,
    /// Memory each VM holds where it runs: its memory reservation, or its demand when higher (capped by
    /// its limit). A node never takes a VM whose memory would go above its capacity.
    pub mem_use: Vec<u64>,
    /// Sum of `mem_use` of the VMs planned on each node, plus what migrations in flight hold on their source.
    pub node_mem: Vec<u64>,
    /// Migrations in flight at snapshot time: (VM, source). The VM counts on its target (`origin`) and keeps
    /// its requests and memory on the source until the migration ends.
    pub held_on_source: Vec<(usize, usize)>,
    /// VMs planned on each node, in VM index order.
    pub node_vms: Vec<Vec<usize>>,
    /// Counted in the imbalance: holds VMs as part of the pool (ready or cordoned).
    pub counted: Vec<bool>,
    pub weights: [f64; 2],
    s1: f64,
    s2: f64,
    n_counted: usize,
    pub rules: Vec<CompiledRule<'a>>,
    pub vm_rules: Vec<Vec<usize>>,
    /// Moves of each VM in the last 24 hours and when the last one was.
    pub moves_today: Vec<u32>,
    pub last_move_at: Vec<Option<u64>>,
    /// Failed migrations of each VM in the last 24 hours and when the last one ended.
    /// Failed migrations since the VM's last successful one (within the 24 h history).
    pub failures_in_a_row: Vec<u32>,
    last_failure_at: Vec<Option<u64>>,
    /// Nodes each VM left in the last 24 hours and when: going back there soon is ping-pong (no turbulence).
    pub left_recently: Vec<Vec<(usize, u64)>>,
    slots: Slots,
    /// Slots the migrations in flight hold (per source, per target), what [`Self::reset_slots`] starts from.
    flight_slots: (Vec<u32>, Vec<u32>),
}

impl<'a> PoolState<'a> {
    pub fn new(snap: &'a Snapshot) -> Self {
        let mut nodes: Vec<&Node> = snap.nodes.iter().collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let mut vms: Vec<&Vm> = snap.vms.iter().collect();
        vms.sort_by(|a, b| a.name.cmp(&b.name));
        let node_index: HashMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
        let vm_index: HashMap<&str, usize> = vms.iter().enumerate().map(|(i, v)| (v.name.as_str(), i)).collect();
        let n = nodes.len();
        let counted: Vec<bool> =
            nodes.iter().map(|n| matches!(n.state, NodeState::Ready | NodeState::Cordoned)).collect();
        let cap: Vec<[f64; 2]> =
            nodes.iter().map(|n| [n.capacity.get(Resource::Cpu), n.capacity.get(Resource::Memory)]).collect();

        let mut pool_cap = [0.0; 2];
        for (i, c) in cap.iter().enumerate().filter(|(i, _)| counted[*i]) {
            let _ = i;
            pool_cap[0] += c[0];
            pool_cap[1] += c[1];
        }
        let ent = pool_entitlements(&vms, pool_cap);
        let weights = contention_weights(&vms, pool_cap);

        let mut origin: Vec<Option<usize>> =
            vms.iter().map(|v| v.node.as_ref().and_then(|n| node_index.get(n.as_str()).copied())).collect();
        let mut in_flight = vec![false; vms.len()];
        let mut held_on_source: Vec<(usize, usize)> = Vec::new();
        let mut out_used = vec![0u32; n];
        let mut in_used = vec![0u32; n];
        for m in &snap.in_flight {
            let Some(&v) = vm_index.get(m.vm.as_str()) else { continue };
            in_flight[v] = true;
            let (s, t) = (node_index.get(m.source.as_str()).copied(), node_index.get(m.target.as_str()).copied());
            if let Some(s) = s {
                out_used[s] += 1;
            }
            // A target not known yet (someone else's migration, not scheduled): the VM stays on its source.
            if let (Some(s), Some(t)) = (s, t) {
                origin[v] = Some(t);
                held_on_source.push((v, s));
                in_used[t] += 1;
            }
        }
        let flight_slots = (out_used.clone(), in_used.clone());
        let pool_left = snap.pool.concurrency.per_pool.saturating_sub(snap.in_flight.len() as u32);

        let mut moves_today = vec![0u32; vms.len()];
        let mut last_move_at: Vec<Option<u64>> = vec![None; vms.len()];
        let mut failures_in_a_row = vec![0u32; vms.len()];
        let mut last_failure_at: Vec<Option<u64>> = vec![None; vms.len()];
        let mut left_recently: Vec<Vec<(usize, u64)>> = vec![Vec::new(); vms.len()];
        // Oldest first, so that a success resets the failures before it whatever the input order.
        let mut history: Vec<&PastMove> = snap.history.iter().collect();
        history.sort_by(|a, b| (a.at, &a.vm, a.succeeded).cmp(&(b.at, &b.vm, b.succeeded)));
        for past in history {
            let Some(&v) = vm_index.get(past.vm.as_str()) else { continue };
            let today = snap.now.saturating_sub(past.at) < DAY_SECS;
            let latest = |t: Option<u64>| Some(t.map_or(past.at, |t: u64| t.max(past.at)));
            if past.succeeded {
                failures_in_a_row[v] = 0;
                last_failure_at[v] = None;
                moves_today[v] += u32::from(today);
                last_move_at[v] = latest(last_move_at[v]);
                if let (true, Some(&h)) = (today, node_index.get(past.from.as_str())) {
                    left_recently[v].push((h, past.at));
                }
            } else if today {
                failures_in_a_row[v] += 1;
                last_failure_at[v] = latest(last_failure_at[v]);
            }
        }

        let mut rules: Vec<CompiledRule> = snap
            .rules
            .iter()
            .map(|rule| CompiledRule {
                rule,
                members: (0..vms.len()).filter(|&v| rule.vm_selector().matches(&vms[v].labels)).collect(),
                count: HashMap::new(),
                placed: 0,
                node_ok: match &rule.kind {
                    RuleKind::VMNodeAffinity { node_selector, .. } => {
                        nodes.iter().map(|n| node_selector.matches(&n.labels)).collect()
                    }
                    _ => vec![],
                },
            })
            .collect();
        rules.sort_by(|a, b| a.rule.name.cmp(&b.rule.name));
        let mut vm_rules = vec![Vec::new(); vms.len()];
        for (r, rule) in rules.iter().enumerate() {
            for &v in &rule.members {
                vm_rules[v].push(r);
            }
        }

        let mut st = PoolState {
            snap,
            nodes,
            vms,
            pos: vec![None; origin.len()],
            reason: vec![None; origin.len()],
            aside: vec![None; origin.len()],
            origin: origin.clone(),
            in_flight,
            ent,
            cap,
            node_ent: vec![[0.0; 2]; n],
            node_res: vec![[0; 2]; n],
            mem_use: Vec::new(),
            node_mem: vec![0; n],
            held_on_source: held_on_source.clone(),
            node_vms: vec![Vec::new(); n],
            n_counted: counted.iter().filter(|c| **c).count(),
            counted,
            weights,
            s1: 0.0,
            s2: 0.0,
            rules,
            vm_rules,
            moves_today,
            last_move_at,
            failures_in_a_row,
            last_failure_at,
            left_recently,
            slots: Slots { pool_left, out_used, in_used },
            flight_slots,
        };
        st.mem_use = st.vms.iter().map(|vm| mem_use(vm)).collect();
        for (v, o) in origin.iter().enumerate() {
            if let Some(h) = *o {
                st.place(v, h);
            }
        }
        // A migrating VM keeps its requests and memory on the source until the migration ends.
        for (v, s) in held_on_source {
            st.node_res[s][0] += st.vms[v].cpu.reservation;
            st.node_res[s][1] += st.vms[v].memory.reservation;
            st.node_mem[s] += st.mem_use[v];
        }
        st.recompute_sums();
        st
    }

    /// Combined normalized load of a node: entitlement over capacity, weighted by contention.
    pub fn load(&self, h: usize) -> f64 {
        self.load_with(h, self.node_ent[h])
    }

    fn load_with(&self, h: usize, ent: [f64; 2]) -> f64 {
        self.weights[0] * ent[0] / self.cap[h][0] + self.weights[1] * ent[1] / self.cap[h][1]
    }

    /// Load a VM adds to a node.
    pub fn vm_load_on(&self, v: usize, h: usize) -> f64 {
        self.weights[0] * self.ent[v][0] / self.cap[h][0] + self.weights[1] * self.ent[v][1] / self.cap[h][1]
    }

    fn recompute_sums(&mut self) {
        self.s1 = 0.0;
        self.s2 = 0.0;
        for h in 0..self.nodes.len() {
            if self.counted[h] {
                let l = self.load(h);
                self.s1 += l;
                self.s2 += l * l;
            }
        }
    }

    /// Sum of squared deviations of the counted loads from their mean.
    pub fn ssd(&self) -> f64 {
        ssd_of(self.s1, self.s2, self.n_counted)
    }

    /// Standard deviation of the counted nodes' combined load.
    pub fn imbalance(&self) -> f64 {
        if self.n_counted == 0 { 0.0 } else { (self.ssd() / self.n_counted as f64).max(0.0).sqrt() }
    }

    pub fn n_counted(&self) -> usize {
        self.n_counted
    }

    /// SSD after changing node loads by the given deltas (at most two nodes), without changing the state.
    pub fn ssd_after(&self, changes: &[(usize, f64)]) -> f64 {
        let (mut s1, mut s2) = (self.s1, self.s2);
        for &(h, d) in changes {
            if self.counted[h] {
                let l = self.load(h);
                s1 += d;
                s2 += (l + d) * (l + d) - l * l;
            }
        }
        ssd_of(s1, s2, self.n_counted)
    }

    fn adjust_sums(&mut self, h: usize, before: f64) {
        if self.counted[h] {
            let after = self.load(h);
            self.s1 += after - before;
            self.s2 += after * after - before * before;
        }
    }

    pub fn remove(&mut self, v: usize) {
        let Some(h) = self.pos[v].take() else { return };
        let before = self.load(h);
        for r in 0..2 {
            self.node_ent[h][r] -= self.ent[v][r];
        }
        self.node_res[h][0] -= self.vms[v].cpu.reservation;
        self.node_res[h][1] -= self.vms[v].memory.reservation;
        self.node_mem[h] -= self.mem_use[v];
        if let Ok(i) = self.node_vms[h].binary_search(&v) {
            self.node_vms[h].remove(i);
        }
        for &r in &self.vm_rules[v] {
            let rule = &mut self.rules[r];
            rule.placed -= 1;
            if let Some(c) = rule.count.get_mut(&h) {
                *c -= 1;
                if *c == 0 {
                    rule.count.remove(&h);
                }
            }
        }
        self.adjust_sums(h, before);
    }

    pub fn place(&mut self, v: usize, h: usize) {
        debug_assert!(self.pos[v].is_none());
        let before = self.load(h);
        self.pos[v] = Some(h);
        for r in 0..2 {
            self.node_ent[h][r] += self.ent[v][r];
        }
        self.node_res[h][0] += self.vms[v].cpu.reservation;
        self.node_res[h][1] += self.vms[v].memory.reservation;
        self.node_mem[h] += self.mem_use[v];
        if let Err(i) = self.node_vms[h].binary_search(&v) {
            self.node_vms[h].insert(i, v);
        }
        for &r in &self.vm_rules[v] {
            let rule = &mut self.rules[r];
            rule.placed += 1;
            *rule.count.entry(h).or_insert(0) += 1;
        }
        self.adjust_sums(h, before);
    }

    /// Does the VM fit on `h` beside what is planned there: its requests within the node's allocatable, and
    /// its memory (see [`PoolState::mem_use`]) within the node's memory capacity?
    pub fn reservation_fits(&self, v: usize, h: usize) -> bool {
        let here = self.pos[v] == Some(h);
        let vm = self.vms[v];
        let add = |used: u64, r: u64| if here { used } else { used + r };
        add(self.node_res[h][0], vm.cpu.reservation) <= self.nodes[h].capacity.cpu_millis
            && add(self.node_res[h][1], vm.memory.reservation) <= self.nodes[h].capacity.memory_bytes
            && add(self.node_mem[h], self.mem_use[v]) <= self.nodes[h].capacity.memory_bytes
    }

    /// Would the node's entitlement stay within its capacity with the VM there?
    pub fn entitlement_fits(&self, v: usize, h: usize) -> bool {
        let here = self.pos[v] == Some(h);
        (0..2).all(|r| {
            let total = self.node_ent[h][r] + if here { 0.0 } else { self.ent[v][r] };
            total <= self.cap[h][r] * (1.0 + 1e-9)
        })
    }

    /// Entitlement beyond capacity if the VM goes to `h`, as a fraction of capacity (0 when it fits).
    pub fn overflow_with(&self, v: usize, h: usize) -> f64 {
        (0..2).map(|r| ((self.node_ent[h][r] + self.ent[v][r] - self.cap[h][r]) / self.cap[h][r]).max(0.0)).sum()
    }

    /// The first rule (index) that placing `v` on `h` would break; `strict` treats Preferred rules as Required.
    pub fn rule_conflict(&self, v: usize, h: usize, strict: bool) -> Option<usize> {
        self.vm_rules[v].iter().copied().find(|&r| (strict || self.rules[r].is_hard()) && !self.rule_allows(r, v, h))
    }

    /// Preferred rules that placing `v` on `h` breaks.
    pub fn soft_breaks(&self, v: usize, h: usize) -> u32 {
        self.vm_rules[v].iter().filter(|&&r| !self.rules[r].is_hard() && !self.rule_allows(r, v, h)).count() as u32
    }

    pub fn rule_allows(&self, r: usize, v: usize, h: usize) -> bool {
        let rule = &self.rules[r];
        let self_here = u32::from(self.pos[v] == Some(h));
        let self_placed = u32::from(self.pos[v].is_some());
        let at = |h: usize| rule.count.get(&h).copied().unwrap_or(0);
        match &rule.rule.kind {
            RuleKind::VMAntiAffinity { .. } => at(h) - self_here == 0,
            // Every other placed member must already be on h.
            RuleKind::VMAffinity { .. } => at(h) - self_here == rule.placed - self_placed,
            RuleKind::VMNodeAffinity { .. } => rule.node_ok[h],
        }
    }

    /// Can `v` run on `h` at all: the node takes VMs, the CPU model runs there, hard rules hold.
    pub fn allowed(&self, v: usize, h: usize, strict: bool) -> bool {
        self.nodes[h].state.accepts_vms()
            && self.vms[v].cpu_requirement.allows(self.nodes[h])
            && self.rule_conflict(v, h, strict).is_none()
    }

    /// Could kubedrs move this VM at all (mandatory moves)?
    pub fn movable(&self, v: usize) -> bool {
        let vm = self.vms[v];
        !self.in_flight[v] && vm.automation != VmAutomation::Disabled && vm.live_migratable
    }

    /// Seconds left before a VM whose migrations failed may be tried again: the pool's backoff after the
    /// first failure, doubling per failure since the VM's last success (within 24 hours), capped.
    pub fn backoff_left(&self, v: usize) -> Option<u64> {
        let last = self.last_failure_at[v]?;
        let wait = self.snap.pool.failure_backoff.wait_secs(self.failures_in_a_row[v].max(1));
        let waited = self.snap.now.saturating_sub(last);
        wait.checked_sub(waited).filter(|&left| left > 0)
    }

    /// May balancing move this VM now (no ping-pong, per-day limit, not already moved by this plan)?
    pub fn balance_candidate(&self, v: usize) -> bool {
        let p = &self.snap.pool;
        self.backoff_left(v).is_none()
            && self.movable(v)
            && self.reason[v].is_none()
            && self.pos[v].is_some()
            && self.moves_today[v] < p.max_moves_per_vm_per_day
            && self.last_move_at[v].is_none_or(|t| self.snap.now.saturating_sub(t) >= p.cooldown_secs)
    }

    pub fn slot_free(&self, from: usize, to: usize) -> bool {
        let c = &self.snap.pool.concurrency;
        self.slots.pool_left > 0
            && self.slots.out_used[from] < c.per_node_outbound
            && c.per_node_inbound.is_none_or(|limit| self.slots.in_used[to] < limit)
    }

    /// Are there slots for all these moves (from, to) at once?
    pub fn slots_free_for(&self, moves: &[(usize, usize)]) -> bool {
        let c = &self.snap.pool.concurrency;
        if (self.slots.pool_left as usize) < moves.len() {
            return false;
        }
        moves.iter().all(|&(from, to)| {
            let out = moves.iter().filter(|m| m.0 == from).count() as u32;
            let inn = moves.iter().filter(|m| m.1 == to).count() as u32;
            self.slots.out_used[from] + out <= c.per_node_outbound
                && c.per_node_inbound.is_none_or(|limit| self.slots.in_used[to] + inn <= limit)
        })
    }

    /// Gives back every slot taken by the plan so far (slots are then taken again in the plan's final order).
    pub fn reset_slots(&mut self) {
        let c = &self.snap.pool.concurrency;
        let (out_used, in_used) = self.flight_slots.clone();
        self.slots =
            Slots { pool_left: c.per_pool.saturating_sub(self.snap.in_flight.len() as u32), out_used, in_used };
    }

    /// Takes a slot for a move if one is free; false means the move waits.
    pub fn take_slot(&mut self, from: usize, to: usize) -> bool {
        if !self.slot_free(from, to) {
            return false;
        }
        self.slots.pool_left -= 1;
        self.slots.out_used[from] += 1;
        self.slots.in_used[to] += 1;
        true
    }

    /// Entitlement over capacity of one resource on a node (above 1: the node cannot give its VMs what
    /// they are entitled to).
    pub fn ratio(&self, h: usize, r: Resource) -> f64 {
        self.node_ent[h][r.index()] / self.cap[h][r.index()]
    }

    /// The resource node `h` is short of, i.e. whose entitlement is above its capacity, and that ratio; the
    /// larger one when it is short of both.
    pub fn short(&self, h: usize) -> Option<(Resource, f64)> {
        Resource::ALL
            .into_iter()
            .map(|r| (r, self.ratio(h, r)))
            .filter(|&(_, ratio)| ratio > 1.0)
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// Seconds since the VM last left node `h`, if it did in the last 24 hours.
    pub fn since_left(&self, v: usize, h: usize) -> Option<u64> {
        self.left_recently[v].iter().filter(|(n, _)| *n == h).map(|(_, at)| self.snap.now.saturating_sub(*at)).min()
    }

    /// Largest minus smallest combined load over the nodes that can take VMs.
    pub fn load_spread(&self) -> f64 {
        let loads = (0..self.nodes.len()).filter(|&h| self.counted[h]).map(|h| self.load(h));
        let (lo, hi) = loads.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), l| (lo.min(l), hi.max(l)));
        if hi >= lo { hi - lo } else { 0.0 }
    }
}

/// Memory a VM holds on its node: its reservation, or its demand when higher, capped by its limit.
pub fn mem_use(vm: &Vm) -> u64 {
    let demand = vm.demand.memory_bytes.min(vm.memory.limit.unwrap_or(u64::MAX));
    vm.memory.reservation.max(demand)
}

fn ssd_of(s1: f64, s2: f64, n: usize) -> f64 {
    if n == 0 { 0.0 } else { (s2 - s1 * s1 / n as f64).max(0.0) }
}

/// CPU and memory weights for the combined load: each in proportion to the square of how much of the pool
/// it is demanded, so a resource nobody is short of barely drives migrations.
fn contention_weights(vms: &[&Vm], pool_cap: [f64; 2]) -> [f64; 2] {
    let mut u = [0.0; 2];
    for r in Resource::ALL {
        let demand: f64 = vms.iter().map(|vm| vm.demand.get(r).max(vm.allocation(r).reservation as f64)).sum();
        u[r.index()] = if pool_cap[r.index()] > 0.0 { demand / pool_cap[r.index()] } else { 0.0 };
    }
    let (a, b) = (u[0] * u[0], u[1] * u[1]);
    if a + b < 1e-12 { [0.5, 0.5] } else { [a / (a + b), b / (a + b)] }
}
