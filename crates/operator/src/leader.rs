//! Which replica acts on which pool, on `coordination.k8s.io/v1` Leases, and the fence that stops a replica
//! before its Lease can expire.
//!
//! With `--leader-elect` the HostPools are shared out across the replicas: each pool has a Lease
//! `<lease-name>-pool-<pool>` in the operator's namespace, and only its holder acts on the pool (migrations,
//! bindings, node patches, status, Events). Each replica also holds a member Lease
//! `<lease-name>-member-<identity>`, so that the others know it lives. Every [`TICK`] a replica lists the
//! Leases, renews its own (every [`RENEW`]), and takes or gives up pools as [`crate::shards::rebalance`]
//! says. Another replica's Lease counts as expired once it has not changed for its duration on this
//! replica's monotonic clock (clocks of different machines are never compared), so a dead replica's pools
//! are taken over within [`LEASE`] plus a tick. A pool Lease is owned by its HostPool, a member Lease by its
//! Pod (`POD_UID`): the garbage collector deletes them with their owner.
//!
//! **Fencing**: a replica treats a pool as its own only until `last confirmed renewal + LEASE - MARGIN`,
//! counted from the moment it sent that renewal, on its monotonic clock ([`Fence`]). Another replica can
//! take the pool only after it saw the Lease unchanged for `LEASE`, later than that, so the old holder stops
//! acting [`MARGIN`] before anyone else may start, even when it cannot reach the API server or was frozen.
//! Every write of a pass goes through the pool's [`Fence`]d client, which refuses a write (any method but
//! GET, HEAD and OPTIONS) once the fence is down: the check is in one place, right before the request leaves.
//!
//! Without `--leader-elect` one process acts on every pool (one replica, or `kubedrs plan`).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference};
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};

use crate::crd::HostPool;
use crate::shards::{self, LEASE_KIND_LABEL, LEASE_SET_LABEL, Observed, View};

/// Lease duration: another replica takes a pool over once its Lease has not changed for this long.
pub const LEASE: Duration = Duration::from_secs(15);
/// A replica stops acting on a pool this long before its Lease could expire.
pub const MARGIN: Duration = Duration::from_secs(5);
/// A held Lease is renewed this often (so two renewals may fail before the fence goes down).
pub const RENEW: Duration = Duration::from_secs(4);
/// How often a replica lists the Leases, renews, takes and gives up pools.
pub const TICK: Duration = Duration::from_secs(2);

/// Whether this replica may write for one pool, on the monotonic clock. Cheap to clone and to ask.
#[derive(Debug, Clone)]
pub struct Fence(Arc<FenceState>);

#[derive(Debug)]
struct FenceState {
    base: Instant,
    /// Nanoseconds after `base` until which writes are allowed; 0: never.
    until: AtomicU64,
    /// Nanoseconds after `base` of the last confirmed renewal (when it was sent).
    renewed: AtomicU64,
    /// Tenures so far: a new one starts when the pool is taken from another replica or from nobody.
    term: AtomicU64,
}

impl Fence {
    /// A fence that is down until the first confirmed renewal.
    pub fn new() -> Fence {
        Fence(Arc::new(FenceState {
            base: Instant::now(),
            until: AtomicU64::new(0),
            renewed: AtomicU64::new(0),
            term: AtomicU64::new(0),
        }))
    }

    /// A fence that is always up (no election).
    pub fn always() -> Fence {
        let f = Fence::new();
        f.0.until.store(u64::MAX, Ordering::Release);
        f.0.term.store(1, Ordering::Release);
        f
    }

