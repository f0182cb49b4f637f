//! The CPU kernels' host buffers: [`Scratch`], reused between calls for temporaries (padded
//! copies, GEMM outputs before their final layout), and [`zeroed_f32`] and `from_planes` for
//! outputs that become tensors, zeroed or written in parallel.
//!
//! A fresh buffer of a few megabytes is served by the system allocator as new pages, and the
//! first write to each 4 KiB page then costs a page fault: measured here, that made the copies
//! around a convolution's GEMM take as long as the GEMM itself. Keeping a few buffers for the
//! whole process and handing them out again avoids it. The pool holds at most
//! [`MAX_KEPT_BYTES`]: at 448x448 and batch 32, each temporary of TResNet-M's first stage is
//! about 100 MB, next to several GB of activations.

use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

use rayon::prelude::*;

/// At most this many buffers are kept...
const MAX_KEPT: usize = 6;
/// ... holding at most this many bytes in all: a larger buffer is freed as usual.
const MAX_KEPT_BYTES: usize = 512 << 20;

/// Shared by all threads, so that the memory kept stays bounded however many threads run models.
static POOL: Mutex<Pool> = Mutex::new(Pool { free: Vec::new() });

/// The pool, also after a thread panicked while holding it (a list of free buffers cannot be
/// left inconsistent).
fn pool() -> std::sync::MutexGuard<'static, Pool> {
    POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Free buffers, largest first.
struct Pool {
    free: Vec<Vec<f32>>,
}

impl Pool {
    /// The smallest free buffer of at least `len` values' capacity, cut to `len` values if it
    /// holds more: what they were.
    fn take(&mut self, len: usize) -> Option<Vec<f32>> {
        let best = (0..self.free.len())
            .filter(|&i| self.free[i].capacity() >= len)
            .min_by_key(|&i| self.free[i].capacity())?;
        let mut buf = self.free.remove(best);
        buf.truncate(len);
        Some(buf)
    }

    /// Keeps `buf` for later, within the limits: the largest buffers that fit them (the ones
    /// whose pages are the most costly to fault in again), the others freed.
    fn give(&mut self, buf: Vec<f32>) {
        let at = self
            .free
            .partition_point(|b| b.capacity() >= buf.capacity());
        self.free.insert(at, buf);
        let (mut kept_bytes, mut kept) = (0, 0);
        self.free.retain(|b| {
            let bytes = b.capacity() * size_of::<f32>();
            let keep = kept < MAX_KEPT && kept_bytes + bytes <= MAX_KEPT_BYTES;
            if keep {
                kept_bytes += bytes;
                kept += 1;
            }
            keep
        });
    }
}

/// A buffer of `f32` from the process's pool, returned to it when dropped.
pub(crate) struct Scratch(Vec<f32>);

impl Scratch {
    /// `len` values, all zero.
    pub(crate) fn zeroed(len: usize) -> Self {
        let mut buf = Self::uninit(len);
        buf.par_chunks_mut(ZERO_CHUNK)
            .for_each(|chunk| chunk.fill(0.0));
        buf
    }

    /// `len` values left as a previous user wrote them (any `f32`): for buffers the caller
    /// overwrites entirely.
    pub(crate) fn uninit(len: usize) -> Self {
        // Grown (or made) after the pool's lock is released, since growing runs on all threads:
        // a thread waiting on rayon may run another task that takes a buffer.
        let mut buf = pool().take(len).unwrap_or_default();
        grow_zeroed(&mut buf, len);
        // In the crate's tests every value is NaN, so that a kernel that reads a value it did
        // not write fails them.
        #[cfg(test)]
        buf.fill(f32::NAN);
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
        pool().give(std::mem::take(&mut self.0));
    }
}

/// A zeroed `f32` buffer of `n` elements for a kernel's output.
///
/// Two costs of `vec![0.0; n]` are avoided:
/// - a large buffer comes from the kernel as fresh pages, and faulting in thousands of 4 KiB
///   pages costs as much as a loss kernel itself: on Linux the buffer is advised onto
///   transparent huge pages before its first touch, which removes most of that cost;
/// - freed memory is reused with one `memset` on the calling thread, which the other threads
///   wait for: in a training step these serial passes took longer than several of the kernels
///   that filled the buffers. The zeroing (and the first touch of fresh pages) runs in parallel
///   chunks instead.
///
/// (An output outlives the call, so it cannot come from the `Scratch` pool.)
pub fn zeroed_f32(n: usize) -> Vec<f32> {
    let mut v = output_capacity(n);
    grow_zeroed(&mut v, n);
    v
}

