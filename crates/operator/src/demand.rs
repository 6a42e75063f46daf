//! The demand window: usage samples per VM (from metrics.k8s.io) smoothed into the demand observe puts in
//! the snapshot. The one piece of state observe reads that is not a Kubernetes object; kept by the
//! inventory's poller, read by every pass.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::pod::CachedPod;
use kubedrs_engine::Resources;

use crate::metrics_api::PodMetrics;
use crate::observe::{Warning, launcher_vmi_key, secs};

/// Smoothed demand per VM from usage samples: the max of a short and a long moving average, so it rises
/// fast (a burst shows within the short window) and falls slowly (it takes the long window to forget).
/// Design note §1. Defaults: [`kubedrs_engine::DEMAND_WINDOWS_SECS`], the windows the simulator uses too.
#[derive(Debug, Clone, PartialEq)]
pub struct DemandWindow {
    pub short_secs: u64,
    pub long_secs: u64,
    samples: BTreeMap<String, VecDeque<(u64, Resources)>>,
}

impl Default for DemandWindow {
    fn default() -> Self {
        let (short, long) = kubedrs_engine::DEMAND_WINDOWS_SECS;
        DemandWindow::new(short, long)
    }
}

impl DemandWindow {
    pub fn new(short_secs: u64, long_secs: u64) -> Self {
        DemandWindow { short_secs, long_secs: long_secs.max(short_secs), samples: BTreeMap::new() }
    }

    /// Adds a usage sample of `vm` (`namespace/name`) taken at `at` (seconds). Samples older than the long
    /// window are dropped; a sample not newer than the last one of the VM is ignored (metrics repeat).
    pub fn record(&mut self, vm: &str, at: u64, usage: Resources) {
        let q = self.samples.entry(vm.to_string()).or_default();
        if q.back().is_some_and(|(t, _)| *t >= at) {
            return;
        }
        q.push_back((at, usage));
        let horizon = at.saturating_sub(self.long_secs);
        while q.front().is_some_and(|(t, _)| *t < horizon) {
            q.pop_front();
        }
    }

    /// Records the usage of every virt-launcher pod in `metrics` (pods matched to their VMI through
    /// `pods`). Returns warnings for metrics that do not parse.
    pub fn record_pod_metrics(&mut self, pods: &[Arc<CachedPod>], metrics: &[PodMetrics], now: u64) -> Vec<Warning> {
        let owner: BTreeMap<(String, String), String> = pods
            .iter()
            .filter_map(|p| Some(((p.metadata.namespace.clone()?, p.metadata.name.clone()?), launcher_vmi_key(p)?)))
            .collect();
        let mut warnings = Vec::new();
        for m in metrics {
            let id = (m.metadata.namespace.clone().unwrap_or_default(), m.metadata.name.clone().unwrap_or_default());
            let Some(vm) = owner.get(&id) else { continue };
            match m.usage() {
                Ok(u) => self.record(vm, m.timestamp.as_ref().map_or(now, secs), u),
                Err(e) => warnings.push(Warning {
                    kind: "Pod",
                    namespace: Some(id.0.clone()),
                    name: id.1.clone(),
                    reason: "BadMetrics",
                    message: format!("metrics.k8s.io usage: {e}"),
                }),
            }
        }
        warnings
    }

    /// Smoothed demand of `vm` at `now`, or `None` without a sample in the long window.
    pub fn demand(&self, vm: &str, now: u64) -> Option<Resources> {
        let q = self.samples.get(vm)?;
        let avg = |window: u64| -> Option<Resources> {
            let from = now.saturating_sub(window);
            let (n, cpu, mem) =
                q.iter().filter(|(t, _)| *t >= from && *t <= now).fold((0u64, 0u128, 0u128), |(n, c, m), (_, r)| {
                    (n + 1, c + u128::from(r.cpu_millis), m + u128::from(r.memory_bytes))
                });
            (n > 0).then(|| Resources::new((cpu / u128::from(n)) as u64, (mem / u128::from(n)) as u64))
        };
        match (avg(self.short_secs), avg(self.long_secs)?) {
            (Some(s), l) => Some(Resources::new(s.cpu_millis.max(l.cpu_millis), s.memory_bytes.max(l.memory_bytes))),
            (None, l) => Some(l),
        }
    }

    /// Forgets VMs not in `live` (deleted VMIs).
    pub fn retain(&mut self, live: &BTreeSet<String>) {
        self.samples.retain(|k, _| live.contains(k));
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}
