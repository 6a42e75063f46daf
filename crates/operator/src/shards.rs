//! Pools shared out across replicas: the pure part. Which pools this replica should take or give up
//! ([`rebalance`]), when another replica's Lease counts as expired ([`Observed`]), and the Lease names.
//! The I/O around it (lists, creates and replaces of Leases) is in [`crate::leader`].
//!
//! Each replica aims at a share fixed by the number of pools and the live replicas alone: `floor(pools /
//! replicas)`, plus one for the first `pools % replicas` replicas by name, so every replica holds at most
//! `ceil(pools / replicas)` and the shares add up to the pools. A replica above its share releases its least
//! preferred pools; one below it takes free pools (no holder, or a holder whose Lease expired), its most
//! preferred first. Preference is a rendezvous hash of (replica, pool), so replicas prefer different pools
//! and a pool tends to go back to the same replica. Since shares depend only on the pool count and the live
//! replicas, a stable cluster makes no move at all (no flapping); a change moves as few pools as the new
//! shares need.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Label on every Lease kubedrs holds: the `--lease-name` prefix, so a list finds them.
pub const LEASE_SET_LABEL: &str = "kubedrs.io/lease-set";
/// Label on every Lease kubedrs holds: `pool` or `member`.
pub const LEASE_KIND_LABEL: &str = "kubedrs.io/lease-kind";

/// What one replica knows when it decides.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// Every HostPool.
    pub pools: &'a BTreeSet<String>,
    /// Replicas whose member Lease is live (this one included or not: it is added).
    pub live: &'a BTreeSet<String>,
    /// Pools whose Lease is held and not expired -> the holder.
    pub holders: &'a BTreeMap<String, String>,
    /// This replica.
    pub me: &'a str,
}

/// What to do about the pools.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moves {
    /// Free pools to take, most preferred first.
    pub acquire: Vec<String>,
    /// Held pools to give up, least preferred first.
    pub release: Vec<String>,
}

/// This replica's share of `pools` among `live` (with `me` counted in).
pub fn share(pools: usize, live: &BTreeSet<String>, me: &str) -> usize {
    let mut replicas: Vec<&str> = live.iter().map(String::as_str).collect();
    if !live.contains(me) {
        replicas.push(me);
        replicas.sort_unstable();
    }
    let n = replicas.len().max(1);
    let rank = replicas.iter().position(|r| *r == me).unwrap_or(0);
    pools / n + usize::from(rank < pools % n)
}

/// Which pools to take and which to give up (see the module docs).
pub fn rebalance(v: View<'_>) -> Moves {
    let target = share(v.pools.len(), v.live, v.me);
    let mut mine: Vec<&String> = v.pools.iter().filter(|p| v.holders.get(*p).is_some_and(|h| h == v.me)).collect();
    let mut free: Vec<&String> = v.pools.iter().filter(|p| !v.holders.contains_key(*p)).collect();
    let by_preference = |a: &&String, b: &&String| preference(v.me, b).cmp(&preference(v.me, a)).then(a.cmp(b));
    mine.sort_by(by_preference);
    free.sort_by(by_preference);
    let mut moves = Moves::default();
    if mine.len() > target {
        moves.release = mine[target..].iter().rev().map(|p| (*p).clone()).collect();
    } else {
        moves.acquire = free.iter().take(target - mine.len()).map(|p| (*p).clone()).collect();
    }
    moves
}

