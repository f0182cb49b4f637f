//! The loss kernel on Burn's NdArray CPU backend: the CPU kernel on the arrays' own memory.

use std::borrow::Cow;

use burn::backend::ndarray::{
    FloatNdArrayElement, IntNdArrayElement, NdArray, NdArrayTensor, QuantElement, SharedArray,
};
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, FloatDType, TensorData, TensorMetadata};

use super::cpu::{kernel, CpuPath};
use super::LossKernel;
use crate::kernels::buffer::zeroed_f32;
use crate::loss::{LossParams, Reduction};

/// The `f32` values in row-major order, borrowed when the array is standard-layout `f32`.
fn values(t: &NdArrayTensor) -> Option<Cow<'_, [f32]>> {
    match t {
        NdArrayTensor::F32(storage) => {
            let view = storage.view();
            Some(match view.to_slice() {
                Some(slice) => Cow::Borrowed(slice),
                None => Cow::Owned(view.iter().copied().collect()),
            })
        }
        _ => None,
    }
}

fn run<B: LossKernel<FloatTensorPrimitive = NdArrayTensor>>(
    logits: NdArrayTensor,
    targets: NdArrayTensor,
    params: &LossParams,
    with_grad: bool,
) -> (NdArrayTensor, Option<NdArrayTensor>) {
    let dtype = logits.dtype();
    let shape = logits.shape();
    let [_, classes] = shape.dims::<2>();
    let to_f32 = |t: NdArrayTensor| {
        if t.dtype() == DType::F32 {
            t
        } else {
            B::float_cast(t, FloatDType::F32)
        }
    };
    let back = |t: NdArrayTensor| {
        if dtype == DType::F32 {
            t
        } else {
            B::float_cast(t, dtype.into())
        }
    };
    let (x, y) = (to_f32(logits), to_f32(targets));
    let (xs, ys) = (values(&x).expect("f32"), values(&y).expect("f32"));
    let n = xs.len();
    let mut g = with_grad.then(|| zeroed_f32(n));
    let mut losses = (params.reduction == Reduction::None).then(|| zeroed_f32(n));
    let path = CpuPath::best();
    let loss = kernel(
        path,
        &xs,
        &ys,
        classes,
        params,
        g.as_deref_mut(),
        losses.as_deref_mut(),
    );
    let grad = g.map(|g| back(NdArrayTensor::from_data(TensorData::new(g, shape))));
    // With no reduction, the per-element losses, flattened as `forward` returns them.
    let loss = match losses {
        Some(l) => NdArrayTensor::from_data(TensorData::new(l, [n])),
        None => NdArrayTensor::from_data(TensorData::new(vec![loss as f32], [1])),
    };
    (back(loss), grad)
}

impl<E: FloatNdArrayElement, I: IntNdArrayElement, Q: QuantElement> LossKernel for NdArray<E, I, Q>
where
    NdArrayTensor: From<SharedArray<E>>,
    NdArrayTensor: From<SharedArray<I>>,
{
    fn asymmetric_loss(
        logits: FloatTensor<Self>,
        targets: FloatTensor<Self>,
        params: &LossParams,
    ) -> FloatTensor<Self> {
        run::<Self>(logits, targets, params, false).0
    }

    fn asymmetric_loss_with_grad(
        logits: FloatTensor<Self>,
        targets: FloatTensor<Self>,
        params: &LossParams,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (loss, grad) = run::<Self>(logits, targets, params, true);
        (loss, grad.expect("requested"))
    }
}
