//! The residual add and the channel gate on `Flex` and `Autodiff<Flex>`: parallel passes over
//! host slices, behind analytic backwards.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData, TensorMetadata, TensorPrimitive};
use rayon::prelude::*;

use crate::kernels::buffer::from_planes;
use crate::kernels::dispatch::{on_backend, Ad};
use crate::kernels::host::host_slice;

type Pair<B, const D: usize> = (Tensor<B, 4>, Tensor<B, D>);

/// Whether the kernels take these tensors: non-empty and `f32`.
fn fits<B: Backend, const D: usize>(x: &Tensor<B, 4>, other: &Tensor<B, D>) -> bool {
    x.shape().num_elements() > 0 && [x.dtype(), other.dtype()] == [DType::F32; 2]
}

/// Runs `ad` when `B` is `Autodiff<Flex>`, `flex` when it is `Flex`; otherwise the inputs back.
fn on_flex<B: Backend, const D: usize>(
    inputs: Pair<B, D>,
    ad: fn(Pair<Ad, D>) -> Tensor<Ad, 4>,
    flex: fn(&FlexTensor, &FlexTensor) -> FlexTensor,
) -> Result<Tensor<B, 4>, Pair<B, D>> {
    let inputs = match on_backend(inputs, ad) {
        Ok(y) => return Ok(y),
        Err(inputs) => inputs,
    };
    on_backend(inputs, |(x, other): Pair<Flex, D>| {
        let (x, other) = (x.into_primitive().tensor(), other.into_primitive().tensor());
        Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(flex(&x, &other)))
    })
}

/// [`add_relu`](super::add_relu) through its kernel when `B` is `Flex` or `Autodiff<Flex>`;
/// otherwise the inputs back, untouched.
pub(super) fn try_add_relu<B: Backend>(
    x: Tensor<B, 4>,
    shortcut: Tensor<B, 4>,
) -> Result<Tensor<B, 4>, Pair<B, 4>> {
    // Anything unusual (empty, mismatched) takes the tensor-operation path and its checks.
    if x.dims() != shortcut.dims() || !fits(&x, &shortcut) {
        return Err((x, shortcut));
    }
    on_flex((x, shortcut), add_relu_ad, add_relu)
}

/// [`scale_channels`](super::scale_channels) through its kernel when `B` is `Flex` or
/// `Autodiff<Flex>`; otherwise the inputs back, untouched.
pub(super) fn try_scale_channels<B: Backend>(
    x: Tensor<B, 4>,
    gate: Tensor<B, 2>,
) -> Result<Tensor<B, 4>, Pair<B, 2>> {
    let [n, c, _, _] = x.dims();
    if gate.dims() != [n, c] || !fits(&x, &gate) {
        return Err((x, gate));
    }
    on_flex((x, gate), scale_channels_ad, scale_channels)
}

/// `f(a[i], b[i])` for every `i`, in parallel, as a tensor shaped as `a`.
fn zip_map(a: &FlexTensor, b: &FlexTensor, f: impl Fn(f32, f32) -> f32 + Sync) -> FlexTensor {
    let (a, b) = (a.to_contiguous(), b.to_contiguous());
    let values: Vec<f32> = host_slice(&a)
        .par_iter()
        .zip(host_slice(&b))
        .map(|(&a, &b)| f(a, b))
        .collect();
    FlexTensor::from_data(TensorData::new(values, a.shape()))
}

fn add_relu(x: &FlexTensor, shortcut: &FlexTensor) -> FlexTensor {
    zip_map(x, shortcut, |x, s| (x + s).max(0.0))
}

#[derive(Debug)]
struct AddReluBackward;

impl Backward<Flex, 2> for AddReluBackward {
    /// The output, whose sign masks the gradient.
    type State = FlexTensor;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let dy = grads.consume::<Flex>(&ops.node);
        let dx = zip_map(&dy, &ops.state, |g, y| if y > 0.0 { g } else { 0.0 });
        // Both inputs take the same gradient; the clone shares its storage.
        let [node_x, node_shortcut] = ops.parents;
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, dx.clone());
        }
        if let Some(node) = node_shortcut {
            grads.register::<Flex>(node.id, dx);
        }
    }
}

fn add_relu_ad((x, shortcut): Pair<Ad, 4>) -> Tensor<Ad, 4> {
    let (x, shortcut) = (
        x.into_primitive().tensor(),
        shortcut.into_primitive().tensor(),
    );
    let y = add_relu(&x.primitive, &shortcut.primitive);
    let out = match AddReluBackward
        .prepare::<NoCheckpointing>([x.node.clone(), shortcut.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(y.clone(), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// `x` (`[N, C, H, W]`) with plane `i` scaled by `gate[i]` (`[N, C]`), in parallel.
fn scale_channels(x: &FlexTensor, gate: &FlexTensor) -> FlexTensor {
    let (x, gate) = (x.to_contiguous(), gate.to_contiguous());
    let (xs, gs) = (host_slice(&x), host_slice(&gate));
    let plane = xs.len() / gs.len();
    let y = from_planes(gs.len(), plane, |i| {
        let g = gs[i];
        xs[i * plane..][..plane].iter().map(move |&x| x * g)
    });
    FlexTensor::from_data(TensorData::new(y, x.shape()))
}

#[derive(Debug)]
struct ScaleChannelsBackward;

/// What the gate's backward needs: each input when the other one wants a gradient.
#[derive(Debug, Clone)]
struct ScaleState {
    x: Option<FlexTensor>,
    gate: Option<FlexTensor>,
}

impl Backward<Flex, 2> for ScaleChannelsBackward {
    type State = ScaleState;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let dy = grads.consume::<Flex>(&ops.node);
        let [node_x, node_gate] = ops.parents;
        if let (Some(node), Some(gate)) = (node_x, &ops.state.gate) {
            grads.register::<Flex>(node.id, scale_channels(&dy, gate));
        }
        if let (Some(node), Some(x)) = (node_gate, &ops.state.x) {
            grads.register::<Flex>(node.id, plane_dots(&dy, x));
        }
    }
}

/// `[N, C]`: the dot product of each plane of `a` with the same plane of `b` (`[N, C, H, W]`).
fn plane_dots(a: &FlexTensor, b: &FlexTensor) -> FlexTensor {
    let (a, b) = (a.to_contiguous(), b.to_contiguous());
    let [n, c, h, w] = a.shape().dims();
    let dots: Vec<f32> = host_slice(&a)
        .par_chunks(h * w)
        .zip(host_slice(&b).par_chunks(h * w))
        .map(|(a, b)| a.iter().zip(b).map(|(a, b)| a * b).sum())
        .collect();
    FlexTensor::from_data(TensorData::new(dots, [n, c]))
}

fn scale_channels_ad((x, gate): Pair<Ad, 2>) -> Tensor<Ad, 4> {
    let (x, gate) = (x.into_primitive().tensor(), gate.into_primitive().tensor());
    let y = scale_channels(&x.primitive, &gate.primitive);
    let (x_tracked, gate_tracked) = (
        !x.node.requirement.is_none(),
        !gate.node.requirement.is_none(),
    );
    let out = match ScaleChannelsBackward
        .prepare::<NoCheckpointing>([x.node.clone(), gate.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let state = ScaleState {
                x: gate_tracked.then_some(x.primitive),
                gate: x_tracked.then_some(gate.primitive),
            };
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}
