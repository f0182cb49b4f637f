//! The geometry of a stride-1 convolution on the zero-padded grid, shared by the GEMM kernels.

use burn::tensor::ops::ConvOptions;

/// Whether the GEMM kernels apply to a convolution with these options.
pub(crate) fn gemm_applies(options: &ConvOptions<2>) -> bool {
    options.stride == [1, 1] && options.dilation == [1, 1] && options.groups == 1
}

/// The geometry shared by both gradients: the input, zero-padded and laid out channel-major as
/// `[C][N][Hp][Wp]`, lets every kernel tap `(ky, kx)` read its input window for all output
/// positions as one strided matrix (rows `c`, columns `j = n*Hp*Wp + ho*Wp + wo`, at offset
/// `ky*Wp + kx`). Output positions are laid out on the same padded grid, zero outside the real
/// `Ho x Wo` output, so the extra columns contribute nothing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grid {
    pub(crate) n: usize,
    pub(crate) c: usize,
    pub(crate) o: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) ph: usize,
    pub(crate) pw: usize,
}

impl Grid {
    /// The geometry of `conv2d(x, w)` with these options' padding.
    pub(crate) fn new(
        x: &burn::backend::flex::FlexTensor,
        w: &burn::backend::flex::FlexTensor,
        options: &ConvOptions<2>,
    ) -> Self {
        use burn::tensor::TensorMetadata;

        let [n, c, h, w_] = x.shape().dims();
        let [o, _, kh, kw] = w.shape().dims();
        Grid {
            n,
            c,
            o,
            h,
            w: w_,
            kh,
            kw,
            ph: options.padding[0],
            pw: options.padding[1],
        }
    }

    /// Whether the forward convolution runs on the padded grid rather than on the unfolded
    /// input ([`gemm_forward`]): with at most 6 grid positions per 5 outputs. A 28x28 map with a
    /// 3x3 kernel qualifies, a 14x14 one does not: measured on TResNet-M's layers, the unfolded
    /// GEMM is 5-15% faster at 14x14, the grid 10-40% faster at 28x28 and 56x56.
    pub(crate) fn forward_on_grid(&self) -> bool {
        5 * self.hp() * self.wp() <= 6 * self.ho() * self.wo()
    }

    /// Whether the kernel is 3x3 and padded by 1: the geometry of Winograd's F(2x2, 3x3) and
    /// F(4x4, 3x3), whose output tiles then sit on the input's own grid of 2x2 (4x4) blocks.
    pub(crate) fn is_3x3_padded_by_1(&self) -> bool {
        (self.kh, self.kw, self.ph, self.pw) == (3, 3, 1, 1)
    }

    /// Whether the kernel is 1x1 without padding: then the input's grid is the map itself, with
    /// no padding and no slack, and each image's map is a `[C, H*W]` matrix.
    pub(crate) fn is_1x1_unpadded(&self) -> bool {
        (self.kh, self.kw, self.ph, self.pw) == (1, 1, 0, 0)
    }

    pub(crate) fn hp(&self) -> usize {
        self.h + 2 * self.ph
    }
    pub(crate) fn wp(&self) -> usize {
        self.w + 2 * self.pw
    }
    pub(crate) fn ho(&self) -> usize {
        self.hp() + 1 - self.kh
    }
    pub(crate) fn wo(&self) -> usize {
        self.wp() + 1 - self.kw
    }
    /// Columns of the channel-major matrices: every padded position of every image.
    pub(crate) fn cols(&self) -> usize {
        self.n * self.hp() * self.wp()
    }
    /// How far the last tap's window reaches past the end of a channel-major matrix (read, and
    /// multiplied by zero, for the padding columns).
    pub(crate) fn slack(&self) -> usize {
        (self.kh - 1) * self.wp() + self.kw - 1
    }
    /// Each kernel tap `(ky, kx)` as its index in a `[kh][kw]` kernel, `ky*kw + kx`, and the
    /// offset of its window on the padded grid, `ky*Wp + kx`.
    pub(crate) fn taps(&self) -> impl Iterator<Item = (usize, usize)> {
        let (kw, wp) = (self.kw, self.wp());
        (0..self.kh * kw).map(move |tap| (tap, (tap / kw) * wp + tap % kw))
    }
}
