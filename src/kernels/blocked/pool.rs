//! Pooling on blocked maps: the blur pool, the shortcut's average pool, and channel means.

use rayon::prelude::*;

use super::map::BlockedMap;
use super::LANES as L;

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

/// timm's `BlurPool2d` with the 3x3 binomial filter `[1, 2, 1] x [1, 2, 1] / 16`, stride 2, on
/// the input reflect-padded by 1: `(h - 1) / 2 + 1` rows out. Needs `h, w >= 2`.
pub(crate) fn blur_pool(x: &BlockedMap) -> BlockedMap {
    assert!(
        x.h >= 2 && x.w >= 2,
        "reflect padding needs 2 rows and columns"
    );
    let (h, w) = (x.h, x.w);
    let (ho, wo) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
    // Index of padded position `2 * o + k` (k = 0, 1, 2) in the input, reflected at the edges.
    let reflect = |i: usize, n: usize| match i {
        0 => 1,
        i if i > n => n - 2,
        i => i - 1,
    };
    const TAPS: [f32; 3] = [0.25, 0.5, 0.25];
    per_plane(x, (ho, wo), |src, dst| {
        for oy in 0..ho {
            for ox in 0..wo {
                let mut acc = [0.0f32; L];
                for (ky, ty) in TAPS.iter().enumerate() {
                    let iy = reflect(2 * oy + ky, h);
                    for (kx, tx) in TAPS.iter().enumerate() {
                        let ix = reflect(2 * ox + kx, w);
                        let t = ty * tx;
                        let v = &src[(iy * w + ix) * L..][..L];
                        for (a, v) in acc.iter_mut().zip(v) {
                            *a += t * v;
                        }
                    }
                }
                dst[(oy * wo + ox) * L..][..L].copy_from_slice(&acc);
            }
        }
    })
}

/// A 2x2 average pool of stride 2 in ceil mode, each window averaged over the positions it
/// covers (PyTorch's `count_include_pad=False`): `ceil(h / 2)` rows out.
pub(crate) fn avg_pool_2x2(x: &BlockedMap) -> BlockedMap {
    let (h, w) = (x.h, x.w);
    let (ho, wo) = (h.div_ceil(2), w.div_ceil(2));
    per_plane(x, (ho, wo), |src, dst| {
        for oy in 0..ho {
            let rows = 2 * oy..(2 * oy + 2).min(h);
            for ox in 0..wo {
                let cols = 2 * ox..(2 * ox + 2).min(w);
                let mut acc = [0.0f32; L];
                for iy in rows.clone() {
                    for ix in cols.clone() {
                        let v = &src[(iy * w + ix) * L..][..L];
                        for (a, v) in acc.iter_mut().zip(v) {
                            *a += v;
                        }
                    }
                }
                let scale = 1.0 / (rows.len() * cols.len()) as f32;
                for (d, a) in dst[(oy * wo + ox) * L..][..L].iter_mut().zip(acc) {
                    *d = a * scale;
                }
            }
        }
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
