//! The fused BatchNorm on `Autodiff<Flex>`: the host kernels of [`cpu`](super::cpu) behind an
//! analytic backward.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, TensorData, TensorMetadata, TensorPrimitive};

use super::cpu::{self, Channels, Dims};
use super::{BatchNormOutput, Tensor};
use crate::kernels::dispatch::{on_backend, Ad};
use crate::kernels::host::host_slice;

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
        let sums = cpu::grad_sums(s.dims, x, dz, &s.channels);
        let vector = |v: Vec<f32>| FlexTensor::from_data(TensorData::new(v, [s.dims.c]));
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, vector(sums.iter().map(|t| t.0 as f32).collect()));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, vector(sums.iter().map(|t| t.1 as f32).collect()));
        }
        if let Some(node) = node_x {
            let dx = cpu::input_grad(s.dims, x, dz, &s.channels, &sums);
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
    let stats = cpu::stats(dims, host_slice(&xs));
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
    let y = cpu::normalise(dims, host_slice(&xs), &channels);
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
