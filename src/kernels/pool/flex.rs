//! The pools on `Flex` and `Autodiff<Flex>`: the plane loops of [`planes`](super::planes), one
//! plane per task, behind an analytic backward.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData, TensorMetadata, TensorPrimitive};
use rayon::prelude::*;

use super::planes::{self, pooled_side};
use crate::kernels::buffer::zeroed_f32;
use crate::kernels::dispatch::{on_backend, Ad};
use crate::kernels::host::host_slice;

/// Which pool.
#[derive(Debug, Clone, Copy)]
pub(super) enum Pool {
    /// The reflect-padded binomial blur pool.
    Blur,
    /// The 2x2 average pool in ceil mode.
    Average,
}

/// A plane loop: `f(from, to, (h, w))`, `(h, w)` the sides of the pool's input.
type PlaneFn = fn(&[f32], &mut [f32], (usize, usize));

impl Pool {
    fn forward_plane(self) -> PlaneFn {
        match self {
            Pool::Blur => planes::blur::<1>,
            Pool::Average => planes::average::<1>,
        }
    }

    fn backward_plane(self) -> PlaneFn {
        match self {
            Pool::Blur => planes::blur_backward::<1>,
            Pool::Average => planes::average_backward::<1>,
        }
    }

    /// The smallest side the pool takes: reflect padding by one needs two values.
    fn min_side(self) -> usize {
        match self {
            Pool::Blur => 2,
            Pool::Average => 1,
        }
    }
}

/// The pool through its kernel when `B` is `Flex` or `Autodiff<Flex>` and `x` is a non-empty
/// `f32` tensor the pool takes; otherwise `x` back, untouched.
pub(super) fn try_pool<B: Backend>(
    x: Tensor<B, 4>,
    pool: Pool,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    let [n, c, h, w] = x.dims();
    // Anything else takes the tensor-operation path and its checks.
    if n * c == 0 || h.min(w) < pool.min_side() || x.dtype() != DType::F32 {
        return Err(x);
    }
    let x = match on_backend(x, |x: Tensor<Ad, 4>| pool_ad(x, pool)) {
        Ok(y) => return Ok(y),
        Err(x) => x,
    };
    on_backend(x, |x: Tensor<Flex, 4>| {
        let y = forward(pool, &x.into_primitive().tensor());
        Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(y))
    })
}

/// `f(from plane, to plane)` for each of the `planes` planes of `from` and `to`, in parallel.
fn per_plane(from: &[f32], to: &mut [f32], planes: usize, f: impl Fn(&[f32], &mut [f32]) + Sync) {
    to.par_chunks_mut(to.len() / planes)
        .zip(from.par_chunks(from.len() / planes))
        .for_each(|(to, from)| f(from, to));
}

/// The pool of `x`, `[N, C, ceil(H / 2), ceil(W / 2)]`.
fn forward(pool: Pool, x: &FlexTensor) -> FlexTensor {
    let [n, c, h, w] = x.shape().dims();
    let (ho, wo) = (pooled_side(h), pooled_side(w));
    let x = x.to_contiguous();
    let mut y = zeroed_f32(n * c * ho * wo);
    let plane = pool.forward_plane();
    per_plane(host_slice(&x), &mut y, n * c, |x, y| plane(x, y, (h, w)));
    FlexTensor::from_data(TensorData::new(y, [n, c, ho, wo]))
}

#[derive(Debug)]
struct PoolBackward;

impl Backward<Flex, 1> for PoolBackward {
    /// The pool and the input's shape.
    type State = (Pool, [usize; 4]);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        let Some(node) = node else { return };
        let (pool, [n, c, h, w]) = ops.state;
        let mut dx = zeroed_f32(n * c * h * w);
        let plane = pool.backward_plane();
        per_plane(host_slice(&dy), &mut dx, n * c, |dy, dx| {
            plane(dy, dx, (h, w))
        });
        grads.register::<Flex>(
            node.id,
            FlexTensor::from_data(TensorData::new(dx, [n, c, h, w])),
        );
    }
}

fn pool_ad(x: Tensor<Ad, 4>, pool: Pool) -> Tensor<Ad, 4> {
    let x = x.into_primitive().tensor();
    let shape = x.primitive.shape().dims();
    let y = forward(pool, &x.primitive);
    let out = match PoolBackward
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((pool, shape), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}
