//! The memory allocator of every program that links the operator, and its figures.
//!
//! jemalloc rather than the C library's allocator: the operator's memory comes and goes in bursts (a
//! relist parses every object of a kind at once, a pass builds a snapshot of its pool), spread over the
//! runtime's threads. glibc gives each thread an arena and returns little of a freed burst to the system, so
//! the resident size grows with the size of the largest burst and the number of threads; jemalloc's
//! background thread returns freed pages to the system seconds after they are freed (its decay), even
//! while the operator is idle. `/metrics` shows both figures (`kubedrs_heap_allocated_bytes`, what the
//! program holds; `kubedrs_heap_resident_bytes`, what the allocator keeps in memory for it), which tell data
//! that grows from memory that is not given back.

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Bytes the program holds and bytes the allocator keeps resident, as of now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapFigures {
    pub allocated: u64,
    pub resident: u64,
}

/// The allocator's current figures (`None` if it cannot say).
pub fn figures() -> Option<HeapFigures> {
    // jemalloc's statistics are a snapshot refreshed when the epoch advances.
    tikv_jemalloc_ctl::epoch::advance().ok()?;
    Some(HeapFigures {
        allocated: tikv_jemalloc_ctl::stats::allocated::read().ok()? as u64,
        resident: tikv_jemalloc_ctl::stats::resident::read().ok()? as u64,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_figures_follow_what_the_program_holds() {
        let before = figures().unwrap();
        let block = std::hint::black_box(vec![1u8; 64 << 20]);
        let during = figures().unwrap();
        assert!(during.allocated >= before.allocated + (64 << 20), "{before:?} -> {during:?}");
        assert!(during.resident >= during.allocated / 2, "{during:?}");
        drop(block);
        let after = figures().unwrap();
        assert!(after.allocated + (32 << 20) < during.allocated, "{during:?} -> {after:?}");
    }
}
