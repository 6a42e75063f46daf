//! From the file as written to the resolved scenario: groups expanded, names and times checked, traces
//! loaded, pool settings built by the one builder of kubedrs-spec.

use crate::cpu;
use crate::workload::{Pattern, TRACE_SAMPLE_SECS, TraceStore, Workload};
use crate::yamlpos::PathIndex;
use kubedrs_engine::{
    Allocation, CpuRequirement, Node, NodeState, PoolSettings, Resources, Rule, RuleKind, Selector, SelectorOperator,
    SelectorRequirement, Vm,
};
use kubedrs_spec::pool::PoolFields;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::*;

pub(crate) struct Resolver<'a> {
    pub(crate) path: &'a Path,
    pub(crate) index: &'a PathIndex,
    pub(crate) vm_names: BTreeSet<String>,
}

pub(crate) type R<T> = Result<T, ScenarioError>;

impl Resolver<'_> {
    fn err(&self, field: &str, message: impl Into<String>) -> ScenarioError {
        located(self.path, self.index, field, message.into())
    }

    fn whole_secs(&self, field: &str, d: Dur, min: f64) -> R<u64> {
        if d.0 < min {
            return Err(self.err(field, format!("{}s is too short: at least {min}s", d.0)));
        }
        if d.0.fract() != 0.0 {
            return Err(self.err(field, format!("{}s: use whole seconds", d.0)));
        }
        Ok(d.0 as u64)
    }

    pub(crate) fn resolve(mut self, f: ScenarioFile, index: PathIndex) -> R<Scenario> {
        let name = f.name.clone().unwrap_or_else(|| {
            self.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "scenario".into())
        });
        let step = self.whole_secs("step", f.step.unwrap_or(Dur(60.0)), 1.0)?;
        let duration = self.whole_secs("duration", f.duration, 1.0)?;
        let interval = self.whole_secs("pool.interval", f.pool.interval.unwrap_or(Dur(300.0)), 10.0)?;
        if interval % step != 0 {
            return Err(self.err("pool.interval", format!("{interval}s is not a multiple of step ({step}s)")));
        }
        if duration < step {
            return Err(self.err("duration", format!("{duration}s is shorter than one step ({step}s)")));
        }
        if duration / step > MAX_STEPS {
            return Err(self.err(
                "duration",
                format!("{} steps of {step}s: at most {MAX_STEPS}; use a longer step", duration / step),
            ));
        }

        let pool = self.pool(&f.pool, &name)?;
        let rules = self.rules(&f.pool.rules)?;
        let migration = self.migration(&f.migration)?;
        let ha_restart_delay = self.whole_secs("ha.restartDelay", f.ha.restart_delay.unwrap_or(Dur(300.0)), 0.0)?;
        let ping_pong_window =
            self.whole_secs("metrics.pingPongWindow", f.metrics.ping_pong_window.unwrap_or(Dur(7200.0)), 0.0)?;

        if f.nodes.is_empty() {
            return Err(self.err("nodes", "the pool needs at least one node group"));
        }
        let mut nodes = Vec::new();
        let mut node_origins = Vec::new();
        let mut node_names = BTreeSet::new();
        for (i, group) in f.nodes.iter().enumerate() {
            let origin = format!("nodes[{i}]");
            for node in self.node_group(group, &origin, &mut node_names)? {
                nodes.push(node);
                node_origins.push(origin.clone());
            }
        }

        let traces_dir = f.traces.as_deref().unwrap_or(DEFAULT_TRACES);
        let samples = (duration as f64 / TRACE_SAMPLE_SECS).ceil() as usize + 2;
        let mut traces = None;
        let mut vms = Vec::new();
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (i, group) in f.vms.iter().enumerate() {
            let origin = format!("vms[{i}]");
            let defs = self.vm_group(group, &origin, &nodes, (traces_dir, samples, &mut traces))?;
            let label = group.name.clone().or_else(|| group.prefix.clone()).unwrap_or_default();
            groups.entry(label).or_default().extend(defs.iter().map(|d| d.vm.name.clone()));
            vms.extend(defs);
        }

        let events = self.events(&f.events, duration, &mut node_names, &groups)?;
        Ok(Scenario {
            path: self.path.to_path_buf(),
            name,
            description: f.description.unwrap_or_default(),
            duration,
            step,
            interval,
            seed: f.seed,
            pool,
            rules,
            migration,
            ha_restart_delay,
            ping_pong_window,
            nodes,
            node_origins,
            vms,
            events,
            index,
        })
    }

    fn pool(&self, p: &PoolSpec, name: &str) -> R<PoolSettings> {
        let c = p.concurrency.as_ref();
        let fields = PoolFields {
            automation: p.automation,
            migration_threshold: p.migration_threshold,
            interval_secs: p.interval.map(|d| d.0),
            per_pool: c.and_then(|c| c.per_pool).map(|l| l.0),
            per_node_outbound: c.and_then(|c| c.per_node_outbound).map(|l| l.0),
            per_node_inbound: c.and_then(|c| c.per_node_inbound).map(|l| l.0),
            cpu_baseline: p.cpu_baseline.clone(),
            max_migrations_per_pass: p.max_migrations_per_pass.map(i64::from),
            max_moves_per_vm_per_day: p.max_moves_per_vm_per_day.map(i64::from),
            cooldown_secs: p.cooldown.map(|d| d.0),
        };
        let name = p.name.clone().unwrap_or_else(|| name.to_string());
        match kubedrs_spec::pool::build(&name, &fields, "pool") {
            Ok(built) => Ok(built.settings),
            // Pointed at the first field; every problem listed.
            Err(errors) => {
                let all = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
                let first = errors[0].field.trim_start_matches("pool.").to_string();
                let message = if errors.len() == 1 { errors[0].message.clone() } else { all };
                Err(self.err(&format!("pool.{first}"), message))
            }
        }
    }

    fn selector(&self, field: &str, s: &SelectorSpec) -> R<Selector> {
        for (i, e) in s.match_expressions.iter().enumerate() {
            let needs_values = matches!(e.operator, SelectorOperator::In | SelectorOperator::NotIn);
            if needs_values == e.values.is_empty() {
                let what =
                    if needs_values { "In and NotIn need values" } else { "Exists and DoesNotExist take no values" };
                return Err(self.err(&format!("{field}.matchExpressions[{i}].values"), what));
            }
        }
        Ok(Selector {
            match_labels: s.match_labels.clone(),
            match_expressions: s
                .match_expressions
                .iter()
                .map(|e| SelectorRequirement { key: e.key.clone(), operator: e.operator, values: e.values.clone() })
                .collect(),
        })
    }

    fn rules(&self, specs: &[RuleSpec]) -> R<Vec<Rule>> {
        let mut names = BTreeSet::new();
        let mut rules = Vec::new();
        for (i, r) in specs.iter().enumerate() {
            let field = format!("pool.rules[{i}]");
            if r.name.is_empty() || !names.insert(r.name.clone()) {
                return Err(self
                    .err(&format!("{field}.name"), format!("{:?}: rule names must be unique and not empty", r.name)));
            }
            let vm_selector = self.selector(&format!("{field}.vmSelector"), &r.vm_selector)?;
            let kind = match (r.kind, &r.node_selector) {
                (RuleType::VMNodeAffinity, Some(ns)) => RuleKind::VMNodeAffinity {
                    vm_selector,
                    node_selector: self.selector(&format!("{field}.nodeSelector"), ns)?,
                },
                (RuleType::VMNodeAffinity, None) => {
                    return Err(self.err(&format!("{field}.nodeSelector"), "VMNodeAffinity needs a nodeSelector"));
                }
                (_, Some(_)) => {
                    return Err(
                        self.err(&format!("{field}.nodeSelector"), "only VMNodeAffinity rules take a nodeSelector")
                    );
                }
                (RuleType::VMAffinity, None) => RuleKind::VMAffinity { vm_selector },
                (RuleType::VMAntiAffinity, None) => RuleKind::VMAntiAffinity { vm_selector },
            };
            rules.push(Rule { name: r.name.clone(), kind, enforcement: r.enforcement.unwrap_or_default() });
        }
        Ok(rules)
    }

    fn migration(&self, m: &MigrationSpec) -> R<MigrationModel> {
        let d = MigrationModel::default();
        let bandwidth = m.bandwidth.map(|b| b.0 as f64).unwrap_or(d.bandwidth);
        if bandwidth < (1 << 20) as f64 {
            return Err(self.err("migration.bandwidth", "is below 1Mi per second: give bytes per second, e.g. 1Gi"));
        }
        let timeout = m.completion_timeout_per_gib.map(f64::from).unwrap_or(d.timeout_per_gib);
        if timeout <= 0.0 {
            return Err(self.err("migration.completionTimeoutPerGiB", "must be a positive number of seconds"));
        }
        Ok(MigrationModel {
            bandwidth,
            setup_secs: m.setup.map(|d| d.0).unwrap_or(d.setup_secs),
            max_downtime_secs: m.max_downtime.map(|d| d.0).unwrap_or(d.max_downtime_secs),
            timeout_per_gib: timeout,
            failure_probability: m.failure_probability.map(|f| f.0).unwrap_or(0.0),
        })
    }

    /// `name`, or `prefix-1..prefix-count`.
    fn names(&self, field: &str, name: &Option<String>, prefix: &Option<String>, count: Option<u32>) -> R<Vec<String>> {
        match (name, prefix, count) {
            (Some(n), None, None | Some(1)) if !n.is_empty() => Ok(vec![n.clone()]),
            (None, Some(p), Some(c)) if !p.is_empty() && (1..=100_000).contains(&c) => {
                Ok((1..=c).map(|i| format!("{p}-{i}")).collect())
            }
            (None, Some(_), Some(c)) if c == 0 || c > 100_000 => {
                Err(self.err(&format!("{field}.count"), format!("{c} is out of range: 1..=100000")))
            }
            (None, Some(_), None) => Err(self.err(&format!("{field}.count"), "a prefix needs a count")),
            (Some(_), Some(_), _) => {
                Err(self.err(&format!("{field}.prefix"), "give either name (one) or prefix and count, not both"))
            }
            (Some(_), None, Some(_)) => {
                Err(self.err(&format!("{field}.count"), "count goes with prefix (prefix-1 .. prefix-count), not name"))
            }
            _ => Err(self.err(&format!("{field}.name"), "give a name (one) or a prefix and a count")),
        }
    }

    fn node_group(&self, g: &NodeGroup, field: &str, taken: &mut BTreeSet<String>) -> R<Vec<Node>> {
        if g.cpu.0 == 0 {
            return Err(self.err(&format!("{field}.cpu"), "a node needs some CPU"));
        }
        if g.memory.0 == 0 {
            return Err(self.err(&format!("{field}.memory"), "a node needs some memory"));
        }
        let (mut models, mut vendor, mut host_model) = (BTreeSet::new(), None, g.host_model.clone());
        if let Some(wanted) = &g.generation {
            let found = cpu::generation(wanted).ok_or_else(|| {
                self.err(
                    &format!("{field}.generation"),
                    format!("unknown CPU generation {wanted:?}; known: {}", cpu::names()),
                )
            })?;
            models = found.models();
            vendor = Some(found.vendor().to_string());
            host_model = host_model.or(Some(found.newest.to_string()));
        }
        models.extend(g.cpu_models.iter().cloned());
        let mut nodes = Vec::new();
        for name in self.names(field, &g.name, &g.prefix, g.count)? {
            if !taken.insert(name.clone()) {
                return Err(self.err(
                    &format!("{field}.{}", if g.name.is_some() { "name" } else { "prefix" }),
                    format!("node {name:?} is defined twice"),
                ));
            }
            let mut labels = g.labels.clone();
            labels.insert("kubernetes.io/hostname".into(), name.clone());
            nodes.push(Node {
                name,
                capacity: Resources::new(g.cpu.0, g.memory.0),
                state: NodeState::Ready,
                labels,
                cpu_vendor: vendor.clone(),
                cpu_models: models.clone(),
                host_model: host_model.clone(),
            });
        }
        Ok(nodes)
    }

    fn pattern(
        &self,
        field: &str,
        spec: &PatternSpec,
        member: usize,
        is_memory: bool,
        traces: (&str, usize, &mut Option<TraceStore>),
    ) -> R<Pattern> {
        Ok(match spec {
            PatternSpec::Steady(f) => Pattern::Steady(f.0),
            PatternSpec::Diurnal(d) => {
                let period = d.period.map(|p| p.0).unwrap_or(86400.0);
                if period <= 0.0 {
                    return Err(self.err(&format!("{field}.diurnal.period"), "must be longer than 0s"));
                }
                if d.min.0 > d.max.0 {
                    return Err(self.err(&format!("{field}.diurnal.min"), "is above max"));
                }
                Pattern::Diurnal {
                    min: d.min.0,
                    max: d.max.0,
                    period,
                    peak: d.peak_at.map(|p| p.0).unwrap_or(14.0 * 3600.0),
                }
            }
            PatternSpec::Spikes(s) => {
                if let Some(every) = s.every
                    && every.0 <= s.duration.0
                {
                    return Err(self.err(&format!("{field}.spikes.every"), "must be longer than the spike's duration"));
                }
                Pattern::Spikes {
                    base: s.base.0,
                    level: s.level.0,
                    at: s.at.0,
                    duration: s.duration.0,
                    every: s.every.map(|e| e.0),
                }
            }
            PatternSpec::Planetlab(p) => {
                if is_memory {
                    return Err(self.err(
                        field,
                        "PlanetLab traces have CPU only: give memory a fraction, a pattern or a bitbrains trace",
                    ));
                }
                let store = self.trace_store(&format!("{field}.planetlab.day"), traces)?;
                let samples = store
                    .planetlab(&p.day.0, p.first + member)
                    .map_err(|m| self.err(&format!("{field}.planetlab.day"), m))?;
                Pattern::Trace { samples, scale: self.scale(&format!("{field}.planetlab.scale"), p.scale)? }
            }
            PatternSpec::Bitbrains(b) => {
                let id = b.first.unwrap_or(1) as usize + member;
                if !(1..=500).contains(&id) {
                    return Err(self.err(
                        &format!("{field}.bitbrains.first"),
                        format!("VM {id} does not exist: Bitbrains VMs are 1..=500"),
                    ));
                }
                let store = self.trace_store(&format!("{field}.bitbrains"), traces)?;
                let vm = store.bitbrains(id as u32).map_err(|m| self.err(&format!("{field}.bitbrains.first"), m))?;
                let samples = if is_memory { vm.memory.clone() } else { vm.cpu.clone() };
                Pattern::Trace { samples, scale: self.scale(&format!("{field}.bitbrains.scale"), b.scale)? }
            }
        })
    }

    fn scale(&self, field: &str, s: Option<f64>) -> R<f64> {
        match s {
            None => Ok(1.0),
            Some(v) if v.is_finite() && v > 0.0 => Ok(v),
            Some(v) => Err(self.err(field, format!("{v} is not a positive number"))),
        }
    }

    /// The trace folder, found the first time a trace is used.
    fn trace_store<'s>(&self, field: &str, traces: (&str, usize, &'s mut Option<TraceStore>)) -> R<&'s mut TraceStore> {
        let (dir, samples, store) = traces;
        if store.is_none() {
            let found = find_dir(self.path, dir).ok_or_else(|| {
                self.err(
                    field,
                    format!(
                        "trace folder {dir:?} not found beside the scenario or in any folder above it (set `traces:`)"
                    ),
                )
            })?;
            *store = Some(TraceStore::new(found, samples));
        }
        store.as_mut().ok_or_else(|| self.err(field, "trace folder unavailable"))
    }

    fn vm_group(
        &mut self,
        g: &VmGroup,
        field: &str,
        nodes: &[Node],
        traces: (&str, usize, &mut Option<TraceStore>),
    ) -> R<Vec<VmDef>> {
        let (trace_dir, samples, store) = traces;
        if g.vcpus == 0 {
            return Err(self.err(&format!("{field}.vcpus"), "a VM needs at least 1 vCPU"));
        }
        if g.memory.0 < (1 << 20) {
            return Err(self.err(&format!("{field}.memory"), "a VM needs at least 1Mi of memory"));
        }
        let req = g.requests.unwrap_or_default();
        let lim = g.limits.unwrap_or_default();
        let cpu_req = req.cpu.map(|c| c.0).unwrap_or(g.vcpus as u64 * 100);
        let mem_req = req.memory.map(|m| m.0).unwrap_or(g.memory.0);
        for (what, r, l) in [("cpu", cpu_req, lim.cpu.map(|c| c.0)), ("memory", mem_req, lim.memory.map(|m| m.0))] {
            if let Some(l) = l
                && l < r
            {
                return Err(self.err(
                    &format!("{field}.limits.{what}"),
                    "is below the request: Kubernetes needs limit >= request",
                ));
            }
        }
        let shares = g.shares.unwrap_or_default();
        let (host_cpu, model) = match g.cpu_model.as_deref() {
            None => (None, CpuRequirement::Any),
            Some("host-model") => (Some(HostCpu::Model), CpuRequirement::Any),
            Some("host-passthrough") => (Some(HostCpu::Passthrough), CpuRequirement::Any),
            Some("") => {
                return Err(
                    self.err(&format!("{field}.cpuModel"), "is empty: use a CPU model, host-model or host-passthrough")
                );
            }
            Some(m) => (None, CpuRequirement::Model(m.to_string())),
        };
        let mut placement: Vec<String> = g.node.iter().cloned().collect();
        if !g.nodes.is_empty() {
            if g.node.is_some() {
                return Err(self.err(&format!("{field}.nodes"), "give node or nodes, not both"));
            }
            placement = g.nodes.clone();
        }
        for (i, n) in placement.iter().enumerate() {
            let f = if g.node.is_some() { format!("{field}.node") } else { format!("{field}.nodes[{i}]") };
            if !nodes.iter().any(|x| &x.name == n) {
                return Err(self.err(
                    &f,
                    format!("no node named {n:?}; nodes are {}", list(nodes.iter().map(|n| n.name.as_str()))),
                ));
            }
        }
        let w = g.workload.clone().unwrap_or(WorkloadSpec { cpu: None, memory: None, noise: None, stagger: None });
        let names = self.names(field, &g.name, &g.prefix, g.count)?;
        let mut defs = Vec::new();
        for (member, name) in names.into_iter().enumerate() {
            if !self.vm_names.insert(name.clone()) {
                let f = if g.name.is_some() { format!("{field}.name") } else { format!("{field}.prefix") };
                return Err(self.err(&f, format!("VM {name:?} is defined twice: VM names must be unique")));
            }
            let default = Workload::default();
            let cpu = match &w.cpu {
                Some(p) => {
                    self.pattern(&format!("{field}.workload.cpu"), p, member, false, (trace_dir, samples, &mut *store))?
                }
                None => default.cpu,
            };
            let memory = match &w.memory {
                Some(p) => self.pattern(
                    &format!("{field}.workload.memory"),
                    p,
                    member,
                    true,
                    (trace_dir, samples, &mut *store),
                )?,
                None => default.memory,
            };
            let node = if placement.is_empty() { None } else { Some(placement[member % placement.len()].clone()) };
            let mut cpu_requirement = model.clone();
            if let (Some(kind), Some(n)) = (host_cpu, &node) {
                let host = nodes.iter().find(|x| &x.name == n).and_then(|x| x.host_model.clone()).ok_or_else(|| {
                    self.err(
                        &format!("{field}.cpuModel"),
                        format!(
                            "{} needs the host model of node {n:?}: give its group a generation or hostModel",
                            g.cpu_model.as_deref().unwrap_or("")
                        ),
                    )
                })?;
                cpu_requirement = match kind {
                    HostCpu::Model => CpuRequirement::HostModel(host),
                    HostCpu::Passthrough => CpuRequirement::HostPassthrough(host),
                };
            }
            let mut labels = g.labels.clone();
            labels.entry("kubedrs.io/vm".into()).or_insert_with(|| name.clone());
            let vm = Vm {
                name,
                node,
                namespace: g.namespace.clone().unwrap_or_else(|| "default".into()),
                vcpus: g.vcpus,
                memory_size_bytes: g.memory.0,
                cpu: Allocation {
                    reservation: cpu_req,
                    limit: lim.cpu.map(|c| c.0),
                    shares: shares.cpu.map(|s| s.0).unwrap_or_default(),
                },
                memory: Allocation {
                    reservation: mem_req,
                    limit: lim.memory.map(|m| m.0),
                    shares: shares.memory.map(|s| s.0).unwrap_or_default(),
                },
                demand: Resources::ZERO,
                dirty_rate_bytes_per_sec: g.dirty_rate.map(|d| d.0).unwrap_or(DEFAULT_DIRTY_RATE),
                cpu_requirement,
                labels,
                automation: g.automation.unwrap_or_default(),
                live_migratable: g.live_migratable.unwrap_or(true),
            };
            let workload = Workload {
                cpu,
                memory,
                noise: w.noise.map(|n| n.0).unwrap_or(0.0),
                shift: w.stagger.map(|s| s.0).unwrap_or(0.0) * member as f64,
            };
            defs.push(VmDef {
                vm,
                host_cpu,
                powered_on: g.powered_on.unwrap_or(true),
                workload,
                group: g.name.clone().or_else(|| g.prefix.clone()).unwrap_or_default(),
                origin: field.to_string(),
            });
        }
        Ok(defs)
    }

    fn events(
        &self,
        specs: &[EventSpec],
        duration: u64,
        node_names: &mut BTreeSet<String>,
        groups: &BTreeMap<String, Vec<String>>,
    ) -> R<Vec<Event>> {
        // Check in time order, so a node added by an earlier event can be named by a later one.
        let mut order: Vec<usize> = (0..specs.len()).collect();
        order.sort_by(|a, b| specs[*a].at.0.total_cmp(&specs[*b].at.0).then(a.cmp(b)));
        let mut events = Vec::new();
        for i in order {
            let e = &specs[i];
            let field = format!("events[{i}]");
            let at = self.whole_secs(&format!("{field}.at"), e.at, 0.0)?;
            if at > duration {
                return Err(
                    self.err(&format!("{field}.at"), format!("{at}s is after the end of the run ({duration}s)"))
                );
            }
            let allowed: &[&str] = match e.action {
                Action::EnterMaintenance | Action::ExitMaintenance | Action::FailNode | Action::RecoverNode => {
                    &["node"]
                }
                Action::AddNodes => &["nodes"],
                Action::PowerOn | Action::PowerOff => &["vm", "group"],
                Action::Set => &["vm", "group", "cpuShares", "memoryShares", "requests", "limits"],
            };
            let given = [
                ("node", e.node.is_some()),
                ("nodes", e.nodes.is_some()),
                ("vm", e.vm.is_some()),
                ("group", e.group.is_some()),
                ("cpuShares", e.cpu_shares.is_some()),
                ("memoryShares", e.memory_shares.is_some()),
                ("requests", e.requests.is_some()),
                ("limits", e.limits.is_some()),
            ];
            if let Some((name, _)) = given.iter().find(|(n, g)| *g && !allowed.contains(n)) {
                return Err(
                    self.err(&format!("{field}.{name}"), format!("{:?} takes only {}", e.action, allowed.join(", ")))
                );
            }
            let node = |s: &Self| -> R<String> {
                let n = e
                    .node
                    .clone()
                    .ok_or_else(|| s.err(&format!("{field}.node"), format!("{:?} needs a node", e.action)))?;
                if !node_names.contains(&n) {
                    return Err(s.err(
                        &format!("{field}.node"),
                        format!("no node named {n:?}; nodes are {}", list(node_names.iter().map(String::as_str))),
                    ));
                }
                Ok(n)
            };
            let vms = |s: &Self| -> R<(Vec<String>, String)> {
                match (&e.vm, &e.group) {
                    (Some(v), None) if s.vm_names.contains(v) => Ok((vec![v.clone()], v.clone())),
                    (Some(v), None) => Err(s.err(&format!("{field}.vm"), format!("no VM named {v:?}"))),
                    (None, Some(g)) => match groups.get(g) {
                        Some(names) => Ok((names.clone(), format!("group {g}"))),
                        None => Err(s.err(
                            &format!("{field}.group"),
                            format!("no VM group named {g:?}; groups are {}", list(groups.keys().map(String::as_str))),
                        )),
                    },
                    _ => Err(s.err(
                        &format!("{field}.vm"),
                        "give vm (one VM) or group (a VM group's name or prefix), one of them",
                    )),
                }
            };
            let kind = match e.action {
                Action::EnterMaintenance => EventKind::EnterMaintenance(node(self)?),
                Action::ExitMaintenance => EventKind::ExitMaintenance(node(self)?),
                Action::FailNode => EventKind::FailNode(node(self)?),
                Action::RecoverNode => EventKind::RecoverNode(node(self)?),
                Action::AddNodes => {
                    let g = e
                        .nodes
                        .as_ref()
                        .ok_or_else(|| self.err(&format!("{field}.nodes"), "addNodes needs a node group"))?;
                    EventKind::AddNodes(self.node_group(g, &format!("{field}.nodes"), node_names)?)
                }
                Action::PowerOn => EventKind::PowerOn(vms(self)?.0),
                Action::PowerOff => EventKind::PowerOff(vms(self)?.0),
                Action::Set => {
                    let (names, target) = vms(self)?;
                    let pair = |r: &Option<ResourcesSpec>| r.map(|r| (r.cpu.map(|c| c.0), r.memory.map(|m| m.0)));
                    let change = Change {
                        cpu_shares: e.cpu_shares.map(|s| s.0),
                        memory_shares: e.memory_shares.map(|s| s.0),
                        requests: pair(&e.requests),
                        limits: pair(&e.limits),
                    };
                    if change == Change::default() {
                        return Err(self.err(
                            &format!("{field}.action"),
                            "set changes nothing: give cpuShares, memoryShares, requests or limits",
                        ));
                    }
                    EventKind::Set { vms: names, target, change }
                }
            };
            events.push(Event { at, kind, origin: field });
        }
        Ok(events)
    }
}