    fn offset(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.0.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The Lease write sent at `sent_at` was confirmed: writes are allowed until `sent_at + LEASE - MARGIN`.
    /// `new_tenure`: the pool was held by another replica or by nobody before (a new term).
    pub fn confirmed(&self, sent_at: Instant, new_tenure: bool) {
        let at = self.offset(sent_at);
        let valid_for = u64::try_from((LEASE - MARGIN).as_nanos()).unwrap_or(u64::MAX);
        if new_tenure || self.0.term.load(Ordering::Acquire) == 0 {
            self.0.term.fetch_add(1, Ordering::AcqRel);
        }
        self.0.renewed.store(at, Ordering::Release);
        self.0.until.store(at.saturating_add(valid_for).max(1), Ordering::Release);
    }

    /// The pool was given up or found taken: no write from now on.
    pub fn revoke(&self) {
        self.0.until.store(0, Ordering::Release);
    }

    /// May this replica write for the pool at `now`?
    pub fn valid_at(&self, now: Instant) -> bool {
        self.offset(now) < self.0.until.load(Ordering::Acquire)
    }

    /// May this replica write for the pool now?
    pub fn valid(&self) -> bool {
        self.valid_at(Instant::now())
    }

    /// Is a renewal due at `now` (the last one is [`RENEW`] old, or the fence is down)?
    pub fn due_at(&self, now: Instant) -> bool {
        !self.valid_at(now)
            || self.offset(now).saturating_sub(self.0.renewed.load(Ordering::Acquire))
                >= u64::try_from(RENEW.as_nanos()).unwrap_or(u64::MAX)
    }

    /// The current tenure: what a pass remembered about the pool is worth keeping only within one.
    pub fn term(&self) -> u64 {
        self.0.term.load(Ordering::Acquire)
    }
}

impl Default for Fence {
    fn default() -> Self {
        Fence::new()
    }
}

/// A write refused by the fence: the replica no longer holds the pool's Lease (or could not renew it).
#[derive(Debug, thiserror::Error)]
#[error("fenced: this replica does not hold the Lease of pool {pool} (any more), the write was not sent")]
pub struct Fenced {
    pub pool: String,
}

/// The HTTP service under a pool's client: passes reads, and writes only while the fence is up.
#[derive(Clone)]
struct FencedService {
    base: Client,
    fence: Fence,
    pool: String,
}

type Body = kube::client::Body;
type BoxFuture = Pin<Box<dyn Future<Output = Result<http::Response<Body>, tower::BoxError>> + Send>>;

impl tower::Service<http::Request<Body>> for FencedService {
    type Response = http::Response<Body>;
    type Error = tower::BoxError;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let reads = matches!(*req.method(), http::Method::GET | http::Method::HEAD | http::Method::OPTIONS);
        if !reads && !self.fence.valid() {
            let e = Fenced { pool: self.pool.clone() };
            tracing::warn!(pool = %e.pool, method = %req.method(), uri = %req.uri(), "write refused by the fence");
            return Box::pin(async move { Err(e.into()) });
        }
        let base = self.base.clone();
        Box::pin(async move { base.send(req).await.map_err(Into::into) })
    }
}

/// What a pass over one pool writes with: its fence, and a client and an Event recorder behind it.
#[derive(Clone)]
pub struct Slot {
    pub fence: Fence,
    pub client: Client,
    pub recorder: Recorder,
}

/// The pools this replica acts on. Cheap to clone.
#[derive(Clone)]
pub struct Shards(Arc<Inner>);

struct Inner {
    identity: String,
    base: Client,
    reporter: Reporter,
    election: Option<Election>,
    slots: Mutex<BTreeMap<String, Slot>>,
}

struct Election {
    api: Api<Lease>,
    prefix: String,
    pod_uid: Option<String>,
}

/// What one tick changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// Some pool was taken (a pass should follow).
    pub acquired: bool,
}

impl Shards {
    /// One process acting on every pool (no election).
    pub fn all(client: Client, reporter: Reporter, identity: &str) -> Shards {
        Shards::new(client, reporter, identity, None)
    }

    /// Pools shared out on Leases named after `prefix` in `namespace` (see the module docs).
    pub fn elect(
        client: Client,
        reporter: Reporter,
        namespace: &str,
        prefix: &str,
        identity: &str,
    ) -> anyhow::Result<Shards> {
        shards::check_prefix(prefix).map_err(anyhow::Error::msg)?;
        let election = Election {
            api: Api::namespaced(client.clone(), namespace),
            prefix: prefix.to_string(),
            pod_uid: std::env::var("POD_UID").ok().filter(|u| !u.is_empty()),
        };
        Ok(Shards::new(client, reporter, identity, Some(election)))
    }

    fn new(base: Client, reporter: Reporter, identity: &str, election: Option<Election>) -> Shards {
        Shards(Arc::new(Inner {
            identity: identity.to_string(),
            base,
            reporter,
            election,
            slots: Mutex::new(BTreeMap::new()),
        }))
    }

    /// The pool's slot if this replica acts on it now (its fence is up).
    pub fn acting(&self, pool: &str) -> Option<Slot> {
        let slot = self.slot(pool);
        slot.fence.valid().then_some(slot)
    }

    /// Pools this replica acts on now.
    pub fn owned(&self) -> usize {
        lock(&self.0.slots).values().filter(|s| s.fence.valid()).count()
    }

    /// This replica's identity (the holder name in the Leases, `status.owner`).
    pub fn identity(&self) -> &str {
        &self.0.identity
    }

