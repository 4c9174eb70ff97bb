//! The process's allocator settings. glibc's allocator, left to itself, serves every
//! allocation above a threshold it adjusts (to a few MiB at most) with its own `mmap`, and
//! gives the top of a heap back to the kernel once more than twice that is free. A broker that
//! streams 1 MiB produce requests, and LMDB, which allocates every large value's pages for the
//! length of one commit, then get fresh, zero-filled pages from the kernel for every request:
//! measured with `weir-bench kafka`, half of the writer thread's time. [`tune`] makes
//! allocations below [`MMAP_THRESHOLD_BYTES`] come from one heap shared by every thread and
//! lets it keep up to [`TRIM_THRESHOLD_BYTES`] free at its top; [`trim`], which the
//! maintenance thread runs every [`TRIM_INTERVAL`], gives what is free back to the kernel, so
//! memory still returns after a burst. See docs/decisions.md, "Memory".

use std::time::Duration;

/// Allocations at least this large get their own mapping.
pub const MMAP_THRESHOLD_BYTES: usize = 2 << 20;
/// Free bytes a heap keeps at its top between trims.
pub const TRIM_THRESHOLD_BYTES: usize = 16 << 20;
/// Heaps: one, shared by every thread. `malloc_trim` gives back free memory at the top of
/// the main heap only, so memory freed at the top of a per-thread heap would stay with the
/// process (a shard's, after its connections close) until that thread frees a large chunk
/// again. Small allocations still come from each thread's own cache without a lock.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS_MAX: libc::c_int = 1;
/// Time between two [`trim`]s.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(5);

/// Applies the thresholds; call before any other thread starts. An operator who sets
/// glibc's own tunables (`GLIBC_TUNABLES`) gets exactly those: nothing is changed then.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune() {
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    let to_int = |bytes: usize| libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only sets allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, to_int(MMAP_THRESHOLD_BYTES));
        libc::mallopt(libc::M_TRIM_THRESHOLD, to_int(TRIM_THRESHOLD_BYTES));
        libc::mallopt(libc::M_ARENA_MAX, ARENAS_MAX);
    }
}

/// Returns the heaps' free memory to the kernel.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim() {
    // SAFETY: malloc_trim only releases free memory; it takes the allocator's own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators keep their defaults.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}

/// Other allocators keep their defaults.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() {}
