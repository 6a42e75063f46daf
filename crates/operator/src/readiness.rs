//! `/readyz`: are the caches a pass reads fresh?
//!
//! Every reflector reports its watch events and errors here, and a probe asks the API server for its
//! version every [`PROBE_EVERY`] with a [`PROBE_TIMEOUT`]. The operator is ready when
//! - every reflector has listed its objects, and is not re-listing after a watch error;
//! - no reflector had a watch error in the last [`QUIET`] without an event since (a reflector retries a
//!   failed watch at least every [`WATCH_BACKOFF_MAX`], and each failed try is an error: [`QUIET`] without
//!   one means its watch runs again);
//! - the API server answered the probe within the last [`PROBE_STALE`].
//!
//! The pure [`ReadinessState`] takes the clock as an argument (unit-tested); [`Readiness`] shares it.
//! Passes do not act while the operator is not ready: decisions on a stale cache would repeat writes the
//! cache does not show yet, or miss changes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::utils::Backoff;

/// How often the API server is probed.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);
/// Longest wait for the probe's answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// A probe answer older than this does not count.
pub const PROBE_STALE: Duration = Duration::from_secs(5);
/// Longest wait between two tries of a failed watch.
pub const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Time without a watch error after which a reflector's watch counts as running again.
pub const QUIET: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Default)]
struct Reflector {
    listed: bool,
    relisting: bool,
    last_error: Option<(Instant, String)>,
    last_event: Option<Instant>,
}

/// The readiness state machine (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct ReadinessState {
    reflectors: BTreeMap<&'static str, Reflector>,
    api_ok: Option<Instant>,
    api_error: Option<String>,
}

/// What a reflector saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchSignal {
    /// A (re)list started.
    ListStarted,
    /// The list ended: the cache holds every object.
    Listed,
    /// An object changed (or was listed): the watch is live.
    Event,
}

impl ReadinessState {
    /// A reflector that must list before the operator is ready.
    pub fn register(&mut self, kind: &'static str) {
        self.reflectors.entry(kind).or_default();
    }

    pub fn signal(&mut self, kind: &'static str, s: WatchSignal, now: Instant) {
        let r = self.reflectors.entry(kind).or_default();
        r.last_event = Some(now);
        match s {
            WatchSignal::ListStarted => r.relisting = r.listed,
            WatchSignal::Listed => {
                r.listed = true;
                r.relisting = false;
            }
            WatchSignal::Event => {}
        }
    }

    pub fn watch_error(&mut self, kind: &'static str, error: String, now: Instant) {
        self.reflectors.entry(kind).or_default().last_error = Some((now, error));
    }

    pub fn probe(&mut self, result: Result<(), String>, now: Instant) {
        match result {
            Ok(()) => {
                self.api_ok = Some(now);
                self.api_error = None;
            }
            Err(e) => self.api_error = Some(e),
        }
    }

    /// `Ok` when ready, else every reason it is not.
    pub fn check(&self, now: Instant) -> Result<(), Vec<String>> {
        let mut why = Vec::new();
        match self.api_ok {
            Some(t) if now.saturating_duration_since(t) <= PROBE_STALE => {}
            _ => why.push(format!(
                "the API server did not answer lately{}",
                self.api_error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
            )),
        }
        for (kind, r) in &self.reflectors {
            if !r.listed {
                why.push(format!("{kind}: not listed yet"));
            } else if r.relisting {
                why.push(format!("{kind}: listing again after a watch gap"));
            } else if let Some((at, e)) = &r.last_error
                && r.last_event.is_none_or(|ev| ev < *at)
                && now.saturating_duration_since(*at) < QUIET
            {
                why.push(format!("{kind}: watch failing: {e}"));
            }
        }
        if why.is_empty() { Ok(()) } else { Err(why) }
    }
}

/// The shared readiness (see [`ReadinessState`]).
#[derive(Clone, Default)]
pub struct Readiness(Arc<Mutex<ReadinessState>>);

impl Readiness {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReadinessState> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    pub fn register(&self, kind: &'static str) {
        self.lock().register(kind);
    }
    pub fn signal(&self, kind: &'static str, s: WatchSignal) {
        self.lock().signal(kind, s, Instant::now());
    }
    pub fn watch_error(&self, kind: &'static str, error: String) {
        self.lock().watch_error(kind, error, Instant::now());
    }
    pub fn check(&self) -> Result<(), Vec<String>> {
        self.lock().check(Instant::now())
    }
    pub fn is_ready(&self) -> bool {
        self.check().is_ok()
    }