    /// The pool's slot, made on first use: a fence (always up without election) and a client behind it.
    fn slot(&self, pool: &str) -> Slot {
        let mut slots = lock(&self.0.slots);
        if let Some(s) = slots.get(pool) {
            return s.clone();
        }
        let slot = if self.0.election.is_none() {
            let recorder = Recorder::new(self.0.base.clone(), self.0.reporter.clone());
            Slot { fence: Fence::always(), client: self.0.base.clone(), recorder }
        } else {
            let fence = Fence::new();
            let svc = FencedService { base: self.0.base.clone(), fence: fence.clone(), pool: pool.to_string() };
            let client = Client::new(svc, self.0.base.default_namespace().to_string());
            let recorder = Recorder::new(client.clone(), self.0.reporter.clone());
            Slot { fence, client, recorder }
        };
        slots.insert(pool.to_string(), slot.clone());
        slot
    }

    /// Keeps the Leases every [`TICK`] until the process stops; `after` hears what each tick changed.
    /// Returns at once without election.
    pub async fn run(self, pools: Store<HostPool>, after: impl Fn(Tick)) {
        let Some(e) = &self.0.election else {
            return;
        };
        let mut observed = Observed::default();
        let member = Fence::new();
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick only announces this replica: replicas started together then see each other before
        // they take pools.
        let mut first = true;
        loop {
            ticker.tick().await;
            let acquired = match self.tick(e, &pools, &mut observed, &member, !first).await {
                Ok(a) => a,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot list the Leases; held pools stay fenced by their renewals");
                    false
                }
            };
            first = false;
            after(Tick { acquired });
        }
    }

    /// One tick: list, observe, renew, release, acquire. Whether some pool was taken.
    async fn tick(
        &self,
        e: &Election,
        pools: &Store<HostPool>,
        observed: &mut Observed,
        member: &Fence,
        may_acquire: bool,
    ) -> Result<bool, kube::Error> {
        let me = self.0.identity.as_str();
        let now = Instant::now();
        let lp = ListParams::default().labels(&format!("{LEASE_SET_LABEL}={}", e.prefix));
        let leases: BTreeMap<String, Lease> =
            e.api.list(&lp).await?.items.into_iter().map(|l| (l.name_any(), l)).collect();
        for (name, l) in &leases {
            observed.see(name, l.metadata.resource_version.as_deref().unwrap_or_default(), now);
        }
        observed.keep_only(&leases.keys().cloned().collect());
        let live_holder = |name: &str| -> Option<String> {
            let l = leases.get(name)?;
            let h = holder(l)?;
            let d = l
                .spec
                .as_ref()
                .and_then(|s| s.lease_duration_seconds)
                .map_or(LEASE, |s| Duration::from_secs(u64::try_from(s).unwrap_or(0)));
            (h == me || !observed.expired(name, d, now)).then_some(h)
        };

        let member_name = shards::member_lease(&e.prefix, me);
        if member.due_at(now) {
            let owner = e.pod_uid.as_ref().map(|uid| owner_ref("v1", "Pod", me, uid));
            self.write(e, &member_name, leases.get(&member_name), "member", owner, Some(member), None).await;
        }
        let mut live: BTreeSet<String> = leases
            .iter()
            .filter(|(_, l)| l.labels().get(LEASE_KIND_LABEL).map(String::as_str) == Some("member"))
            .filter_map(|(n, _)| live_holder(n))
            .collect();
        live.insert(me.to_string());

        let uids: BTreeMap<String, Option<String>> =
            pools.state().iter().map(|p| (p.name_any(), p.metadata.uid.clone())).collect();
        let names: BTreeSet<String> = uids.keys().cloned().collect();
        let holders: BTreeMap<String, String> = names
            .iter()
            .filter_map(|p| live_holder(&shards::pool_lease(&e.prefix, p)).map(|h| (p.clone(), h)))
            .collect();
        let moves = shards::rebalance(View { pools: &names, live: &live, holders: &holders, me });

        // Pools gone: stop acting (their Lease goes with them).
        let gone: Vec<(String, Slot)> = lock(&self.0.slots)
            .iter()
            .filter(|(p, _)| !names.contains(*p))
            .map(|(p, s)| (p.clone(), s.clone()))
            .collect();
        for (p, s) in gone {
            s.fence.revoke();
            lock(&self.0.slots).remove(&p);
        }
        for p in &moves.release {
            let slot = self.slot(p);
            slot.fence.revoke();
            let name = shards::pool_lease(&e.prefix, p);
            tracing::info!(pool = %p, replicas = live.len(), "releasing the pool to rebalance");
            self.write(e, &name, leases.get(&name), "pool", None, None, Some(p)).await;
        }
        for (p, h) in &holders {
            if h != me || moves.release.contains(p) {
                continue;
            }
            let slot = self.slot(p);
            if slot.fence.due_at(Instant::now()) {
                let name = shards::pool_lease(&e.prefix, p);
                self.write(e, &name, leases.get(&name), "pool", None, Some(&slot.fence), Some(p)).await;
            }
        }
        // A Lease naming this replica that the fence does not know (a restart under the same name) is
        // renewed above; one another replica took is fenced off here.
        for (p, s) in lock(&self.0.slots).iter() {
            if holders.get(p).is_none_or(|h| h != me) && s.fence.valid() {
                tracing::warn!(pool = %p, holder = ?holders.get(p), "the pool's Lease is not ours any more");
                s.fence.revoke();
            }
        }
        let mut acquired = false;
        if may_acquire {
            for p in &moves.acquire {
                let name = shards::pool_lease(&e.prefix, p);
                let owner =
                    uids.get(p).cloned().flatten().map(|uid| owner_ref("kubedrs.io/v1alpha1", "HostPool", p, &uid));
                let slot = self.slot(p);
                if self.write(e, &name, leases.get(&name), "pool", owner, Some(&slot.fence), Some(p)).await {
                    tracing::info!(pool = %p, replicas = live.len(), owned = self.owned(), "took the pool");
                    acquired = true;
                }
            }
        }
        Ok(acquired)
    }

    /// Creates or replaces (at the listed `resourceVersion`) the Lease `name`: held by this replica when
    /// `fence` is given (confirmed on success), released otherwise. Whether the write went through.
    #[allow(clippy::too_many_arguments)]
    async fn write(
        &self,
        e: &Election,
        name: &str,
        current: Option<&Lease>,
        kind: &str,
        owner: Option<OwnerReference>,
        fence: Option<&Fence>,
        pool: Option<&str>,
    ) -> bool {
        let me = self.0.identity.as_str();
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let before = current.and_then(holder);
        let new_tenure = before.as_deref() != Some(me);
        let mut lease = current.cloned().unwrap_or_else(|| Lease {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(
                    [(LEASE_SET_LABEL.to_string(), e.prefix.clone()), (LEASE_KIND_LABEL.to_string(), kind.to_string())]
                        .into(),
                ),
                owner_references: owner.map(|o| vec![o]),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec::default()),
        });
        let spec = lease.spec.get_or_insert_default();
        if fence.is_some() {
            if new_tenure {
                spec.acquire_time = Some(now.clone());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + i32::from(before.is_some()));
            }
            spec.holder_identity = Some(me.to_string());
            spec.lease_duration_seconds = Some(i32::try_from(LEASE.as_secs()).unwrap_or(15));
            spec.renew_time = Some(now);
        } else {
            if before.as_deref() != Some(me) {
                return true;
            }
            spec.holder_identity = None;
        }
        let pp = PostParams { field_manager: Some(crate::status::FIELD_MANAGER.into()), ..PostParams::default() };
        let sent_at = Instant::now();
        let result =
            if current.is_some() { e.api.replace(name, &pp, &lease).await } else { e.api.create(&pp, &lease).await };
        match (result, fence) {
            (Ok(_), Some(f)) => {
                f.confirmed(sent_at, new_tenure);
                true
            }
            (Ok(_), None) => true,
            (Err(kube::Error::Api(s)), f) if s.code == 409 || s.code == 404 => {
                // Someone else wrote the Lease since the list: it is not ours (any more).
                if let Some(f) = f.filter(|_| !new_tenure) {
                    f.revoke();
                    tracing::warn!(lease = %name, ?pool, "lost the Lease to another replica");
                }
                false
            }
            (Err(err), _) => {
                tracing::warn!(lease = %name, ?pool, error = %err, "cannot write the Lease");
                false
            }
        }
    }

    /// Gives up every pool and the member Lease (on shutdown), so other replicas take over at once.
    pub async fn release_all(&self) {
        let Some(e) = &self.0.election else {
            return;
        };
        let held: Vec<(String, Slot)> = lock(&self.0.slots).iter().map(|(p, s)| (p.clone(), s.clone())).collect();
        for (_, s) in &held {
            s.fence.revoke();
        }
        let lp = ListParams::default().labels(&format!("{LEASE_SET_LABEL}={}", e.prefix));
        let Ok(leases) = e.api.list(&lp).await else { return };
        for l in leases.items.iter().filter(|l| holder(l).as_deref() == Some(self.0.identity.as_str())) {
            self.write(e, &l.name_any(), Some(l), "", None, None, None).await;
        }
        tracing::info!(pools = held.len(), "released the Leases");
    }
}

