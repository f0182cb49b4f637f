//! Host buffers reused between calls for the CPU kernels' temporaries (padded copies, GEMM
//! outputs before their final layout).
//!
//! A fresh buffer of a few megabytes is served by the system allocator as new pages, and the
//! first write to each 4 KiB page then costs a page fault: measured here, that made the copies
//! around a convolution's GEMM take as long as the GEMM itself. Keeping a few buffers per thread
//! and handing them out again avoids it.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// At most this many buffers are kept per thread...
const MAX_KEPT: usize = 6;
/// ... holding at most this many bytes in all: a larger buffer is freed as usual.
const MAX_KEPT_BYTES: usize = 512 << 20;

thread_local! {
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of `f32` from this thread's pool, returned to it when dropped.
pub(super) struct Scratch(Vec<f32>);

impl Scratch {
    /// `len` values, all zero.
    pub(super) fn zeroed(len: usize) -> Self {
        let mut buf = Self::uninit(len);
        buf.fill(0.0);
        buf
    }

    /// `len` values left as a previous user wrote them (any `f32`): for buffers the caller
    /// overwrites entirely.
    pub(super) fn uninit(len: usize) -> Self {
        let reused = POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            // The smallest kept buffer that is large enough.
            let best = (0..pool.len())
                .filter(|&i| pool[i].capacity() >= len)
                .min_by_key(|&i| pool[i].capacity());
            best.map(|i| pool.swap_remove(i))
        });
        let mut buf = reused.unwrap_or_default();
        if buf.len() >= len {
            buf.truncate(len);
        } else {
            buf.resize(len, 0.0);
        }
        Scratch(buf)
    }
}

impl Deref for Scratch {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        let bytes = |b: &Vec<f32>| b.capacity() * size_of::<f32>();
        // `try_with`: a buffer dropped while the thread is being torn down is simply freed.
        let _ = POOL.try_with(|pool| {
            let mut pool = pool.borrow_mut();
            pool.push(buf);
            // Over either limit, free the smallest buffers first: the large ones are the ones
            // whose pages are costly to fault in again.
            pool.sort_by_key(|b| std::cmp::Reverse(b.capacity()));
            let mut kept = 0;
            let mut keep = 0;
            for b in pool.iter() {
                if keep == MAX_KEPT || kept + bytes(b) > MAX_KEPT_BYTES {
                    break;
                }
                kept += bytes(b);
                keep += 1;
            }
            pool.truncate(keep);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::Scratch;

    #[test]
    fn buffers_are_reused_and_zeroed_on_request() {
        let first = {
            let mut a = Scratch::uninit(1000);
            a.fill(7.0);
            a.as_ptr()
        };
        // The same allocation comes back, with the previous values when not zeroed...
        let b = Scratch::uninit(800);
        assert_eq!(b.as_ptr(), first);
        assert_eq!(b.len(), 800);
        assert!(b.iter().all(|&v| v == 7.0));
        drop(b);
        // ... and all zero when asked, also when it must grow.
        let c = Scratch::zeroed(900);
        assert!(c.iter().all(|&v| v == 0.0));
        let d = Scratch::zeroed(5000);
        assert_eq!(d.len(), 5000);
        assert!(d.iter().all(|&v| v == 0.0));
    }
}
