//! Training-mode BatchNorm followed by an optional leaky ReLU, with a fused kernel on the default
//! CPU training backend.
//!
//! Written with tensor operations, a training-mode BatchNorm and its activation take about ten
//! passes over the activations forward and twice that backward, each on one core. On
//! `Autodiff<Flex>` [`batch_norm_act`] runs instead as two parallel passes forward (statistics;
//! normalise and activate) and two backward (the per-channel sums of the gradient; the input
//! gradient), with the analytic gradient. Every other backend takes the tensor-operation version.

use burn::tensor::activation::leaky_relu;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// The output of [`batch_norm_act`]: the activations and the batch statistics they were
/// normalised with (constants, for the running estimates).
#[derive(Debug, Clone)]
pub struct BatchNormOutput<B: Backend> {
    /// `act(gamma * (x - mean) / sqrt(var + eps) + beta)`, shaped as the input.
    pub output: Tensor<B, 4>,
    /// The per-channel mean of the batch, `[C]`.
    pub mean: Tensor<B, 1>,
    /// The per-channel biased variance of the batch, `[C]`.
    pub var: Tensor<B, 1>,
}

/// BatchNorm of `x` (`[N, C, H, W]`) with the batch's own statistics, scaled by `gamma` and
/// shifted by `beta` (`[C]` each), then a leaky ReLU of slope `leaky_slope` if given.
///
/// Gradients flow to `x`, `gamma` and `beta`; the returned statistics are detached.
///
/// ```
/// use aia::model::batch_norm::batch_norm_act;
/// use burn::tensor::Tensor;
/// type B = burn::backend::Autodiff<burn::backend::Flex>;
///
/// let device = Default::default();
/// let x = Tensor::<B, 4>::from_floats([[[[1.0, 3.0]]], [[[5.0, 7.0]]]], &device);
/// let (gamma, beta) = (Tensor::ones([1], &device), Tensor::zeros([1], &device));
/// let bn = batch_norm_act(x, gamma, beta, 0.0, Some(0.1));
/// assert_eq!(bn.mean.into_scalar(), 4.0);
/// assert_eq!(bn.var.into_scalar(), 5.0);
/// // (1 - 4) / sqrt(5) is negative: scaled by the slope.
/// let first = bn.output.flatten::<1>(0, 3).slice([0..1]).into_scalar();
/// assert!((first - 0.1 * -3.0 / 5f32.sqrt()).abs() < 1e-6);
/// ```
pub fn batch_norm_act<B: Backend>(
    x: Tensor<B, 4>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    epsilon: f64,
    leaky_slope: Option<f64>,
) -> BatchNormOutput<B> {
    #[cfg(feature = "flex")]
    let (x, gamma, beta) = match flex::try_batch_norm_act(x, gamma, beta, epsilon, leaky_slope) {
        Ok(out) => return out,
        Err(inputs) => inputs,
    };
    batch_norm_act_composed(x, gamma, beta, epsilon, leaky_slope)
}

/// [`batch_norm_act`] written with tensor operations, on any backend.
///
/// Every broadcast is over the innermost axis of a contiguous `[N, C, H*W]` tensor against a
/// materialised `[N, C, 1]` one: the CPU backends run those with SIMD kernels, whereas a
/// `[1, C, 1, 1]` broadcast takes a scalar strided loop several times slower.
pub fn batch_norm_act_composed<B: Backend>(
    x: Tensor<B, 4>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    epsilon: f64,
    leaky_slope: Option<f64>,
) -> BatchNormOutput<B> {
    let [n, c, h, w] = x.dims();
    let x = x.reshape([n, c, h * w]);
    let per_row = |t: Tensor<B, 3>| t.repeat_dim(0, n);
    let mean = x.clone().mean_dim(2).mean_dim(0); // [1, C, 1]
    let centered = x - per_row(mean.clone());
    let var = centered.clone().square().mean_dim(2).mean_dim(0); // biased, [1, C, 1]
    let scale = gamma.reshape([1, c, 1]) / var.clone().add_scalar(epsilon).sqrt();
    let y = centered * per_row(scale) + per_row(beta.reshape([1, c, 1]));
    let y = y.reshape([n, c, h, w]);
    BatchNormOutput {
        output: match leaky_slope {
            Some(slope) => leaky_relu(y, slope),
            None => y,
        },
        mean: mean.reshape([c]).detach(),
        var: var.reshape([c]).detach(),
    }
}

/// The per-channel arithmetic on host slices, shared by the forward and backward passes.
#[cfg(feature = "flex")]
mod kernel {
    use rayon::prelude::*;

    /// Values summed in `f32` before the running sum in `f64` takes them.
    const CHUNK: usize = 256;

