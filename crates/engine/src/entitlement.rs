//! Dynamic entitlement, the "divvy": who gets what of one resource when demand exceeds capacity.
//!
//! Every claimant first gets its lower bound (its reservation: reservations are always honoured), then the
//! rest of the capacity is handed out in proportion to shares, never above the upper bound
//! `max(R, min(D, L))`; what a claimant does not want flows back to the others (water-filling). In closed
//! form: find the level `λ` such that `Σ clamp(λ·sᵢ, lbᵢ, ubᵢ) = C`; each entitlement is `clamp(λ·sᵢ, lbᵢ, ubᵢ)`.

use super::model::{Resource, Vm};

/// One claim on a resource.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Claim {
    pub reservation: f64,
    /// `f64::INFINITY` when unlimited.
    pub limit: f64,
    pub demand: f64,
    pub shares: f64,
}

impl Claim {
    /// The VM's claim on one resource.
    pub fn of(vm: &Vm, r: Resource) -> Claim {
        let a = vm.allocation(r);
        Claim {
            reservation: a.reservation as f64,
            limit: a.limit.map_or(f64::INFINITY, |l| l as f64),
            demand: vm.demand.get(r),
            shares: vm.shares(r),
        }
    }

    fn lower(&self) -> f64 {
        self.reservation
    }

    fn upper(&self) -> f64 {
        self.reservation.max(self.demand.min(self.limit))
    }
}

/// Entitlements of `claims` sharing `capacity`, in the same order.
///
/// Uncontended (the upper bounds fit): everyone gets its upper bound. Reservations beyond capacity (an
/// overcommitted node) are still handed out in full: admission is checked elsewhere, and hiding the
/// overcommit here would hide it from the load figures too.
pub fn divvy(claims: &[Claim], capacity: f64) -> Vec<f64> {
    let upper_sum: f64 = claims.iter().map(Claim::upper).sum();
    if upper_sum <= capacity {
        return claims.iter().map(Claim::upper).collect();
    }
    let lower_sum: f64 = claims.iter().map(Claim::lower).sum();
    if lower_sum >= capacity {
        return claims.iter().map(Claim::lower).collect();
    }
    let level = water_level(claims, capacity);
    claims.iter().map(|c| clamp_share(c, level)).collect()
}

fn clamp_share(c: &Claim, level: f64) -> f64 {
    let lb = c.lower();
    let ub = c.upper();
    if c.shares <= 0.0 { lb } else { (level * c.shares).clamp(lb, ub) }
}

/// The level `λ` at which the clamped shares add up to `capacity` (`Σlb < C < Σub`).
///
/// `f(λ) = Σ clamp(λ·sᵢ, lbᵢ, ubᵢ)` is piecewise linear and non-decreasing; sweep its breakpoints in order,
/// tracking the slope (the shares of the claimants currently between their bounds).
fn water_level(claims: &[Claim], capacity: f64) -> f64 {
    // (level, share delta): a claimant starts growing at lb/s and stops at ub/s.
    let mut points: Vec<(f64, f64)> = Vec::with_capacity(claims.len() * 2);
    for c in claims.iter().filter(|c| c.shares > 0.0 && c.upper() > c.lower()) {
        points.push((c.lower() / c.shares, c.shares));
        points.push((c.upper() / c.shares, -c.shares));
    }
    points.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut total: f64 = claims.iter().map(Claim::lower).sum();
    let mut slope = 0.0;
    let mut level = 0.0;
    for (at, delta) in points {
        let next = total + slope * (at - level);
        if next >= capacity && slope > 0.0 {
            return level + (capacity - total) / slope;
        }
        total = next;
        level = at;
        slope += delta;
    }
    level
}

/// What a node actually delivers to its VMs (the simulator's measure of demand met): the divvy where a
/// reservation is a floor only up to demand (a VM never gets more than it uses), and reservations beyond
/// capacity (memory held on both ends of a migration) are scaled down: a node never delivers more than it has.
pub fn deliver(claims: &[Claim], capacity: f64) -> Vec<f64> {
    let capacity = capacity.max(0.0);
    let used: Vec<Claim> = claims
        .iter()
        .map(|c| {
            let want = c.demand.min(c.limit).max(0.0);
            Claim { reservation: c.reservation.clamp(0.0, want), limit: want, demand: want, shares: c.shares }
        })
        .collect();
    let floor: f64 = used.iter().map(Claim::lower).sum();
    if floor > capacity {
        let k = if floor > 0.0 { capacity / floor } else { 0.0 };
        return used.iter().map(|c| c.lower() * k).collect();
    }
    divvy(&used, capacity)
}

/// Entitlement of every VM, per resource, for the pool as one big node of `capacity`.
pub fn pool_entitlements(vms: &[&Vm], capacity: [f64; 2]) -> Vec<[f64; 2]> {
    let mut out = vec![[0.0; 2]; vms.len()];
    for r in Resource::ALL {
        let claims: Vec<Claim> = vms.iter().map(|vm| Claim::of(vm, r)).collect();
        for (i, e) in divvy(&claims, capacity[r.index()]).into_iter().enumerate() {
            out[i][r.index()] = e;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(reservation: f64, demand: f64, shares: f64) -> Claim {
        Claim { reservation, limit: f64::INFINITY, demand, shares }
    }

    #[test]
    fn design_note_example_gives_175_and_25() {
        // 200 GiB, shares 4:1, demands 180 and 25: first split 160/40, the second returns 15.
        let e = divvy(&[claim(0.0, 180.0, 4.0), claim(0.0, 25.0, 1.0)], 200.0);
        assert!((e[0] - 175.0).abs() < 1e-9, "{e:?}");
        assert!((e[1] - 25.0).abs() < 1e-9, "{e:?}");
    }

    #[test]
    fn uncontended_gives_demand_within_limit() {
        let mut c = claim(0.0, 50.0, 1.0);
        c.limit = 30.0;
        let e = divvy(&[c, claim(10.0, 5.0, 1.0)], 1000.0);
        assert_eq!(e, vec![30.0, 10.0]);
    }

    #[test]
    fn reservation_is_honoured_before_shares() {
        // A small-share VM with a big reservation keeps it; the big-share VM gets the rest.
        let e = divvy(&[claim(60.0, 100.0, 1.0), claim(0.0, 100.0, 10.0)], 100.0);
        assert!((e[0] - 60.0).abs() < 1e-9 && (e[1] - 40.0).abs() < 1e-9, "{e:?}");
    }

    #[test]
    fn shares_split_in_proportion_under_contention() {
        let e = divvy(&[claim(0.0, 100.0, 2000.0), claim(0.0, 100.0, 1000.0), claim(0.0, 100.0, 1000.0)], 100.0);
        assert!((e[0] - 50.0).abs() < 1e-9 && (e[1] - 25.0).abs() < 1e-9, "{e:?}");
        assert!((e.iter().sum::<f64>() - 100.0).abs() < 1e-9);
    }
}
