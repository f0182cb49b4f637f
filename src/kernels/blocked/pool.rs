//! Pooling on blocked maps: the blur pool, the shortcut's average pool, and channel means.

use rayon::prelude::*;

use super::map::BlockedMap;
use super::LANES as L;
use crate::kernels::pool::planes::{self, pooled_side};

/// The maps, one output plane per task: `f(input plane, output plane)` for each image and
/// block of channels.
fn per_plane(
    x: &BlockedMap,
    (h, w): (usize, usize),
    f: impl Fn(&[f32], &mut [f32]) + Sync,
) -> BlockedMap {
    let mut y = BlockedMap::uninit(x.n, x.c, h, w);
    let plane = y.plane();
    y.data
        .par_chunks_mut(plane)
        .zip(x.data.par_chunks(x.plane()))
        .for_each(|(dst, src)| f(src, dst));
    y
}

/// timm's `BlurPool2d` ([`planes::blur`]): `ceil(h / 2)` rows out. Needs `h, w >= 2`.
pub(crate) fn blur_pool(x: &BlockedMap) -> BlockedMap {
    assert!(
        x.h >= 2 && x.w >= 2,
        "reflect padding needs 2 rows and columns"
    );
    let hw = (x.h, x.w);
    per_plane(x, (pooled_side(x.h), pooled_side(x.w)), |src, dst| {
        planes::blur::<L>(src, dst, hw)
    })
}

/// The shortcut's 2x2 average pool in ceil mode ([`planes::average`]): `ceil(h / 2)` rows out.
pub(crate) fn avg_pool_2x2(x: &BlockedMap) -> BlockedMap {
    let hw = (x.h, x.w);
    per_plane(x, (pooled_side(x.h), pooled_side(x.w)), |src, dst| {
        planes::average::<L>(src, dst, hw)
    })
}

/// The mean of every channel over its map, `[N, C]` row-major.
pub(crate) fn channel_means(x: &BlockedMap) -> Vec<f32> {
    let (c, blocks, hw) = (x.c, x.blocks(), x.h * x.w);
    let sums: Vec<[f32; L]> = x
        .data
        .par_chunks(x.plane())
        .map(|plane| {
            let mut acc = [0.0f32; L];
            for v in plane.chunks_exact(L) {
                for (a, v) in acc.iter_mut().zip(v) {
                    *a += v;
                }
            }
            acc
        })
        .collect();
    let mut means = vec![0.0f32; x.n * c];
    for (i, mean) in means.iter_mut().enumerate() {
        let (ni, ch) = (i / c, i % c);
        *mean = sums[ni * blocks + ch / L][ch % L] / hw as f32;
    }
    means
}
