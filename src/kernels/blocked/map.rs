//! [`BlockedMap`]: a batch of feature maps as `[N][C/16][H][W][16]`, and its conversions.

use std::mem::MaybeUninit;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use super::LANES as L;
use crate::kernels::buffer::{written_by, Scratch};

/// A batch of `n` maps of `c` channels, `h` x `w`, in blocks of 16 channels: the value of channel
/// `ch` at `(y, x)` of image `i` is at `(((i * C/16 + ch / 16) * h + y) * w + x) * 16 + ch % 16`.
/// Lanes past the last channel hold zero.
pub(crate) struct BlockedMap {
    /// The values, laid out as above.
    pub(crate) data: Scratch,
    /// Images, channels, rows and columns.
    pub(crate) n: usize,
    pub(crate) c: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
}

impl BlockedMap {
    /// A map of this shape whose every value the caller writes (the padding lanes included).
    pub(crate) fn uninit(n: usize, c: usize, h: usize, w: usize) -> Self {
        let len = n * c.div_ceil(L) * h * w * L;
        BlockedMap {
            data: Scratch::uninit(len),
            n,
            c,
            h,
            w,
        }
    }

    /// Blocks of 16 channels.
    pub(crate) fn blocks(&self) -> usize {
        self.c.div_ceil(L)
    }

    /// Values in one block of one image: `h * w * 16`.
    pub(crate) fn plane(&self) -> usize {
        self.h * self.w * L
    }

    /// The maps of `x`, `[N, C, H, W]` in row-major order.
    pub(crate) fn from_nchw(x: &[f32], [n, c, h, w]: [usize; 4]) -> Self {
        assert_eq!(x.len(), n * c * h * w, "input length");
        let mut map = Self::uninit(n, c, h, w);
        let (blocks, hw) = (map.blocks(), h * w);
        map.data
            .par_chunks_mut(hw * L)
            .enumerate()
            .for_each(|(i, dst)| {
                let (ni, b) = (i / blocks, i % blocks);
                let lanes = L.min(c - b * L);
                if lanes < L {
                    dst.fill(0.0);
                }
                for lane in 0..lanes {
                    let plane = &x[(ni * c + b * L + lane) * hw..][..hw];
                    for (j, &v) in plane.iter().enumerate() {
                        dst[j * L + lane] = v;
                    }
                }
            });
        map
    }

    /// The maps as `[N, C, H, W]` in row-major order.
    pub(crate) fn to_nchw(&self) -> Vec<f32> {
        unblocked(&self.data, [self.n, self.c, self.h, self.w], None)
    }

    /// The maps of a tensor `[N, C, H, W]` (its values copied to the host as `f32`).
    pub(crate) fn from_tensor<B: Backend>(x: Tensor<B, 4>) -> Self {
        let dims = x.dims();
        Self::from_nchw(&host_values(x), dims)
    }

    /// The maps as a tensor `[N, C, H, W]` on `device`.
    pub(crate) fn into_tensor<B: Backend>(self, device: &B::Device) -> Tensor<B, 4> {
        let shape = [self.n, self.c, self.h, self.w];
        Tensor::from_data(TensorData::new(self.to_nchw(), shape), device)
    }

    /// The maps zero-padded by `p` on every side, `[N][C/16][H+2p][W+2p][16]`.
    pub(crate) fn padded(&self, p: usize) -> Scratch {
        let (hp, wp) = (self.h + 2 * p, self.w + 2 * p);
        let mut out = Scratch::uninit(self.n * self.blocks() * hp * wp * L);
        out.par_chunks_mut(hp * wp * L)
            .zip(self.data.par_chunks(self.plane()))
            .for_each(|(dst, src)| {
                dst[..p * wp * L].fill(0.0);
                dst[(p + self.h) * wp * L..].fill(0.0);
                for (y, row) in src.chunks(self.w * L).enumerate() {
                    let at = (p + y) * wp * L;
                    let dst = &mut dst[at..at + wp * L];
                    dst[..p * L].fill(0.0);
                    dst[p * L..(p + self.w) * L].copy_from_slice(row);
                    dst[(p + self.w) * L..].fill(0.0);
                }
            });
        out
    }
}

/// Maps in the blocked layout (`data`, `[N][C/16][H][W][16]`) as `[N, C, H, W]` in row-major
/// order, plus `bias[c]` on channel `c` when given: each value written once.
pub(crate) fn unblocked(data: &[f32], [n, c, h, w]: [usize; 4], bias: Option<&[f32]>) -> Vec<f32> {
    let hw = h * w;
    let blocks = c.div_ceil(L);
    let gather = |y: &mut [MaybeUninit<f32>]| {
        y.par_chunks_mut(hw).enumerate().for_each(|(i, dst)| {
            let (ni, ci) = (i / c, i % c);
            let src = &data[(ni * blocks + ci / L) * hw * L..][..hw * L];
            let b = bias.map(|b| b[ci]);
            for (j, d) in dst.iter_mut().enumerate() {
                let v = src[j * L + ci % L];
                d.write(b.map_or(v, |b| v + b));
            }
        })
    };
    // SAFETY: `gather` writes every value of every plane.
    unsafe { written_by(n * c * hw, gather) }
}

/// The values of a tensor, as `f32` on the host, in row-major order.
pub(crate) fn host_values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("converted to f32 above")
}
