//! Transparent huge pages for the large, short-lived arrays an open builds (the recovered
//! records, their partition by bucket, the index table): a 2 MiB page faults once where 512
//! small pages fault 512 times. On a machine whose transparent huge pages are `madvise`-only
//! (a common default) the kernel uses them only where asked; where they are off, or the kernel
//! refuses, nothing changes but the speed.

/// Asks the kernel to back the whole 2 MiB pages inside `memory`
/// with huge pages, before they are first touched. Advisory: errors are ignored.
pub(crate) fn advise<T>(memory: &mut [std::mem::MaybeUninit<T>]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = memory.as_mut_ptr() as usize;
        let end = start + std::mem::size_of_val(memory);
        let (from, to) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
        if from < to {
            // SAFETY: `[from, to)` lies inside `memory`, which this call borrows mutably, so
            // no other reference can observe the change; MADV_HUGEPAGE changes only how the
            // kernel backs the pages (their contents, and their addresses, stay as they are).
            unsafe {
                libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = memory;
}