/// Rendezvous weight of `pool` for `replica` (FNV-1a, stable across builds and platforms).
fn preference(replica: &str, pool: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in replica.bytes().chain([0]).chain(pool.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// When this replica last saw each Lease change (its `resourceVersion`), on its own monotonic clock.
/// Another replica's Lease counts as expired once it has not changed for its duration: clocks of different
/// machines are never compared, as in Kubernetes' own leader election.
#[derive(Debug, Default)]
pub struct Observed {
    seen: BTreeMap<String, (String, Instant)>,
}

impl Observed {
    /// Records the Lease `name` at `version`, seen at `now`.
    pub fn see(&mut self, name: &str, version: &str, now: Instant) {
        match self.seen.get_mut(name) {
            Some((v, _)) if v == version => {}
            Some(entry) => *entry = (version.to_string(), now),
            None => {
                self.seen.insert(name.to_string(), (version.to_string(), now));
            }
        }
    }

    /// Has `name` stayed unchanged for `duration` at `now`? A Lease never seen is not expired.
    pub fn expired(&self, name: &str, duration: Duration, now: Instant) -> bool {
        self.seen.get(name).is_some_and(|(_, since)| now.saturating_duration_since(*since) >= duration)
    }

    /// Forgets Leases not in `names` (deleted).
    pub fn keep_only(&mut self, names: &BTreeSet<String>) {
        self.seen.retain(|n, _| names.contains(n));
    }
}

/// The Lease of pool `pool`: `<prefix>-pool-<pool>`.
pub fn pool_lease(prefix: &str, pool: &str) -> String {
    bounded(&format!("{prefix}-pool-{}", sanitize(pool)))
}

/// The member Lease of replica `identity`: `<prefix>-member-<identity>`.
pub fn member_lease(prefix: &str, identity: &str) -> String {
    bounded(&format!("{prefix}-member-{}", sanitize(identity)))
}

/// Checks a `--lease-name`: a DNS label of at most 40 characters (the Lease names add to it, and it is a
/// label value).
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 40
        && prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !prefix.starts_with('-')
        && !prefix.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--lease-name {prefix:?}: want 1-40 characters of a-z, 0-9 and '-', starting and ending alphanumeric"
        ))
    }
}

/// A Lease name from any identity: lowercase, characters outside `[a-z0-9.-]` become `-`.
fn sanitize(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-' { c } else { '-' }
        })
        .collect();
    s.trim_matches(|c| c == '-' || c == '.').to_string()
}

