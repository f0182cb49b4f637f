//! [`FoldedConv`]: a stride-1 convolution with its BatchNorm folded in, on blocked maps.

use std::sync::{Arc, OnceLock};

use super::map::BlockedMap;
use super::winograd::{self, Winograd};
use super::LANES as L;
use crate::kernels::conv::direct::{pack_weights, packed_weights_len, run, Epilogue, Isa};
use crate::kernels::conv::geometry::Grid;

/// How a [`FoldedConv`] computes its convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    /// The direct kernel.
    Direct,
    /// Winograd's around the direct kernel's 1x1 products, 3x3 kernels only: this variant, or
    /// the faster one for each map ([`Winograd::for_map`]).
    Winograd(Option<Winograd>),
}

impl Algorithm {
    /// The faster of the two for a `k x k` kernel on TResNet's layers: Winograd's for 3x3, the
    /// variant chosen for each map.
    pub(crate) fn for_kernel(k: usize) -> Self {
        if k == 3 {
            Self::Winograd(None)
        } else {
            Self::Direct
        }
    }
}

/// A convolution's kernels, `[O, C, k, k]` in row-major order, where their owner keeps them:
/// Winograd's algorithms read them again at each variant's first use, and hold them so rather
/// than as a copy (60 MB of TResNet-M's 3x3 kernels, which the model holds anyway).
pub(crate) type SharedKernels = Arc<dyn AsRef<[f32]> + Send + Sync>;

/// A convolution of odd square kernel, stride 1 and "same" padding (`k / 2`), followed by an
/// inference BatchNorm, as packed weights: `y = conv(x, w * s) + t` per output channel, with
/// `s = gamma / sqrt(var + eps)` and `t = beta - mean * s`.
pub(crate) struct FoldedConv {
    weights: Weights,
    /// `t`, zero-padded to whole blocks.
    bias: Vec<f32>,
    out_channels: usize,
    in_channels: usize,
    kernel: usize,
}

/// A [`FoldedConv`]'s weights, as its algorithm reads them. Not from the scratch pool: the cache
/// keeps them.
enum Weights {
    /// Packed for the direct kernel, `s` folded in.
    Direct(Vec<f32>),
    /// Winograd's kernels, and their transforms once made.
    Winograd(WinogradWeights),
}

/// The weights of Winograd's algorithms, whose transforms fold `s` in.
struct WinogradWeights {
    /// The variant, or none to choose one for each map.
    variant: Option<Winograd>,
    /// The kernels, `[O, C, 3, 3]`.
    kernels: SharedKernels,
    /// `s`.
    scale: Vec<f32>,
    /// The transformed kernels, each variant's at its first use (a model that runs one size of
    /// map transforms its kernels once), indexed by [`Winograd`]'s discriminant.
    transformed: [OnceLock<Vec<f32>>; 2],
}

impl WinogradWeights {
    /// The transformed kernels of `variant`, for `[O, C]` channels, transformed at the first call.
    fn transformed(&self, variant: Winograd, channels: [usize; 2]) -> &[f32] {
        self.transformed[variant as usize].get_or_init(|| {
            let mut packed = vec![0.0; winograd::packed_len(variant, channels)];
            let kernels = winograd::Kernels::of((*self.kernels).as_ref(), channels);
            winograd::pack(
                variant,
                Isa::best(),
                kernels,
                Some(&self.scale),
                &mut packed,
            );
            packed
        })
    }
}

/// Per-channel values, zero-padded to whole blocks of 16 channels (an epilogue's bias).
pub(super) fn padded_to_blocks(values: &[f32]) -> Vec<f32> {
    let mut blocks = vec![0.0; values.len().div_ceil(L) * L];
    blocks[..values.len()].copy_from_slice(values);
    blocks
}

impl FoldedConv {
    /// The convolution of `weight` (`[O, C, k, k]`, row-major), with output channel `o` scaled by
    /// `scale[o]` and shifted by `shift[o]`, computed the faster way
    /// ([`Algorithm::for_kernel`]).
    pub(crate) fn new(
        weight: SharedKernels,
        dims: [usize; 4],
        scale: &[f32],
        shift: &[f32],
    ) -> Self {
        Self::with_algorithm(weight, dims, scale, shift, Algorithm::for_kernel(dims[2]))
    }

    /// [`new`](Self::new), computed by `algorithm`.
    ///
    /// # Panics
    ///
    /// If the kernel is not odd and square, Winograd's is asked for another than 3x3, or the
    /// slices' lengths do not follow from `dims`.
    pub(crate) fn with_algorithm(
        weight: SharedKernels,
        dims: [usize; 4],
        scale: &[f32],
        shift: &[f32],
        algorithm: Algorithm,
    ) -> Self {
        let [o, c, kh, kw] = dims;
        assert!(kh == kw && kh % 2 == 1, "odd square kernel");
        assert_eq!((*weight).as_ref().len(), o * c * kh * kw, "weight length");
        assert!(
            scale.len() == o && shift.len() == o,
            "one scale and shift per channel"
        );
        let grid = Self::grid(o, c, kh, 1, 1, 1);
        let bias = padded_to_blocks(shift);
        let weights = match algorithm {
            Algorithm::Direct => {
                let mut weights = vec![0.0; packed_weights_len(&grid)];
                pack_weights(grid, (*weight).as_ref(), Some(scale), &mut weights);
                Weights::Direct(weights)
            }
            Algorithm::Winograd(variant) => {
                assert_eq!(kh, 3, "Winograd's algorithms take 3x3 kernels");
                Weights::Winograd(WinogradWeights {
                    variant,
                    kernels: weight,
                    scale: scale.to_vec(),
                    transformed: Default::default(),
                })
            }
        };
        FoldedConv {
            weights,
            bias,
            out_channels: o,
            in_channels: c,
            kernel: kh,
        }
    }

    /// Whether it holds the kernels it was made from (Winograd's algorithms).
    pub(crate) fn keeps_kernels(&self) -> bool {
        matches!(self.weights, Weights::Winograd(_))
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
        let packed = match &self.weights {
            Weights::Direct(packed) => packed,
            Weights::Winograd(weights) => {
                let variant = weights
                    .variant
                    .unwrap_or_else(|| Winograd::for_map(x.n, x.h, x.w));
                let transformed = weights.transformed(variant, [o, x.c]);
                return winograd::forward(variant, isa, transformed, o, x, epilogue);
            }
        };
        let data = if k == 1 {
            // A 1x1 kernel sees each position alone: the map is one long row, which the kernel
            // tiles without a remainder at every row end.
            let grid = Self::grid(o, x.c, 1, x.n, 1, x.h * x.w);
            run(isa, grid, &x.data, packed, epilogue)
        } else {
            let grid = Self::grid(o, x.c, k, x.n, x.h, x.w);
            run(isa, grid, &x.padded(k / 2), packed, epilogue)
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
