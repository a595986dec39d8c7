//! The process-wide allocator policy, set by the binaries (the `quill` command and the
//! benchmarks, which include this file): a library does not choose its host's allocator.

/// Keeps freed activation-sized buffers in the process for the next forward pass. glibc
/// returns a freed buffer of 128 KiB or more to the system (mapped ones at once, the heap's
/// top beyond 128 KiB), so every forward pass faulted its activations in again page by page:
/// 14% of a 512-token prompt's time, measured with `perf`. Buffers up to 32 MiB now come from
/// the heap, which is trimmed only past 512 MiB free. Call first thing in a process.
pub fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets two of the allocator's thresholds; called before other threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}
