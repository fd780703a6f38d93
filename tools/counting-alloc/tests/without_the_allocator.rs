//! A program that does not install the allocator: every count stays at 0 and
//! `is_installed` says so.

#[test]
fn counts_stay_at_zero() {
    assert!(!counting_alloc::is_installed());
    let (v, counts) = counting_alloc::count_on_this_thread(|| vec![1u8; 1_000]);
    assert_eq!(v.len(), 1_000);
    assert_eq!(counts, counting_alloc::AllocCounts::default());
    assert_eq!(counting_alloc::thread_counts().total(), 0);
    assert_eq!(counting_alloc::live_bytes(), 0);
    let ((), used) = counting_alloc::heap_use(|| drop(vec![0u8; 1 << 20]));
    assert_eq!(used, counting_alloc::HeapUse::default());
}