fn holder(l: &Lease) -> Option<String> {
    l.spec.as_ref()?.holder_identity.clone().filter(|h| !h.is_empty())
}

fn owner_ref(api_version: &str, kind: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        ..OwnerReference::default()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// This replica's identity: `POD_NAME` (the chart sets it from the downward API), else `HOSTNAME`, else a
/// name made from the process id.
pub fn identity() -> String {
    std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("kubedrs-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn a_fence_is_down_until_a_renewal_and_up_until_lease_minus_margin_after_it_was_sent() {
        let f = Fence::new();
        let t0 = Instant::now();
        assert!(!f.valid_at(t0) && f.due_at(t0) && f.term() == 0);
        f.confirmed(t0, true);
        assert_eq!(f.term(), 1);
        assert!(f.valid_at(t0 + S(9)));
        assert!(!f.valid_at(t0 + LEASE - MARGIN), "expired before the Lease can");
        assert!(!f.due_at(t0 + S(3)) && f.due_at(t0 + RENEW));
    }

    #[test]
    fn renewals_keep_it_up_failed_ones_let_it_expire_and_regaining_starts_a_new_term() {
        let f = Fence::new();
        let t0 = Instant::now();
        f.confirmed(t0, true);
        // Renewed every 4 s: always up.
        for k in 1..10 {
            f.confirmed(t0 + S(4 * k), false);
            assert!(f.valid_at(t0 + S(4 * k + 9)));
        }
        assert_eq!(f.term(), 1, "renewals keep the term");
        // Renewals fail from t0+36: the last confirmed one was sent at t0+36, so it is down at t0+46,
        // whatever happens to the process meanwhile (a frozen process wakes up to a fence that is down).
        let last = t0 + S(36);
        assert!(f.valid_at(last + S(9)));
        assert!(!f.valid_at(last + S(10)));
        assert!(!f.valid_at(last + S(60)));
        // Regained after another replica held it: a new term.
        f.confirmed(last + S(60), true);
        assert!(f.valid_at(last + S(61)));
        assert_eq!(f.term(), 2);
        // Given up: down at once.
        f.revoke();
        assert!(!f.valid_at(last + S(61)));
    }

    #[test]
    fn without_election_the_fence_is_always_up() {
        let f = Fence::always();
        assert!(f.valid_at(Instant::now() + S(1_000_000)));
        assert_eq!(f.term(), 1);
        assert!(!identity().is_empty());
    }

    /// The API server's side of a client: records each request's method and answers with `body`.
    #[derive(Clone)]
    struct Recording(Arc<Mutex<Vec<String>>>, &'static str);

    impl tower::Service<http::Request<Body>> for Recording {
        type Response = http::Response<Body>;
        type Error = tower::BoxError;
        type Future = BoxFuture;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: http::Request<Body>) -> Self::Future {
            lock(&self.0).push(req.method().to_string());
            let body = self.1;
            Box::pin(async move { Ok(http::Response::new(Body::from(body.as_bytes().to_vec()))) })
        }
    }

    #[tokio::test]
    async fn the_pool_client_sends_reads_always_and_writes_only_while_the_fence_is_up() {
        use k8s_openapi::api::core::v1::Node;
        let sent = Arc::new(Mutex::new(Vec::new()));
        let node = r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1"}}"#;
        let base = Client::new(Recording(sent.clone(), node), "default");
        let fence = Fence::new();
        let svc = FencedService { base, fence: fence.clone(), pool: "prod".into() };
        let nodes: Api<Node> = Api::all(Client::new(svc, "default"));
        let patch = kube::api::Patch::Merge(serde_json::json!({"spec": {"unschedulable": true}}));
        let pp = kube::api::PatchParams::default();

        assert!(nodes.get("n1").await.is_ok(), "a read goes through with the fence down");
        let err = nodes.patch("n1", &pp, &patch).await.expect_err("the fence is down");
        assert!(err.to_string().contains("fenced") && err.to_string().contains("prod"), "{err}");
        assert_eq!(*lock(&sent), ["GET"], "the write never left");

        fence.confirmed(Instant::now(), true);
        assert!(nodes.patch("n1", &pp, &patch).await.is_ok());
        fence.revoke();
        assert!(nodes.patch("n1", &pp, &patch).await.is_err());
        assert_eq!(*lock(&sent), ["GET", "PATCH"]);
    }

    #[test]
    fn the_margin_leaves_room_for_renewals() {
        assert!(MARGIN < LEASE && RENEW + TICK < LEASE - MARGIN, "a late renewal still lands in time");
        assert!(2 * RENEW < LEASE - MARGIN, "one renewal may fail without the fence going down");
    }
}
