//! The allocator's figures follow what the program holds. Alone in its own test binary: the figures are the
//! whole process's, and tests allocating and freeing on other threads would move them (see `src/heap.rs`).

use kubedrs_operator::heap::figures;

#[test]
fn the_figures_follow_what_the_program_holds() {
    let before = figures().expect("jemalloc answers");
    let block = std::hint::black_box(vec![1u8; 64 << 20]);
    let during = figures().expect("jemalloc answers");
    assert!(during.allocated >= before.allocated + (64 << 20), "{before:?} -> {during:?}");
    assert!(during.resident >= during.allocated / 2, "{during:?}");
    drop(block);
    let after = figures().expect("jemalloc answers");
    assert!(after.allocated + (32 << 20) < during.allocated, "{during:?} -> {after:?}");
}
