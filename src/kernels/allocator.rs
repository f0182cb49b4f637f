//! How the process's allocator returns freed memory to the system, which a training step on the
//! CPU pays for when the memory comes back.

/// Keeps freed memory in the process for reuse, where the system's C library is glibc: blocks
/// come from glibc's heaps, not from mappings of their own (`M_MMAP_MAX` 0), and free memory at
/// a heap's top stays there instead of going back to the system (`M_TRIM_THRESHOLD` -1, which
/// glibc reads as never). A thread other than the main one still gets a mapping of its own for a
/// block over 64 MiB, its heaps' size.
///
/// Each training step frees its activations and allocates them again. With glibc's defaults,
/// much of that memory goes back to the system in between and returns as fresh pages, which the
/// kernel zeroes on first touch; blocks of 32 MiB and more (a batch of 64 at 224x224 has dozens)
/// always do. In benchmarks of TResNet-M's training steps on 2 cores, at 224x224 batch 8 and
/// 448x448 batch 2, keeping the blocks under 32 MiB was enough: 0.18 million page faults in a
/// minute of steps against 1.8-2.2 million, 4-15% less time a step (PyTorch's 4-5% less with the
/// same settings as `GLIBC_TUNABLES`). At 224x224 batch 64 it was not (19.6 s a step, 2.8
/// million page faults), and the kernel's zeroing of pages took a third of the CPU time; keeping
/// every block, a step took 12.2-13.0 s against 18.2-19.3 with glibc's defaults, with 0.41
/// million page faults against 2.7, and a peak resident memory of 4.69 GB against 4.63 (at
/// batch 8, as many page faults and as much memory as keeping the blocks under 32 MiB). The
/// process keeps what it frees, up to its peak, so this is for programs that train, which call
/// it once at their start: it changes the allocator of the whole process.
///
/// Returns whether the allocator took both settings: `false` on other C libraries and systems,
/// where nothing changes.
///
/// ```
/// // At the start of a training program.
/// let kept = aia::kernels::keep_freed_memory();
/// assert_eq!(kept, cfg!(all(target_os = "linux", target_env = "gnu")));
/// ```
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only sets the allocator's parameters; glibc refuses (returns 0)
        // values outside their range and leaves the parameter as it was.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, -1) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