/// A new buffer of `planes * plane` values for a kernel's output, plane `i` being the values of
/// `f(i)`: computed in parallel, a plane or more per task, each value written once (no zeroing
/// first, which costs another pass over the buffer).
///
/// # Panics
///
/// If `f(i)` yields fewer than `plane` values.
#[cfg(feature = "flex")]
pub(crate) fn from_planes<I: Iterator<Item = f32>>(
    planes: usize,
    plane: usize,
    f: impl Fn(usize) -> I + Sync,
) -> Vec<f32> {
    let n = planes * plane;
    let fill = |v: &mut [MaybeUninit<f32>]| {
        if n == 0 {
            return;
        }
        v.par_chunks_mut(plane)
            .with_min_len(ZERO_CHUNK.div_ceil(plane))
            .enumerate()
            .for_each(|(i, out)| {
                let mut written = 0;
                for (o, value) in out.iter_mut().zip(f(i)) {
                    o.write(value);
                    written += 1;
                }
                assert_eq!(written, plane, "plane {i} has {plane} values");
            })
    };
    // SAFETY: `fill` writes each value of each plane, or panics (before `written_by` sets the
    // length).
    unsafe { written_by(n, fill) }
}

/// A new buffer of `n` values for a kernel's output, written by `fill` into the uninitialised
/// slice it is given (no zeroing first).
///
/// # Safety
/// `fill` writes each of the `n` values (a GEMM that stores its whole output does).
#[cfg(feature = "flex")]
pub(crate) unsafe fn written_by(n: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v = output_capacity(n);
    // As for `Scratch::uninit`: in the crate's tests, a value `fill` leaves is NaN.
    #[cfg(test)]
    v.spare_capacity_mut()[..n].fill(MaybeUninit::new(f32::NAN));
    fill(&mut v.spare_capacity_mut()[..n]);
    // SAFETY: `fill` wrote the first `n` values, within the capacity, as the caller guarantees.
    unsafe { v.set_len(n) };
    v
}

/// The sum of the `count` equal parts of `parts`, as a new buffer for a kernel's output: the
/// partial results of threads that each reduced their share, added in a fixed order (so that a
/// run is reproducible bit for bit on a machine), in parallel, each value written once.
#[cfg(feature = "flex")]
pub(crate) fn sum_of_parts(parts: &[f32], count: usize) -> Vec<f32> {
    let len = parts.len() / count.max(1);
    let add = |k: usize, out: &mut [MaybeUninit<f32>]| {
        let at = k * ZERO_CHUNK;
        let n = out.len();
        let part = |p: usize| &parts[p * len + at..][..n];
        for (v, &first) in out.iter_mut().zip(part(0)) {
            v.write(first);
        }
        // SAFETY: the loop above wrote every value of `out`.
        let out = unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) };
        for p in 1..count {
            for (v, &term) in out.iter_mut().zip(part(p)) {
                *v += term;
            }
        }
    };
    // One chunk runs on the calling thread: handing it to another costs more than the sums.
    let sum = |out: &mut [MaybeUninit<f32>]| {
        if len <= ZERO_CHUNK {
            add(0, out);
        } else {
            out.par_chunks_mut(ZERO_CHUNK)
                .enumerate()
                .for_each(|(k, out)| add(k, out));
        }
    };
    // SAFETY: `add` writes every value of the chunk it is given, and `sum` gives it all of them.
    unsafe { written_by(len, sum) }
}

