//! The process-wide allocator policy, set by the binaries (the `quill` command and the
//! benchmarks, which include this file): a library does not choose its host's allocator.
//!
//! [`HugePages`], the global allocator: the system's, with large blocks in transparent huge
//! pages. Loading a model writes each weight into fresh memory several times over (the file's
//! bytes, the values, the packed panels): 215,000 page faults for the f32 124M checkpoint,
//! 374,000 from its GGUF, each a trip into the kernel for 4 KiB. Blocks of [`LARGE`] bytes or
//! more are marked `MADV_HUGEPAGE` before anything is written to them, so that where the
//! kernel's transparent huge pages are `madvise` (many distributions' default; `always` needs
//! nothing, `never` ignores it) they fault in 2 MiB at a time. Only the whole 2 MiB pages
//! inside a block are marked.

use std::alloc::{GlobalAlloc, Layout, System};

/// Keeps freed activation-sized buffers in the process for the next forward pass, on every
/// thread. glibc returns a freed buffer of 128 KiB or more to the system (mapped ones at once,
/// the heap's top beyond 128 KiB), so every forward pass faulted its activations in again page
/// by page: 14% of a 512-token prompt's time, measured with `perf`. Buffers up to 32 MiB now
/// come from the heap, which is trimmed only past 512 MiB free.
///
/// A thread other than the main one allocates from an arena of 64 MiB heaps, and glibc unmaps a
/// whole heap the moment it is free, whatever the trim threshold, unless `M_TOP_PAD` asks it
/// to keep that much spare: so a prompt pass whose buffers came from a compute thread's arena
/// (which thread's varies from run to run) made and unmapped a heap about fifty times, faulting
/// 37,000 pages more (0.13 s of a 0.5 s f16 prompt) in about one process of six. With 64 MiB
/// of top pad a heap stays mapped once made. The pad is address space, not memory: the main
/// heap grows by it at a time, and pages are faulted in only when written.
/// Call first thing in a process.
pub fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets the allocator's thresholds, under its own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// The size from which glibc maps a block of its own instead of taking it from a heap, as
/// [`keep_freed_buffers`] sets it.
const MMAP_THRESHOLD: usize = 32 << 20;

/// Blocks from which [`HugePages`] asks for huge pages: any such block holds a whole 2 MiB
/// page (f32 GPT-2 124M's smallest matrix is 2.4 MB, its query-key-value one 7 MB).
pub const LARGE: usize = 4 << 20;

/// The size of an x86-64 and aarch64 (4 KiB granule) transparent huge page.
const HUGE_PAGE: usize = 2 << 20;

/// [`System`] with large blocks marked for huge pages (see the module's documentation).
pub struct HugePages;

/// Marks the whole huge pages of `[ptr, ptr + size)`, a block just allocated: those not yet
/// written fault in as huge pages, those in use stay (the kernel may merge them later). A
/// failure (a kernel without transparent huge pages) leaves the block as it was.
fn advise(ptr: *mut u8, size: usize) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if !ptr.is_null() && size >= LARGE {
        let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
        let end = (ptr as usize + size) / HUGE_PAGE * HUGE_PAGE;
        if end > start {
            // SAFETY: [start, end) lies inside the block just allocated, page-aligned;
            // MADV_HUGEPAGE changes how its pages are backed, never their contents.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (ptr, size);
}

// SAFETY: every call goes to System with the caller's arguments unchanged; `advise` only
// changes the backing of whole pages inside a block System returned.
unsafe impl GlobalAlloc for HugePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        advise(ptr, layout.size());
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let size = layout.size();
        if cfg!(all(target_os = "linux", target_env = "gnu"))
            && (LARGE..MMAP_THRESHOLD).contains(&size)
        {
            // A glibc heap block: calloc would clear it before the advice (with the top pad,
            // glibc counts a whole heap as written), faulting it in 4 KiB pages; cleared here
            // after the advice, it faults in huge pages.
            let ptr = System.alloc(layout);
            advise(ptr, size);
            if !ptr.is_null() {
                ptr.write_bytes(0, size);
            }
            return ptr;
        }
        // Small blocks have no whole huge page; calloc maps blocks from the threshold up
        // freshly and writes nothing, so the advice still comes before the first fault.
        // Elsewhere calloc's fresh pages are left to fault in untouched.
        let ptr = System.alloc_zeroed(layout);
        advise(ptr, size);
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let grown = System.realloc(ptr, layout, new_size);
        advise(grown, new_size);
        grown
    }
}

#[cfg(test)]
mod tests {
    /// Page faults this thread has taken so far.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn thread_faults() -> i64 {
        // SAFETY: getrusage writes one rusage, which is plain data.
        unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut usage), 0);
            usage.ru_minflt
        }
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn a_compute_threads_freed_buffers_stay_in_the_process() {
        // A forward pass on a thread of its own arena: 160 MB of activation-sized buffers
        // (3 MiB, below the huge-page size) written, freed, and asked for again. The second
        // pass must find them in place: without the top pad, glibc unmapped the arena's
        // later heaps when they fell free, and the second pass faulted 22,000 pages again.
        super::keep_freed_buffers();
        let faults = std::thread::spawn(|| {
            let pass = || {
                let before = thread_faults();
                let buffers: Vec<Vec<u8>> = (0..50).map(|i| vec![i as u8 + 1; 3 << 20]).collect();
                let sum: u64 = buffers.iter().map(|b| b[b.len() / 2] as u64).sum();
                assert_eq!(sum, 50 * 51 / 2);
                drop(buffers);
                thread_faults() - before
            };
            (pass(), pass())
        })
        .join()
        .unwrap();
        let pages = 50 * (3 << 20) / 4096;
        assert!(
            faults.0 >= pages / 2,
            "the first pass faults its buffers in: {faults:?}"
        );
        assert!(
            faults.1 < pages / 20,
            "the second pass reuses them: {faults:?}"
        );
    }

    #[test]
    fn large_blocks_keep_their_contents_and_sizes() {
        // (Imports inside: the benchmarks include this file without a test harness.)
        use super::{HugePages, LARGE};
        use std::alloc::{GlobalAlloc, Layout};
        // Through the allocator directly: small and large, zeroed, grown past LARGE.
        let a = HugePages;
        for size in [64, LARGE - 1, LARGE, 3 * LARGE + 12345] {
            let layout = Layout::from_size_align(size, 64).unwrap();
            // SAFETY: a non-zero size; the block is written and read within its size and
            // freed with its layout.
            unsafe {
                let z = a.alloc_zeroed(layout);
                assert!(!z.is_null());
                let z = std::slice::from_raw_parts_mut(z, size);
                assert!(z.iter().all(|&b| b == 0), "{size}: zeroed");
                z[size - 1] = 7;
                let grown = a.realloc(z.as_mut_ptr(), layout, 2 * size);
                assert_eq!(*grown.add(size - 1), 7, "{size}: realloc keeps contents");
                a.dealloc(grown, Layout::from_size_align(2 * size, 64).unwrap());
                // Written, freed, and asked for zeroed again: reused heap memory (cleared by
                // HugePages itself from LARGE up) comes back zeroed too.
                let dirty = a.alloc(layout);
                dirty.write_bytes(0xab, size);
                a.dealloc(dirty, layout);
                let z = a.alloc_zeroed(layout);
                let z = std::slice::from_raw_parts_mut(z, size);
                assert!(z.iter().all(|&b| b == 0), "{size}: zeroed after reuse");
                a.dealloc(z.as_mut_ptr(), layout);
            }
        }
    }
}
