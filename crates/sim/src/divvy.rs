//! What a node delivers to its VMs when they want more than it has: the divvy of the design note (section 1)
//! at node level. Each VM gets at least min(reservation, demand), at most min(demand, limit), and between the two
//! capacity goes by weighted max-min fairness in proportion to shares (water-filling): what a VM does not want
//! goes back to the others. A node never delivers more than its capacity.

use kubedrs_engine as engine;

/// One VM's claim on one resource of a node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Claim {
    pub reservation: f64,
    pub limit: Option<f64>,
    pub shares: f64,
    pub demand: f64,
}

/// Amounts delivered to each claim out of `capacity`, in the claims' order: the engine's
/// [`kubedrs_engine::deliver`], so the simulator measures with the engine's own divvy.
pub fn divvy(capacity: f64, claims: &[Claim]) -> Vec<f64> {
    let claims: Vec<engine::Claim> = claims
        .iter()
        .map(|c| engine::Claim {
            reservation: c.reservation,
            limit: c.limit.unwrap_or(f64::INFINITY),
            demand: c.demand,
            shares: c.shares,
        })
        .collect();
    engine::deliver(&claims, capacity)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(reservation: f64, shares: f64, demand: f64) -> Claim {
        Claim { reservation, limit: None, shares, demand }
    }

    #[test]
    fn the_design_note_example() {
        // 200 GiB, shares 4:1, demands 180 and 25: 160/40 first, the second returns 15: 175/25.
        let d = divvy(200.0, &[c(0.0, 4.0, 180.0), c(0.0, 1.0, 25.0)]);
        assert!((d[0] - 175.0).abs() < 1e-6 && (d[1] - 25.0).abs() < 1e-6, "{d:?}");
    }

    #[test]
    fn uncontended_nodes_deliver_demand_capped_by_limit() {
        let mut a = c(0.0, 1.0, 10.0);
        a.limit = Some(4.0);
        assert_eq!(divvy(100.0, &[a, c(0.0, 1.0, 20.0)]), vec![4.0, 20.0]);
    }

    #[test]
    fn reservations_come_before_shares() {
        // A small-share VM with a reservation keeps it against a high-share neighbour.
        let d = divvy(10.0, &[c(6.0, 1.0, 10.0), c(0.0, 100.0, 10.0)]);
        assert!((d[0] - 6.0).abs() < 1e-6 && (d[1] - 4.0).abs() < 1e-6, "{d:?}");
        // A reservation not demanded is not delivered: the neighbour may use it.
        let d = divvy(10.0, &[c(6.0, 1.0, 1.0), c(0.0, 1.0, 10.0)]);
        assert!((d[0] - 1.0).abs() < 1e-6 && (d[1] - 9.0).abs() < 1e-6, "{d:?}");
    }

    #[test]
    fn never_more_than_capacity() {
        let claims: Vec<Claim> = (0..50).map(|i| c((i % 7) as f64, 1.0 + (i % 3) as f64, 5.0 + i as f64)).collect();
        for cap in [0.0, 1.0, 50.0, 300.0, 900.0, 5000.0] {
            let d = divvy(cap, &claims);
            assert!(d.iter().sum::<f64>() <= cap + 1e-9, "cap {cap}");
            assert!(d.iter().zip(&claims).all(|(x, c)| *x <= c.demand + 1e-9 && *x >= 0.0));
        }
        // Overcommitted reservations are scaled, not exceeded.
        let d = divvy(10.0, &[c(8.0, 1.0, 8.0), c(8.0, 1.0, 8.0)]);
        assert!((d.iter().sum::<f64>() - 10.0).abs() < 1e-9);
    }
}
