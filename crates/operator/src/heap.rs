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
//!
//! The figures are the whole program's, so their test (`tests/operator_heap.rs`) runs in a process of its
//! own: tests running beside it would move them.

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
