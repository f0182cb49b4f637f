//! timm's `SpaceToDepth` stem (block size 4).

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// Block size of TResNet's space-to-depth stem.
pub const BLOCK: usize = 4;

/// Rearranges `[N, C, H, W]` into `[N, 16C, H/4, W/4]`, output channel `(bh * 4 + bw) * C + c`
/// holding input pixel `(4y + bh, 4x + bw)` of channel `c`, as timm's
/// `view(N, C, H/4, 4, W/4, 4).permute(0, 3, 5, 1, 2, 4)` does. `H` and `W` must be multiples of 4.
pub fn space_to_depth<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    let (ho, wo) = (h / BLOCK, w / BLOCK);
    x.reshape([n, c, ho, BLOCK, wo, BLOCK])
        .permute([0, 3, 5, 1, 2, 4])
        .reshape([n, c * BLOCK * BLOCK, ho, wo])
}