/// An empty buffer with room for `n` values of a kernel's output: on Linux, when large, advised
/// onto transparent huge pages before its first touch.
fn output_capacity(n: usize) -> Vec<f32> {
    let v = Vec::with_capacity(n);
    #[cfg(target_os = "linux")]
    if n * 4 >= 4 << 20 {
        let start = v.as_ptr() as usize;
        let aligned = (start + 4095) & !4095;
        let len = (start + n * 4).saturating_sub(aligned) & !4095;
        // SAFETY: the range lies inside the allocation; MADV_HUGEPAGE only changes how the
        // kernel backs it, never its contents, and a failure just leaves small pages.
        unsafe {
            libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
    }
    v
}

/// Values zeroed per task: large enough to amortise the task, small enough to share.
const ZERO_CHUNK: usize = 1 << 16;

/// Zeros appended to `v` up to `len` values (none if it holds as many), written in parallel
/// chunks.
fn grow_zeroed(v: &mut Vec<f32>, len: usize) {
    let more = len.saturating_sub(v.len());
    v.reserve_exact(more);
    v.spare_capacity_mut()[..more]
        .par_chunks_mut(ZERO_CHUNK)
        .for_each(|chunk| chunk.fill(MaybeUninit::new(0.0)));
    // SAFETY: the loop above initialised the `more` values past the length, within the
    // capacity that `reserve_exact` ensured.
    unsafe { v.set_len(v.len() + more) };
}

#[cfg(test)]
mod tests {
    use super::{grow_zeroed, zeroed_f32, Pool, Scratch, MAX_KEPT, MAX_KEPT_BYTES};

    #[test]
    fn the_pool_reuses_the_best_fit_and_stays_bounded() {
        let mut pool = Pool { free: Vec::new() };
        assert!(pool.take(1).is_none());
        let mut a = vec![0.0; 1000];
        a.fill(7.0);
        let (a_ptr, b) = (a.as_ptr(), vec![9.0; 4000]);
        let b_ptr = b.as_ptr();
        pool.give(a);
        pool.give(b);
        // The smallest free buffer that fits comes back, with its values...
        let c = pool.take(800).expect("a fits");
        assert_eq!((c.as_ptr(), c.len()), (a_ptr, 800));
        assert!(c.iter().all(|&v| v == 7.0));
        // ... a larger request takes the larger one...
        let d = pool.take(3000).expect("b fits");
        assert_eq!(d.as_ptr(), b_ptr);
        // ... as long as it was, when shorter than asked (the caller grows it)...
        pool.give(d);
        let mut e = pool.take(3500).expect("b fits");
        assert_eq!((e.as_ptr(), e.len()), (b_ptr, 3000));
        // ... zero where it grows again within its capacity...
        grow_zeroed(&mut e, 3500);
        assert_eq!((e.as_ptr(), e.len()), (b_ptr, 3500));
        assert!(e[..3000].iter().all(|&v| v == 9.0));
        assert!(e[3000..].iter().all(|&v| v == 0.0));
        // ... and none past every capacity.
        assert!(pool.take(5000).is_none());
        // At most MAX_KEPT buffers, the largest ones, and never more than MAX_KEPT_BYTES.
        for len in 1..=MAX_KEPT + 3 {
            pool.give(vec![0.0; len * 100]);
        }
        assert_eq!(pool.free.len(), MAX_KEPT);
        assert_eq!(pool.free[0].capacity(), (MAX_KEPT + 3) * 100);
        // A buffer over the byte limit on its own is freed, the others kept.
        pool.give(vec![0.0; MAX_KEPT_BYTES / 4 + 1]);
        assert_eq!(pool.free.len(), MAX_KEPT);
        assert_eq!(pool.free[0].capacity(), (MAX_KEPT + 3) * 100);
        // Two buffers of 3/4 of the limit: only one fits.
        pool.give(vec![0.0; MAX_KEPT_BYTES / 16 * 3]);
        pool.give(vec![0.0; MAX_KEPT_BYTES / 16 * 3]);
        let kept: usize = pool.free.iter().map(|b| b.capacity() * 4).sum();
        assert!(kept <= MAX_KEPT_BYTES, "{kept} bytes kept");
        assert_eq!(pool.free[0].capacity(), MAX_KEPT_BYTES / 16 * 3);
        assert_ne!(pool.free[1].capacity(), MAX_KEPT_BYTES / 16 * 3);
    }

    #[test]
    fn zeroed_outputs_are_zero_whatever_memory_they_reuse() {
        // Around the huge-page threshold (4 MiB) and the chunks (2^16 values), on either side.
        for n in [1, 70_000, (1 << 20) - 3, (1 << 20) + 65_537] {
            drop(vec![f32::NAN; n]);
            let v = zeroed_f32(n);
            assert_eq!(v.len(), n);
            assert!(v.iter().all(|&x| x == 0.0), "{n} values");
        }
    }

    #[test]
    #[cfg(feature = "flex")]
    fn parts_add_in_their_order() {
        use super::sum_of_parts;
        // One chunk (summed on the calling thread) and several (in parallel, the last short),
        // one part and three; values whose sum depends on the order of the additions.
        for (len, count) in [(100, 3), (3 * (1 << 16) + 5, 3), (70_000, 1)] {
            let parts: Vec<f32> = (0..len * count)
                .map(|i| [1.0e8, 1.0, -1.0e8, 0.25][i % 4] * (1.0 + (i % 7) as f32))
                .collect();
            let sums = sum_of_parts(&parts, count);
            assert_eq!(sums.len(), len);
            for (j, &sum) in sums.iter().enumerate() {
                let want = (1..count).fold(parts[j], |acc, p| acc + parts[p * len + j]);
                assert_eq!(
                    sum.to_bits(),
                    want.to_bits(),
                    "value {j} of {len}, {count} parts"
                );
            }
        }
    }

    #[test]
    #[cfg(feature = "flex")]
    fn planes_hold_their_values_and_a_short_plane_panics() {
        use super::from_planes;
        // Planes longer and shorter than a task's share (with_min_len), and a one-value plane.
        for (planes, plane) in [(5, 70_000), (3000, 7), (100_000, 1)] {
            let v = from_planes(planes, plane, |i| {
                (0..plane).map(move |j| (i * plane + j) as f32)
            });
            assert_eq!(v.len(), planes * plane);
            assert!(
                v.iter().enumerate().all(|(k, &x)| x == k as f32),
                "{planes} x {plane}"
            );
        }
        assert!(from_planes(0, 3, |_| std::iter::empty()).is_empty());
        let short = std::panic::catch_unwind(|| from_planes(2, 4, |_| [1.0; 3].into_iter()));
        assert!(short.is_err());
    }

    #[test]
    fn zeroed_scratch_is_zero_whatever_was_returned() {
        for len in [10, 1000, 100_000] {
            let mut a = Scratch::uninit(len);
            a.fill(f32::NAN);
            drop(a);
            let b = Scratch::zeroed(len);
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&v| v == 0.0));
        }
    }
}
