//! `keep_freed_memory` in a process of its own, since it changes the whole process's allocator.

/// Minor page faults of this process so far.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn page_faults() -> i64 {
    // SAFETY: `getrusage` writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    usage.ru_minflt
}

/// Page faults while a block of `bytes` is allocated and written through.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn faults_of_a_block(bytes: usize) -> i64 {
    let before = page_faults();
    let mut block = vec![0u8; bytes];
    for page in block.chunks_mut(4096) {
        page[0] = 1;
    }
    std::hint::black_box(&block);
    drop(block);
    page_faults() - before
}

/// A block larger than glibc's largest mmap threshold (32 MiB), freed and allocated again: with
/// glibc's defaults each allocation maps fresh pages (a fault per page written, or per huge page
/// where the system backs mappings with them); once the process keeps what it frees, the next
/// ones reuse the first one's pages. (Under the 64 MiB of a thread's heap: the test runs on a
/// thread of its own, and glibc maps a larger block for a thread other than the main one
/// whatever the settings.)
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn a_freed_block_comes_back_without_fresh_pages() {
    const BYTES: usize = 48 << 20;
    let fresh = faults_of_a_block(BYTES);
    let huge_pages = (BYTES >> 21) as i64;
    assert!(
        fresh >= huge_pages,
        "{fresh} page faults: glibc's defaults map the block fresh"
    );
    assert!(aia::kernels::keep_freed_memory());
    faults_of_a_block(BYTES);
    let kept = faults_of_a_block(BYTES);
    assert!(
        kept * 10 < fresh,
        "{kept} page faults with the memory kept, {fresh} without"
    );
}
