//! [`FoldedConv`]: a stride-1 convolution with its BatchNorm folded in, on blocked maps.

use super::map::BlockedMap;
use super::LANES as L;
use crate::kernels::conv::direct::{pack_weights, packed_weights_len, run, Epilogue, Isa};
use crate::kernels::conv::geometry::Grid;

/// A convolution of odd square kernel, stride 1 and "same" padding (`k / 2`), followed by an
/// inference BatchNorm, as packed weights for the direct kernel: `y = conv(x, w * s) + t` per
/// output channel, with `s = gamma / sqrt(var + eps)` and `t = beta - mean * s`.
pub(crate) struct FoldedConv {
    /// Packed for the direct kernel. Not from the scratch pool: the cache keeps it.
    weights: Vec<f32>,
    /// `t`, zero-padded to whole blocks.
    bias: Vec<f32>,
    out_channels: usize,
    in_channels: usize,
    kernel: usize,
}

impl FoldedConv {
    /// The convolution of `weight` (`[O, C, k, k]`, row-major), with output channel `o` scaled by
    /// `scale[o]` and shifted by `shift[o]`.
    pub(crate) fn new(weight: &[f32], dims: [usize; 4], scale: &[f32], shift: &[f32]) -> Self {
        let [o, c, kh, kw] = dims;
        assert!(kh == kw && kh % 2 == 1, "odd square kernel");
        assert_eq!(weight.len(), o * c * kh * kw, "weight length");
        assert!(
            scale.len() == o && shift.len() == o,
            "one scale and shift per channel"
        );
        let grid = Self::grid(o, c, kh, 1, 1, 1);
        let mut bias = vec![0.0; o.div_ceil(L) * L];
        bias[..o].copy_from_slice(shift);
        let mut weights = vec![0.0; packed_weights_len(&grid)];
        pack_weights(grid, weight, Some(scale), &mut weights);
        FoldedConv {
            weights,
            bias,
            out_channels: o,
            in_channels: c,
            kernel: kh,
        }
    }

    /// `act(conv(x) + residual)`, where `act` is a leaky ReLU of this slope (0: a ReLU) or none.
    ///
    /// # Panics
    ///
    /// If the kernel path has no tiles of the direct convolution ([`Isa::best`]).
    pub(crate) fn forward(
        &self,
        x: &BlockedMap,
        residual: Option<&BlockedMap>,
        slope: Option<f32>,
    ) -> BlockedMap {
        let isa = Isa::best().expect("the direct convolution needs AVX2 and FMA");
        self.forward_on(isa, x, residual, slope)
    }

    /// [`forward`](Self::forward) with the tiles of `isa`, which the CPU must run.
    pub(crate) fn forward_on(
        &self,
        isa: Isa,
        x: &BlockedMap,
        residual: Option<&BlockedMap>,
        slope: Option<f32>,
    ) -> BlockedMap {
        assert_eq!(x.c, self.in_channels, "input channels");
        let (k, o) = (self.kernel, self.out_channels);
        let residual = residual.map(|r| {
            assert_eq!((r.n, r.c, r.h, r.w), (x.n, o, x.h, x.w), "residual shape");
            &r.data[..]
        });
        let epilogue = Epilogue {
            bias: Some(&self.bias),
            residual,
            slope,
        };
        let data = if k == 1 {
            // A 1x1 kernel sees each position alone: the map is one long row, which the kernel
            // tiles without a remainder at every row end.
            let grid = Self::grid(o, x.c, 1, x.n, 1, x.h * x.w);
            run(isa, grid, &x.data, &self.weights, epilogue)
        } else {
            let grid = Self::grid(o, x.c, k, x.n, x.h, x.w);
            run(isa, grid, &x.padded(k / 2), &self.weights, epilogue)
        };
        BlockedMap {
            data,
            n: x.n,
            c: o,
            h: x.h,
            w: x.w,
        }
    }

    /// The direct kernel's geometry for a `k x k` kernel padded by `k / 2` on `n` maps `h x w`.
    fn grid(o: usize, c: usize, k: usize, n: usize, h: usize, w: usize) -> Grid {
        Grid {
            n,
            c,
            o,
            h,
            w,
            kh: k,
            kw: k,
            ph: k / 2,
            pw: k / 2,
        }
    }
}
