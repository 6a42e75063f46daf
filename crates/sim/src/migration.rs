//! How long a live migration takes, and whether it converges: KubeVirt's pre-copy as a model.
//!
//! The first round copies the whole guest memory; while it runs the guest dirties memory at its dirty rate, and
//! the next round copies what was dirtied, and so on, until what is left can be copied within the allowed pause
//! (QEMU's downtime limit). When the dirty rate is close to or above the bandwidth the rounds do not shrink and
//! the migration runs until KubeVirt aborts it: `completionTimeoutPerGiB` (150 s per GiB by default) times the
//! guest memory.

use super::scenario::MigrationModel;

/// A bound on the loop only: a migration that does not converge ends at its timeout long before.
const MAX_ROUNDS: usize = 100_000;

/// What a migration will do, before chance failures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Seconds from start to the end (success) or to the abort (no convergence).
    pub secs: f64,
    /// Bytes sent over the network.
    pub bytes: f64,
    pub converges: bool,
}

/// Estimate for a guest of `memory` bytes that dirties `dirty_rate` bytes per second.
pub fn estimate(model: &MigrationModel, memory: u64, dirty_rate: u64) -> Estimate {
    let memory = memory as f64;
    let bw = model.bandwidth.max(1.0);
    let timeout = model.setup_secs + model.timeout_per_gib * (memory / (1u64 << 30) as f64).max(1.0 / 1024.0);
    let mut remaining = memory;
    let mut secs = model.setup_secs;
    let mut bytes = 0.0;
    for _ in 0..MAX_ROUNDS {
        // Stop-and-copy once the rest fits in the allowed pause.
        if remaining / bw <= model.max_downtime_secs {
            secs += remaining / bw;
            bytes += remaining;
            return Estimate { secs, bytes, converges: secs <= timeout };
        }
        let round = remaining / bw;
        secs += round;
        bytes += remaining;
        if secs > timeout {
            break;
        }
        remaining = (dirty_rate as f64 * round).min(memory);
    }
    // Aborted at the timeout: bytes sent until then.
    let sent = (bytes - (secs - timeout).max(0.0) * bw).max(0.0);
    Estimate { secs: timeout, bytes: sent, converges: false }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn model() -> MigrationModel {
        MigrationModel { setup_secs: 0.0, ..MigrationModel::default() }
    }

    #[test]
    fn an_idle_guest_moves_at_line_rate() {
        let e = estimate(&model(), 8 * GIB, 0);
        assert!(e.converges);
        assert!((e.secs - 8.0).abs() < 1e-9, "{e:?}");
        assert!((e.bytes - 8.0 * GIB as f64).abs() < 1.0);
    }

    #[test]
    fn dirtying_adds_geometric_rounds() {
        // Dirty rate half the bandwidth: 8 + 4 + 2 + 1 + ... ~ 16 s.
        let e = estimate(&model(), 8 * GIB, GIB / 2);
        assert!(e.converges);
        assert!(e.secs > 15.0 && e.secs < 16.0, "{e:?}");
        let slower = estimate(&model(), 8 * GIB, GIB * 9 / 10);
        assert!(slower.converges && slower.secs > e.secs * 2.0, "{slower:?}");
    }

    #[test]
    fn dirty_rate_at_bandwidth_never_converges_and_times_out() {
        let e = estimate(&model(), 4 * GIB, GIB);
        assert!(!e.converges);
        assert!((e.secs - 600.0).abs() < 1e-6, "150 s/GiB x 4 GiB: {e:?}");
        let worse = estimate(&model(), 4 * GIB, 2 * GIB);
        assert!(!worse.converges);
    }

    #[test]
    fn setup_time_is_added() {
        let m = MigrationModel { setup_secs: 10.0, ..MigrationModel::default() };
        assert!((estimate(&m, GIB, 0).secs - 11.0).abs() < 1e-9);
    }
}