/// At most 253 characters (an object name): a longer name keeps its start and ends with a hash of the whole.
fn bounded(name: &str) -> String {
    const MAX: usize = 253;
    if name.len() <= MAX {
        return name.to_string();
    }
    let hash = format!("{:016x}", preference("", name));
    let keep = MAX - hash.len() - 1;
    let head = name[..keep].trim_end_matches(['-', '.']);
    format!("{head}-{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn pools(n: usize) -> BTreeSet<String> {
        (0..n).map(|i| format!("p{i}")).collect()
    }

    /// Runs every replica's [`rebalance`] in turn on a shared view, applying its moves at once (a release
    /// frees the pool, an acquire takes it if still free), until a round moves nothing; returns the rounds.
    fn settle(pools: &BTreeSet<String>, live: &BTreeSet<String>, holders: &mut BTreeMap<String, String>) -> usize {
        for round in 0..20 {
            let mut moved = false;
            for me in live {
                let m = rebalance(View { pools, live, holders, me });
                for p in &m.release {
                    holders.remove(p);
                    moved = true;
                }
                for p in &m.acquire {
                    if !holders.contains_key(p) {
                        holders.insert(p.clone(), me.clone());
                        moved = true;
                    }
                }
            }
            if !moved {
                return round;
            }
        }
        panic!("no steady state after 20 rounds: {holders:?}");
    }

    fn counts(holders: &BTreeMap<String, String>) -> BTreeMap<String, usize> {
        let mut c = BTreeMap::new();
        for h in holders.values() {
            *c.entry(h.clone()).or_insert(0) += 1;
        }
        c
    }

    #[test]
    fn shares_add_up_to_the_pools_and_differ_by_at_most_one() {
        for n in 0..20 {
            for r in 1..6 {
                let live: BTreeSet<String> = (0..r).map(|i| format!("r{i}")).collect();
                let shares: Vec<usize> = live.iter().map(|me| share(n, &live, me)).collect();
                assert_eq!(shares.iter().sum::<usize>(), n, "{n} pools, {r} replicas: {shares:?}");
                assert!(shares.iter().max().unwrap_or(&0) - shares.iter().min().unwrap_or(&0) <= 1);
            }
        }
        assert_eq!(share(6, &set(&["a", "b"]), "c"), 2, "a replica not yet in the live set counts itself");
    }

    #[test]
    fn six_pools_over_three_replicas_two_each_then_three_each_after_a_death() {
        let ps = pools(6);
        let live = set(&["a", "b", "c"]);
        let mut holders = BTreeMap::new();
        settle(&ps, &live, &mut holders);
        assert_eq!(holders.len(), 6, "every pool has an owner");
        assert_eq!(counts(&holders), [("a".into(), 2), ("b".into(), 2), ("c".into(), 2)].into());

        // b dies: its Leases expire (its pools are free), the live set loses it.
        let before = holders.clone();
        holders.retain(|_, h| h != "b");
        let live = set(&["a", "c"]);
        settle(&ps, &live, &mut holders);
        assert_eq!(counts(&holders), [("a".into(), 3), ("c".into(), 3)].into());
        for (p, h) in &before {
            if h != "b" {
                assert_eq!(holders.get(p), Some(h), "pool {p} of a survivor stayed where it was");
            }
        }
    }

    #[test]
    fn a_new_replica_gets_its_share_and_a_stable_cluster_makes_no_move() {
        let ps = pools(7);
        let mut holders = BTreeMap::new();
        settle(&ps, &set(&["a"]), &mut holders);
        assert_eq!(counts(&holders), [("a".into(), 7)].into());
        let live = set(&["a", "b", "c"]);
        settle(&ps, &live, &mut holders);
        assert_eq!(counts(&holders), [("a".into(), 3), ("b".into(), 2), ("c".into(), 2)].into());
        for me in &live {
            assert_eq!(rebalance(View { pools: &ps, live: &live, holders: &holders, me }), Moves::default());
        }
        // A replica leaves: the others take its pools, nothing else moves.
        let live = set(&["a", "b"]);
        holders.retain(|_, h| h != "c");
        let rounds = settle(&ps, &live, &mut holders);
        assert_eq!(rounds, 1, "one round of acquisitions");
        assert_eq!(counts(&holders), [("a".into(), 4), ("b".into(), 3)].into());
    }

    #[test]
    fn a_replica_releases_its_least_preferred_pools_and_never_takes_a_held_one() {
        let ps = pools(4);
        let live = set(&["a", "b"]);
        let holders: BTreeMap<String, String> = ps.iter().map(|p| (p.clone(), "a".to_string())).collect();
        let m = rebalance(View { pools: &ps, live: &live, holders: &holders, me: "a" });
        assert_eq!(m.release.len(), 2);
        assert!(m.acquire.is_empty());
        let kept: Vec<&String> = ps.iter().filter(|p| !m.release.contains(p)).collect();
        for r in &m.release {
            for k in &kept {
                assert!(preference("a", r) <= preference("a", k), "released {r} is preferred over kept {k}");
            }
        }
        let m = rebalance(View { pools: &ps, live: &live, holders: &holders, me: "b" });
        assert_eq!(m, Moves::default(), "b waits until a releases");
    }

    #[test]
    fn leases_expire_on_the_observers_clock_only_without_change() {
        let t0 = Instant::now();
        let d = Duration::from_secs(15);
        let mut o = Observed::default();
        assert!(!o.expired("l", d, t0 + d), "never seen: not expired");
        o.see("l", "1", t0);
        assert!(!o.expired("l", d, t0 + Duration::from_secs(14)));
        o.see("l", "1", t0 + Duration::from_secs(10));
        assert!(o.expired("l", d, t0 + d), "the same version again is no renewal");
        o.see("l", "2", t0 + Duration::from_secs(16));
        assert!(!o.expired("l", d, t0 + Duration::from_secs(30)));
        assert!(o.expired("l", d, t0 + Duration::from_secs(31)));
        o.keep_only(&BTreeSet::new());
        assert!(!o.expired("l", d, t0 + Duration::from_secs(60)), "forgotten");
    }

    #[test]
    fn lease_names_are_valid_object_names() {
        assert_eq!(pool_lease("kubedrs", "prod"), "kubedrs-pool-prod");
        assert_eq!(member_lease("kubedrs", "kubedrs-7d9f-abcde"), "kubedrs-member-kubedrs-7d9f-abcde");
        assert_eq!(member_lease("kubedrs", "My_Laptop"), "kubedrs-member-my-laptop");
        let long = pool_lease("kubedrs", &"a".repeat(253));
        assert_eq!(long.len(), 253);
        assert_ne!(long, pool_lease("kubedrs", &format!("{}b", "a".repeat(252))), "the hash tells them apart");
        assert!(check_prefix("kubedrs").is_ok());
        for bad in ["", "-x", "Kubedrs", "a_b", &"x".repeat(41)] {
            assert!(check_prefix(bad).unwrap_err().contains("--lease-name"), "{bad:?}");
        }
    }
}
