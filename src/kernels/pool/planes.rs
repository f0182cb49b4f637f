//! The pools' loops over one plane of `L` interleaved channels (`[H][W][L]`): `L = 1` for one
//! channel of an `[N, C, H, W]` tensor, `L = 16` for one block of a blocked map. Each pool halves
//! both sides, `ceil(n / 2)` out of `n`.

/// Taps of TResNet's binomial blur filter along one axis, `[1, 2, 1] / 4`.
const BLUR_TAPS: [f32; 3] = [0.25, 0.5, 0.25];

/// Rows (or columns) out of `n` in, for both pools: `ceil(n / 2)`.
pub(crate) fn pooled_side(n: usize) -> usize {
    n.div_ceil(2)
}

/// The input index of position `i` of the input reflect-padded by 1, of length `n + 2`.
fn reflect(i: usize, n: usize) -> usize {
    match i {
        0 => 1,
        i if i > n => n - 2,
        i => i - 1,
    }
}

/// Each blur-pool output position `(oy, ox)` with the input positions and weights its 3x3
/// window covers (reflected at the edges): `f(out index, in index, weight)`, in units of `L`.
fn blur_windows((h, w): (usize, usize), mut f: impl FnMut(usize, usize, f32)) {
    let wo = pooled_side(w);
    for oy in 0..pooled_side(h) {
        for ox in 0..wo {
            for (ky, ty) in BLUR_TAPS.iter().enumerate() {
                let iy = reflect(2 * oy + ky, h);
                for (kx, tx) in BLUR_TAPS.iter().enumerate() {
                    f(oy * wo + ox, iy * w + reflect(2 * ox + kx, w), ty * tx);
                }
            }
        }
    }
}

/// timm's `BlurPool2d` (3x3 binomial filter, stride 2, input reflect-padded by 1) of the plane
/// `src` (`h x w`) into `dst`. Needs `h, w >= 2`.
pub(crate) fn blur<const L: usize>(src: &[f32], dst: &mut [f32], hw: (usize, usize)) {
    dst.fill(0.0);
    blur_windows(hw, |o, i, t| {
        let (d, s) = (&mut dst[o * L..][..L], &src[i * L..][..L]);
        for (d, s) in d.iter_mut().zip(s) {
            *d += t * s;
        }
    });
}

/// The input gradient of [`blur`] from its output gradient `dy`: each input position gathers
/// the gradients of the windows that read it, reflected ones included.
pub(crate) fn blur_backward<const L: usize>(dy: &[f32], dx: &mut [f32], hw: (usize, usize)) {
    dx.fill(0.0);
    blur_windows(hw, |o, i, t| {
        let (d, g) = (&mut dx[i * L..][..L], &dy[o * L..][..L]);
        for (d, g) in d.iter_mut().zip(g) {
            *d += t * g;
        }
    });
}

/// Each 2x2 average-pool output position with the input positions of its window (clipped at
/// the last row and column in ceil mode): `f(out index, in indices, 1 / their count)`.
fn average_windows((h, w): (usize, usize), mut f: impl FnMut(usize, &[usize], f32)) {
    let wo = pooled_side(w);
    let mut inputs = Vec::with_capacity(4);
    for oy in 0..pooled_side(h) {
        for ox in 0..wo {
            inputs.clear();
            for iy in 2 * oy..(2 * oy + 2).min(h) {
                inputs.extend((2 * ox..(2 * ox + 2).min(w)).map(|ix| iy * w + ix));
            }
            f(oy * wo + ox, &inputs, 1.0 / inputs.len() as f32);
        }
    }
}

/// A 2x2 average pool of stride 2 in ceil mode, each window averaged over the positions it
/// covers (PyTorch's `count_include_pad=False`), of the plane `src` (`h x w`) into `dst`.
pub(crate) fn average<const L: usize>(src: &[f32], dst: &mut [f32], hw: (usize, usize)) {
    average_windows(hw, |o, inputs, scale| {
        let mut acc = [0.0f32; L];
        for &i in inputs {
            for (a, s) in acc.iter_mut().zip(&src[i * L..][..L]) {
                *a += s;
            }
        }
        for (d, a) in dst[o * L..][..L].iter_mut().zip(acc) {
            *d = a * scale;
        }
    });
}

/// The input gradient of [`average`] from its output gradient `dy`: the windows do not
/// overlap, so each input position takes its window's gradient over the window's count.
pub(crate) fn average_backward<const L: usize>(dy: &[f32], dx: &mut [f32], hw: (usize, usize)) {
    average_windows(hw, |o, inputs, scale| {
        let g = &dy[o * L..][..L];
        for &i in inputs {
            for (d, g) in dx[i * L..][..L].iter_mut().zip(g) {
                *d = g * scale;
            }
        }
    });
}