    /// Shape of the activations: `n` images of `c` planes of `plane` values.
    #[derive(Debug, Clone, Copy)]
    pub struct Dims {
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
    fn sum_pairs<const K: usize>(
        a: &[f32],
        b: &[f32],
        f: impl Fn(f32, f32) -> [f32; K],
    ) -> [f64; K] {
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
    pub fn stats(d: Dims, x: &[f32]) -> Vec<(f64, f64)> {
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
    pub fn normalise(d: Dims, x: &[f32], ch: &Channels) -> Vec<f32> {
        let (scale, shift, slope) = (&ch.scale, &ch.shift, ch.slope);
        let mut out = vec![0.0f32; x.len()];
        out.par_chunks_mut(d.plane)
            .zip(x.par_chunks(d.plane))
            .enumerate()
            .for_each(|(i, (o, x))| {
                let (k, b) = (scale[i % d.c], shift[i % d.c]);
                match slope {
                    Some(a) => o.iter_mut().zip(x).for_each(|(o, &x)| {
                        let y = x * k + b;
                        *o = if y > 0.0 { y } else { a * y };
                    }),
                    None => o.iter_mut().zip(x).for_each(|(o, &x)| *o = x * k + b),
                }
            });
        out
    }

    /// What the forward pass derived per channel, which the backward pass reuses.
    #[derive(Debug, Clone)]
    pub struct Channels {
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
    pub fn grad_sums(d: Dims, x: &[f32], dz: &[f32], ch: &Channels) -> Vec<(f64, f64)> {
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
    pub fn input_grad(
        d: Dims,
        x: &[f32],
        dz: &[f32],
        ch: &Channels,
        sums: &[(f64, f64)],
    ) -> Vec<f32> {
        let slope = ch.slope;
        let count = d.count();
        let mut dx = vec![0.0f32; x.len()];
        dx.par_chunks_mut(d.plane)
            .zip(x.par_chunks(d.plane).zip(dz.par_chunks(d.plane)))
            .enumerate()
            .for_each(|(i, (out, (xp, gp)))| {
                let ci = i % d.c;
                let (m, s, k, b) = ch.at(ci);
                let mean_dy = (sums[ci].0 / count) as f32;
                let mean_dy_xhat = (sums[ci].1 / count) as f32;
                for ((o, &x), &g) in out.iter_mut().zip(xp).zip(gp) {
                    let dy = pre_act(g, x, k, b, slope);
                    let xhat = (x - m) * s;
                    // scale = gamma * invstd.
                    *o = k * (dy - mean_dy - xhat * mean_dy_xhat);
                }
            });
        dx
    }
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::flex::FlexTensor;
    use burn::backend::Flex;
    use burn::tensor::backend::Backend;
    use burn::tensor::{DType, TensorData, TensorMetadata, TensorPrimitive};

    use super::super::on_flex::{host_slice, on_backend, Ad};
    use super::kernel::{self, Channels, Dims};
    use super::{BatchNormOutput, Tensor};

    type Inputs<B> = (Tensor<B, 4>, Tensor<B, 1>, Tensor<B, 1>);

    /// The fused BatchNorm when `B` is `Autodiff<Flex>` and everything is `f32`; otherwise the
    /// inputs back, untouched.
    pub(super) fn try_batch_norm_act<B: Backend>(
        x: Tensor<B, 4>,
        gamma: Tensor<B, 1>,
        beta: Tensor<B, 1>,
        epsilon: f64,
        leaky_slope: Option<f64>,
    ) -> Result<BatchNormOutput<B>, Inputs<B>> {
        let [n, c, h, w] = x.dims();
        // Anything unusual (empty, or parameters of the wrong length) takes the tensor-operation
        // path and its checks.
        let shapes_fit = n * c * h * w > 0 && gamma.dims() == [c] && beta.dims() == [c];
        if !shapes_fit || [x.dtype(), gamma.dtype(), beta.dtype()] != [DType::F32; 3] {
            return Err((x, gamma, beta));
        }
        on_backend((x, gamma, beta), |(x, gamma, beta): Inputs<Ad>| {
            batch_norm_act_ad(x, gamma, beta, epsilon, leaky_slope)
        })
    }

    #[derive(Debug)]
    struct BatchNormBackward;

    /// The input (its storage is shared with the graph, not copied) and the per-channel values
    /// the forward pass derived.
    #[derive(Debug, Clone)]
    struct State {
        x: FlexTensor,
        dims: Dims,
        channels: Channels,
    }

    impl Backward<Flex, 3> for BatchNormBackward {
        type State = State;

        fn backward(
            self,
            ops: Ops<Self::State, 3>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let [node_x, node_gamma, node_beta] = ops.parents;
            let dz = grads.consume::<Flex>(&ops.node).to_contiguous();
            let s = ops.state;
            let x = s.x.to_contiguous();
            let (x, dz) = (host_slice(&x), host_slice(&dz));
            let sums = kernel::grad_sums(s.dims, x, dz, &s.channels);
            let vector = |v: Vec<f32>| FlexTensor::from_data(TensorData::new(v, [s.dims.c]));
            if let Some(node) = node_beta {
                grads.register::<Flex>(node.id, vector(sums.iter().map(|t| t.0 as f32).collect()));
            }
            if let Some(node) = node_gamma {
                grads.register::<Flex>(node.id, vector(sums.iter().map(|t| t.1 as f32).collect()));
            }
            if let Some(node) = node_x {
                let dx = kernel::input_grad(s.dims, x, dz, &s.channels, &sums);
                let shape = s.x.shape();
                grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(dx, shape)));
            }
        }
    }

    fn values(t: &FlexTensor) -> Vec<f32> {
        host_slice(&t.to_contiguous()).to_vec()
    }

    fn batch_norm_act_ad(
        x: Tensor<Ad, 4>,
        gamma: Tensor<Ad, 1>,
        beta: Tensor<Ad, 1>,
        epsilon: f64,
        leaky_slope: Option<f64>,
    ) -> BatchNormOutput<Ad> {
        let x = x.into_primitive().tensor();
        let gamma = gamma.into_primitive().tensor();
        let beta = beta.into_primitive().tensor();
        let [n, c, h, w] = x.primitive.shape().dims();
        let dims = Dims { n, c, plane: h * w };
        let xs = x.primitive.to_contiguous();
        let stats = kernel::stats(dims, host_slice(&xs));
        let mean: Vec<f32> = stats.iter().map(|s| s.0 as f32).collect();
        let var: Vec<f32> = stats.iter().map(|s| s.1 as f32).collect();
        let invstd: Vec<f32> = stats
            .iter()
            .map(|s| (1.0 / (s.1 + epsilon).sqrt()) as f32)
            .collect();
        let gamma_v = values(&gamma.primitive);
        let beta_v = values(&beta.primitive);
        let scale: Vec<f32> = gamma_v.iter().zip(&invstd).map(|(g, s)| g * s).collect();
        let shift: Vec<f32> = beta_v
            .iter()
            .zip(&scale)
            .zip(&mean)
            .map(|((b, k), m)| b - m * k)
            .collect();
        let channels = Channels {
            mean,
            invstd,
            scale,
            shift,
            slope: leaky_slope.map(|a| a as f32),
        };
        let y = kernel::normalise(dims, host_slice(&xs), &channels);
        let y = FlexTensor::from_data(TensorData::new(y, [n, c, h, w]));
        let mean = channels.mean.clone();

        let output = match BatchNormBackward
            .prepare::<NoCheckpointing>([x.node.clone(), gamma.node.clone(), beta.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(
                State {
                    x: xs,
                    dims,
                    channels,
                },
                y,
            ),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        let constant = |v: Vec<f32>| {
            Tensor::<Ad, 1>::from_inner(Tensor::from_primitive(TensorPrimitive::Float(
                FlexTensor::from_data(TensorData::new(v, [c])),
            )))
        };
        BatchNormOutput {
            output: Tensor::from_primitive(TensorPrimitive::Float(output)),
            mean: constant(mean),
            var: constant(var),
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::Distribution;

    type A = Autodiff<Flex>;

    fn close<const D: usize>(a: Tensor<Flex, D>, b: Tensor<Flex, D>, what: &str) {
        let scale = b.clone().abs().max().into_scalar().max(1.0);
        let diff = (a - b).abs().max().into_scalar();
        assert!(
            diff <= 2e-5 * scale,
            "{what}: max diff {diff} (scale {scale})"
        );
    }

    #[test]
    fn fused_matches_the_tensor_operation_version() {
        let device = Default::default();
        for (shape, slope) in [
            ([4, 3, 5, 6], Some(0.01)),
            ([2, 5, 3, 3], None),
            ([3, 2, 1, 1], Some(0.3)),
        ] {
            let x0 = Tensor::<Flex, 4>::random(shape, Distribution::Normal(0.5, 2.0), &device);
            let g0 = Tensor::<Flex, 1>::random([shape[1]], Distribution::Normal(1.0, 0.5), &device);
            let b0 = Tensor::<Flex, 1>::random([shape[1]], Distribution::Normal(0.0, 0.5), &device);
            let r = Tensor::<Flex, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            let run = |fused: bool| {
                let x = Tensor::<A, 4>::from_inner(x0.clone()).require_grad();
                let g = Tensor::<A, 1>::from_inner(g0.clone()).require_grad();
                let b = Tensor::<A, 1>::from_inner(b0.clone()).require_grad();
                let f = if fused {
                    batch_norm_act
                } else {
                    batch_norm_act_composed
                };
                let out = f(x.clone(), g.clone(), b.clone(), 1e-5, slope);
                let grads = (out.output.clone() * Tensor::from_inner(r.clone()))
                    .sum()
                    .backward();
                (
                    out.output.inner(),
                    out.mean.inner(),
                    out.var.inner(),
                    x.grad(&grads).unwrap(),
                    g.grad(&grads).unwrap(),
                    b.grad(&grads).unwrap(),
                )
            };
            let (y0, m0, v0, dx0, dg0, db0) = run(false);
            let (y1, m1, v1, dx1, dg1, db1) = run(true);
            let what = format!("{shape:?} {slope:?}");
            close(y1, y0, &format!("{what} output"));
            close(m1, m0, &format!("{what} mean"));
            close(v1, v0, &format!("{what} var"));
            close(dx1, dx0, &format!("{what} dx"));
            close(dg1, dg0, &format!("{what} dgamma"));
            close(db1, db0, &format!("{what} dbeta"));
        }
    }
}
