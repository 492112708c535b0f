//! Memory follows live data: settings of the C allocator (glibc) so that
//! freed memory goes back to the system instead of staying with the process.
//!
//! By default glibc raises its mmap threshold after a large block is freed,
//! so later large blocks (a big POST body, a map shard being rehashed) come
//! from the heap and stay there after they are freed; and every thread may
//! get an arena of its own, which thousands of connection threads fragment.
//! Elsewhere (musl) these calls do nothing.

/// Blocks from this size up are mapped on their own and unmapped when freed.
pub const MMAP_THRESHOLD_BYTES: i32 = 256 * 1024;
/// Arenas the allocator may create (glibc's default is 8 per core).
pub const MAX_ARENAS: i32 = 4;

/// Sets the allocator up at start; call once, before the threads start.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before other
    // threads allocate much.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_ARENA_MAX, MAX_ARENAS);
    }
}

/// Gives free memory at the top of every arena back to the system (after
/// many tenants were forgotten, or many connections left).
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}
