//! Channel scaling and the residual add on blocked maps.

use rayon::prelude::*;

use super::map::BlockedMap;
use super::LANES as L;

/// `x[i, ch] *= gate[i * C + ch]`: squeeze-and-excitation's gate, `[N, C]` row-major.
pub(crate) fn scale_channels(x: &mut BlockedMap, gate: &[f32]) {
    assert_eq!(gate.len(), x.n * x.c, "one gate per image and channel");
    let (c, blocks, plane) = (x.c, x.blocks(), x.plane());
    x.data
        .par_chunks_mut(plane)
        .enumerate()
        .for_each(|(i, block)| {
            let (ni, b) = (i / blocks, i % blocks);
            let mut g = [0.0f32; L];
            let lanes = L.min(c - b * L);
            g[..lanes].copy_from_slice(&gate[ni * c + b * L..][..lanes]);
            for v in block.chunks_exact_mut(L) {
                for (v, g) in v.iter_mut().zip(g) {
                    *v *= g;
                }
            }
        });
}

/// `x = relu(x + shortcut)`, the end of a residual block.
pub(crate) fn add_relu(x: &mut BlockedMap, shortcut: &BlockedMap) {
    assert_eq!(
        (x.n, x.c, x.h, x.w),
        (shortcut.n, shortcut.c, shortcut.h, shortcut.w),
        "shortcut shape"
    );
    let plane = x.plane();
    x.data
        .par_chunks_mut(plane)
        .zip(shortcut.data.par_chunks(plane))
        .for_each(|(x, s)| {
            for (x, s) in x.iter_mut().zip(s) {
                *x = (*x + s).max(0.0);
            }
        });
}