    /// Probes the API server every [`PROBE_EVERY`] until the process ends.
    pub async fn probe_forever(self, client: kube::Client) {
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_ready = false;
        loop {
            tick.tick().await;
            let result = match tokio::time::timeout(PROBE_TIMEOUT, client.apiserver_version()).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
            };
            self.lock().probe(result, Instant::now());
            let now = self.check();
            match (&now, was_ready) {
                (Ok(()), false) => tracing::info!("ready: caches fresh and the API server answers"),
                (Err(why), true) => tracing::warn!(why = %why.join("; "), "not ready"),
                _ => {}
            }
            was_ready = now.is_ok();
        }
    }
}

/// The reflectors' retry delay after a watch error: 250 ms doubling to [`WATCH_BACKOFF_MAX`] (kube's default
/// grows to 30 s, which kept the caches stale for most of a minute after the API server came back).
#[derive(Debug, Clone)]
pub struct WatchBackoff {
    next: Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff { next: Duration::from_millis(250) }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let d = self.next;
        self.next = (d * 2).min(WATCH_BACKOFF_MAX);
        Some(d)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        *self = WatchBackoff::default();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn listed(t0: Instant) -> ReadinessState {
        let mut s = ReadinessState::default();
        s.register("Node");
        s.register("Pod");
        s.probe(Ok(()), t0);
        for k in ["Node", "Pod"] {
            s.signal(k, WatchSignal::ListStarted, t0);
            s.signal(k, WatchSignal::Listed, t0);
        }
        s
    }

    #[test]
    fn ready_only_once_every_reflector_listed_and_the_api_answers() {
        let t0 = Instant::now();
        let mut s = ReadinessState::default();
        s.register("Node");
        s.register("Pod");
        let why = s.check(t0).unwrap_err();
        assert_eq!(why.len(), 3, "{why:?}");
        s.probe(Ok(()), t0);
        s.signal("Node", WatchSignal::Listed, t0);
        assert_eq!(s.check(t0).unwrap_err(), vec!["Pod: not listed yet".to_string()]);
        s.signal("Pod", WatchSignal::Listed, t0);
        assert!(s.check(t0).is_ok());
    }

    #[test]
    fn a_watch_error_makes_it_unready_until_the_watch_runs_again() {
        let t0 = Instant::now();
        let mut s = listed(t0);
        s.watch_error("Pod", "connection refused".into(), at(t0, 1000));
        s.probe(Ok(()), at(t0, 1000));
        let why = s.check(at(t0, 1500)).unwrap_err();
        assert!(why[0].contains("Pod: watch failing: connection refused"), "{why:?}");
        // An event after the error: the watch is live again.
        s.signal("Pod", WatchSignal::Event, at(t0, 2000));
        assert!(s.check(at(t0, 2000)).is_ok());
        // Another error, then silence: after QUIET the retried watch is running.
        s.watch_error("Pod", "connection refused".into(), at(t0, 3000));
        s.probe(Ok(()), at(t0, 7000));
        assert!(s.check(at(t0, 7000)).is_err());
        s.probe(Ok(()), at(t0, 3000) + QUIET);
        assert!(s.check(at(t0, 3000) + QUIET).is_ok());
    }

    #[test]
    fn a_relist_after_a_gap_is_not_ready_until_it_ends() {
        let t0 = Instant::now();
        let mut s = listed(t0);
        s.signal("Node", WatchSignal::ListStarted, at(t0, 100));
        s.signal("Node", WatchSignal::Event, at(t0, 200));
        assert_eq!(s.check(at(t0, 200)).unwrap_err(), vec!["Node: listing again after a watch gap".to_string()]);
        s.signal("Node", WatchSignal::Listed, at(t0, 300));
        assert!(s.check(at(t0, 300)).is_ok());
    }

    #[test]
    fn an_api_server_that_stops_answering_makes_it_unready_and_its_return_ready() {
        let t0 = Instant::now();
        let mut s = listed(t0);
        s.probe(Err("timed out".into()), at(t0, 2000));
        assert!(s.check(at(t0, 2000)).is_ok(), "one failed probe within PROBE_STALE of a good one");
        let late = t0 + PROBE_STALE + Duration::from_millis(1);
        let why = s.check(late).unwrap_err();
        assert!(why[0].contains("timed out"), "{why:?}");
        s.probe(Ok(()), late);
        assert!(s.check(late).is_ok());
    }

    #[test]
    fn the_watch_backoff_is_bounded_and_resets() {
        let mut b = WatchBackoff::default();
        let d: Vec<Duration> = b.by_ref().take(6).collect();
        assert_eq!(d[0], Duration::from_millis(250));
        assert!(d.iter().all(|d| *d <= WATCH_BACKOFF_MAX));
        assert_eq!(d[5], WATCH_BACKOFF_MAX);
        b.reset();
        assert_eq!(b.next(), Some(Duration::from_millis(250)));
    }
}
