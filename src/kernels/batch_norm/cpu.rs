//! The per-channel arithmetic of the fused BatchNorm on host slices, shared by the forward and
//! backward passes.

use rayon::prelude::*;

use crate::kernels::buffer::from_planes;

/// Values summed in `f32` before the running sum in `f64` takes them.
const CHUNK: usize = 256;

/// Shape of the activations: `n` images of `c` planes of `plane` values.
#[derive(Debug, Clone, Copy)]
pub(super) struct Dims {
    pub n: usize,
    pub c: usize,
    pub plane: usize,
}

impl Dims {
    fn count(&self) -> f64 {
        (self.n * self.plane) as f64
    }

    /// The planes of channel `ci`, one per image.
    fn planes<'a>(&self, data: &'a [f32], ci: usize) -> impl Iterator<Item = &'a [f32]> {
        let (c, plane) = (self.c, self.plane);
        (0..self.n).map(move |ni| &data[(ni * c + ci) * plane..][..plane])
    }
}

/// Sums of `f(a[i], b[i])`: in `f32` lanes within a short chunk (so that the loop vectorises
/// without reassociating one long chain), in `f64` across chunks.
fn sum_pairs<const K: usize>(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> [f32; K]) -> [f64; K] {
    const LANES: usize = 16;
    let mut total = [0.0f64; K];
    for (ca, cb) in a.chunks(CHUNK).zip(b.chunks(CHUNK)) {
        let mut acc = [[0.0f32; LANES]; K];
        let mut blocks = ca.chunks_exact(LANES).zip(cb.chunks_exact(LANES));
        for (ba, bb) in &mut blocks {
            for l in 0..LANES {
                let terms = f(ba[l], bb[l]);
                for k in 0..K {
                    acc[k][l] += terms[k];
                }
            }
        }
        let done = ca.len() / LANES * LANES;
        for (&va, &vb) in ca[done..].iter().zip(&cb[done..]) {
            let terms = f(va, vb);
            for k in 0..K {
                acc[k][0] += terms[k];
            }
        }
        for k in 0..K {
            total[k] += acc[k].iter().map(|&a| a as f64).sum::<f64>();
        }
    }
    total
}

/// Per-channel `(mean, biased variance)`, the variance from the centred values.
pub(super) fn stats(d: Dims, x: &[f32]) -> Vec<(f64, f64)> {
    (0..d.c)
        .into_par_iter()
        .map(|ci| {
            let sum: f64 = d
                .planes(x, ci)
                .map(|p| sum_pairs(p, p, |v, _| [v])[0])
                .sum();
            let mean = sum / d.count();
            let m = mean as f32;
            let squares: f64 = d
                .planes(x, ci)
                .map(|p| sum_pairs(p, p, |v, _| [(v - m) * (v - m)])[0])
                .sum();
            // The f32 mean's rounding, removed: E[(x - m)^2] = var + (mean - m)^2.
            let shift = mean - m as f64;
            (mean, (squares / d.count() - shift * shift).max(0.0))
        })
        .collect()
}

/// `act(x * scale[c] + shift[c])`, plane by plane.
pub(super) fn normalise(d: Dims, x: &[f32], ch: &Channels) -> Vec<f32> {
    let slope = ch.slope;
    from_planes(d.n * d.c, d.plane, |i| {
        let (k, b) = (ch.scale[i % d.c], ch.shift[i % d.c]);
        x[i * d.plane..][..d.plane].iter().map(move |&x| {
            let y = x * k + b;
            match slope {
                Some(a) if y <= 0.0 => a * y,
                _ => y,
            }
        })
    })
}

/// What the forward pass derived per channel, which the backward pass reuses.
#[derive(Debug, Clone)]
pub(super) struct Channels {
    pub mean: Vec<f32>,
    pub invstd: Vec<f32>,
    /// `gamma * invstd`.
    pub scale: Vec<f32>,
    /// `beta - mean * scale`.
    pub shift: Vec<f32>,
    pub slope: Option<f32>,
}

impl Channels {
    /// `(mean, invstd, scale, shift)` of channel `ci`.
    fn at(&self, ci: usize) -> (f32, f32, f32, f32) {
        (
            self.mean[ci],
            self.invstd[ci],
            self.scale[ci],
            self.shift[ci],
        )
    }
}

/// The gradient before the activation, from the one after it: the slope's mask, recomputed
/// from the pre-activation `x * scale + shift`.
#[inline(always)]
fn pre_act(dz: f32, x: f32, k: f32, b: f32, slope: Option<f32>) -> f32 {
    match slope {
        Some(a) if x * k + b <= 0.0 => a * dz,
        _ => dz,
    }
}

/// Per-channel `(sum dy, sum dy * xhat)`, with `dy` the gradient before the activation and
/// `xhat = (x - mean) * invstd`.
pub(super) fn grad_sums(d: Dims, x: &[f32], dz: &[f32], ch: &Channels) -> Vec<(f64, f64)> {
    let slope = ch.slope;
    (0..d.c)
        .into_par_iter()
        .map(|ci| {
            let (m, s, k, b) = ch.at(ci);
            d.planes(x, ci)
                .zip(d.planes(dz, ci))
                .map(|(xp, gp)| {
                    // Both sums in one pass: pair each x with its gradient by index.
                    let [sum, dot] = sum_pairs(xp, gp, |x, g| {
                        let dy = pre_act(g, x, k, b, slope);
                        [dy, dy * (x - m) * s]
                    });
                    (sum, dot)
                })
                .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
        })
        .collect()
}

/// `dx = gamma invstd (dy - sum_dy / M - xhat sum_dy_xhat / M)`, plane by plane.
pub(super) fn input_grad(
    d: Dims,
    x: &[f32],
    dz: &[f32],
    ch: &Channels,
    sums: &[(f64, f64)],
) -> Vec<f32> {
    let slope = ch.slope;
    let count = d.count();
    from_planes(d.n * d.c, d.plane, |i| {
        let ci = i % d.c;
        let (m, s, k, b) = ch.at(ci);
        let mean_dy = (sums[ci].0 / count) as f32;
        let mean_dy_xhat = (sums[ci].1 / count) as f32;
        let (x, dz) = (&x[i * d.plane..][..d.plane], &dz[i * d.plane..][..d.plane]);
        x.iter().zip(dz).map(move |(&x, &g)| {
            let dy = pre_act(g, x, k, b, slope);
            let xhat = (x - m) * s;
            // scale = gamma * invstd.
            k * (dy - mean_dy - xhat * mean_dy_xhat)
        })
    })
}
