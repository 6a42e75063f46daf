//! Cost-benefit of a live migration: a balancing move must pay for itself.
//!
//! Cost: the time the VM spends migrating. Pre-copy sends the memory, then what was dirtied meanwhile, and
//! so on: with bandwidth B and dirty rate d the rounds add up to `M / (B - d)`, plus a fixed setup time.
//! When d nears B the copy never converges (KubeVirt then aborts or needs post-copy), so such a VM is not
//! moved for balance at all.
//!
//! Benefit: the share of the load gap between source and target that the move closes, held for the
//! expected stable period of the load. The move is taken when `benefit >= risk * cost`, where the risk factor
//! shrinks as the threshold gets more aggressive (the load may change before the gain is collected).

/// Fixed cost of a migration: target pod start, handover, the final pause.
pub const SETUP_SECS: f64 = 5.0;
/// How long a load pattern is expected to last (VMware looks back 5-40 minutes; kubedrs takes the middle).
pub const STABLE_SECS: f64 = 30.0 * 60.0;

/// The windows demand is smoothed over, short and long: the max of the two moving averages rises within
/// one default interval and forgets over the stable period. The operator and the simulator both use them.
pub const DEMAND_WINDOWS_SECS: (u64, u64) = (300, STABLE_SECS as u64);
/// Above this fraction of the bandwidth the dirty rate makes pre-copy too long to be worth it for balance.
pub const MAX_DIRTY_FRACTION: f64 = 0.8;

/// Estimated seconds to migrate `memory_bytes` dirtied at `dirty_bytes_per_sec` over `bandwidth`.
pub fn migration_secs(memory_bytes: u64, dirty_bytes_per_sec: u64, bandwidth: u64) -> f64 {
    let b = bandwidth.max(1) as f64;
    let d = (dirty_bytes_per_sec as f64).min(b * 0.95);
    SETUP_SECS + memory_bytes as f64 / (b - d)
}

/// Does pre-copy converge well enough to migrate this VM for balance?
pub fn converges(dirty_bytes_per_sec: u64, bandwidth: u64) -> bool {
    (dirty_bytes_per_sec as f64) < MAX_DIRTY_FRACTION * bandwidth as f64
}

/// How many times over the gain must repay the migration time, by threshold (1..5).
pub fn risk_factor(threshold: u8) -> f64 {
    match threshold {
        0..=2 => 3.0,
        3 => 2.0,
        4 => 1.5,
        _ => 1.0,
    }
}

/// Benefit in seconds: the fraction of the source-target gap closed, over the stable period.
/// `gap` is source load minus target load before the move, `moved` the load that moves (both on the
/// combined scale).
pub fn benefit_secs(gap: f64, moved: f64) -> f64 {
    if gap <= 0.0 {
        return 0.0;
    }
    // Gap after the move is |gap - 2*moved| at equal capacities; the closed fraction is what it gains.
    let closed = (gap - (gap - 2.0 * moved).abs()) / gap;
    STABLE_SECS * closed.max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn duration_grows_with_memory_and_dirty_rate() {
        let base = migration_secs(4 * GIB, 0, GIB);
        assert!((base - (SETUP_SECS + 4.0)).abs() < 1e-9);
        assert!(migration_secs(16 * GIB, 0, GIB) > base);
        assert!(migration_secs(4 * GIB, GIB / 2, GIB) > base);
    }

    #[test]
    fn a_vm_dirtying_near_bandwidth_does_not_converge() {
        assert!(converges(GIB / 2, GIB));
        assert!(!converges(GIB * 9 / 10, GIB));
    }

    #[test]
    fn closing_the_gap_fully_is_worth_the_whole_stable_period() {
        assert!((benefit_secs(0.2, 0.1) - STABLE_SECS).abs() < 1e-9);
        assert!(benefit_secs(0.2, 0.02) < benefit_secs(0.2, 0.08));
        assert_eq!(benefit_secs(0.0, 0.1), 0.0);
    }
}