/// `dir` if absolute, else the first `<folder>/<dir>` that is a folder, from the scenario's folder upwards.
pub(crate) fn find_dir(scenario: &Path, dir: &str) -> Option<PathBuf> {
    let d = Path::new(dir);
    if d.is_absolute() {
        return d.is_dir().then(|| d.to_path_buf());
    }
    let folder = scenario.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let start = std::fs::canonicalize(folder).ok()?;
    start.ancestors().map(|a| a.join(d)).find(|p| p.is_dir())
}

/// A short list of names for messages.
pub(crate) fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<&str> = names.collect();
    if all.len() <= 8 { all.join(", ") } else { format!("{}, ... ({} in all)", all[..6].join(", "), all.len()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> R<Scenario> {
        Scenario::parse(Path::new("test.yaml"), text)
    }

    const BASE: &str = "duration: 1h\nnodes:\n- prefix: n\n  count: 2\n  cpu: 16\n  memory: 64Gi\n";

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), 90.0);
        assert_eq!(parse_duration("1h30m").unwrap(), 5400.0);
        assert_eq!(parse_duration("2d").unwrap(), 172800.0);
        assert_eq!(parse_duration("250ms").unwrap(), 0.25);
        assert_eq!(parse_duration("02:15").unwrap(), 8100.0);
        assert_eq!(parse_duration("30").unwrap(), 30.0);
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("-5m").unwrap_err().contains("negative"));
    }

    #[test]
    fn fractions() {
        assert_eq!(parse_fraction("40%").unwrap(), 0.4);
        assert_eq!(parse_fraction("0.25").unwrap(), 0.25);
        assert!(parse_fraction("140%").is_err());
    }

    #[test]
    fn minimal_scenario_expands_groups() {
        let s = parse(&format!("{BASE}vms:\n- prefix: web\n  count: 3\n  vcpus: 2\n  memory: 4Gi\n")).unwrap();
        assert_eq!(s.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["n-1", "n-2"]);
        assert_eq!(s.vms.len(), 3);
        assert_eq!(s.vms[2].vm.name, "web-3");
        assert_eq!(s.vms[0].vm.cpu.reservation, 200, "KubeVirt's default request is vcpus/10");
        assert_eq!(s.vms[0].vm.memory.reservation, 4 << 30);
        assert_eq!((s.step, s.interval, s.duration), (60, 300, 3600));
    }

    #[test]
    fn patterns_parse_in_both_forms() {
        let s = parse(&format!(
            "{BASE}vms:\n- name: a\n  vcpus: 2\n  memory: 4Gi\n  workload:\n    cpu: {{diurnal: {{min: 10%, max: 0.9}}}}\n    memory: 30%\n"
        ))
        .unwrap();
        assert!(matches!(s.vms[0].workload.cpu, Pattern::Diurnal { .. }));
        assert_eq!(s.vms[0].workload.memory, Pattern::Steady(0.3));
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = parse("duration: 1h\nnodes: [\n").unwrap_err();
        assert!(e.line.is_some(), "{e}");
        assert!(e.to_string().starts_with("test.yaml:"), "{e}");
    }

    #[test]
    fn unknown_field_names_field_line_and_choices() {
        let e = parse(&format!("{BASE}  colour: red\n")).unwrap_err();
        assert_eq!(e.line, Some(7), "{e}");
        assert_eq!(e.field, "nodes[0]");
        assert!(e.message.contains("unknown field `colour`") && e.message.contains("expected one of"), "{e}");
    }

    #[test]
    fn bad_quantity_points_at_it() {
        let e = parse("duration: 1h\nnodes:\n- name: a\n  cpu: 16\n  memory: -4Gi\n").unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (Some(5), "nodes[0].memory"), "{e}");
        assert!(e.message.contains("negative"), "{e}");
    }

    #[test]
    fn semantic_errors_find_their_line() {
        let e = parse(&format!("{BASE}events:\n- at: 10m\n  action: enterMaintenance\n  node: n-9\n")).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (Some(10), "events[0].node"), "{e}");
        assert!(e.message.contains("n-1, n-2"), "{e}");

        let e = parse(&format!("{BASE}pool:\n  migrationThreshold: 7\n")).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (Some(8), "pool.migrationThreshold"), "{e}");

        let e =
            parse(&format!("{BASE}vms:\n- name: a\n  vcpus: 1\n  memory: 1Gi\n- name: a\n  vcpus: 1\n  memory: 1Gi\n"))
                .unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (Some(11), "vms[1].name"), "{e}");
        assert!(e.message.contains("twice"), "{e}");
    }

    #[test]
    fn events_may_name_nodes_added_earlier() {
        let ok = format!(
            "{BASE}events:\n- at: 30m\n  action: failNode\n  node: x\n- at: 10m\n  action: addNodes\n  nodes: {{name: x, cpu: 8, memory: 8Gi}}\n"
        );
        let s = parse(&ok).unwrap();
        assert!(matches!(s.events[0].kind, EventKind::AddNodes(_)));
        let bad = ok.replace("at: 30m", "at: 5m");
        assert_eq!(parse(&bad).unwrap_err().field, "events[0].node");
    }
}
