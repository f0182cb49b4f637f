//! The loss kernel on Burn's Flex CPU backend: the CPU kernel on the tensors' own storage.

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::ops::{FloatTensor, FloatTensorOps};
use burn::tensor::{DType, TensorData, TensorMetadata};

use super::cpu::{asymmetric_loss_cpu_in_place, kernel, scale_in_place, CpuPath};
use super::LossKernel;
use crate::kernels::buffer::zeroed_f32;
use crate::kernels::host::{contiguous_f32, in_dtype};
use crate::loss::{LossParams, Reduction};

fn run(
    logits: FlexTensor,
    targets: FlexTensor,
    params: &LossParams,
    with_grad: bool,
) -> (FlexTensor, Option<FlexTensor>) {
    let dtype = logits.dtype();
    let shape = logits.shape();
    let [_, classes] = shape.dims::<2>();
    let loss_tensor = |loss: f64| {
        in_dtype(
            FlexTensor::from_data(TensorData::new(vec![loss as f32], [1])),
            dtype,
        )
    };
    if params.reduction == Reduction::None {
        // The per-element losses, flattened as `forward` returns them.
        let x = contiguous_f32(logits);
        let y = contiguous_f32(targets);
        let (xs, ys) = (x.as_slice::<f32>().unwrap(), y.as_slice::<f32>().unwrap());
        let mut losses = zeroed_f32(xs.len());
        let mut g = with_grad.then(|| zeroed_f32(xs.len()));
        let path = CpuPath::best();
        kernel(
            path,
            xs,
            ys,
            classes,
            params,
            g.as_deref_mut(),
            Some(&mut losses),
        );
        let losses = FlexTensor::from_data(TensorData::new(losses, [xs.len()]));
        let g = g.map(|g| in_dtype(FlexTensor::from_data(TensorData::new(g, shape)), dtype));
        return (in_dtype(losses, dtype), g);
    }
    let mut logits = logits;
    if with_grad && dtype == DType::F32 && logits.is_unique() {
        // Nobody else sees these logits: their storage becomes the gradient.
        if let Some((start, end)) = logits.layout().contiguous_offsets() {
            let y = contiguous_f32(targets);
            let ys = y.as_slice::<f32>().unwrap();
            let values = logits.try_storage_mut::<f32>().expect("unique");
            let loss = asymmetric_loss_cpu_in_place(&mut values[start..end], ys, classes, params);
            return (loss_tensor(loss), Some(logits));
        }
    }
    let x = contiguous_f32(logits);
    let y = contiguous_f32(targets);
    let (xs, ys) = (x.as_slice::<f32>().unwrap(), y.as_slice::<f32>().unwrap());
    let (loss, grad) = if with_grad {
        let mut g = zeroed_f32(xs.len());
        let loss = kernel(CpuPath::best(), xs, ys, classes, params, Some(&mut g), None);
        let g = FlexTensor::from_data(TensorData::new(g, shape));
        (loss, Some(in_dtype(g, dtype)))
    } else {
        let loss = kernel(CpuPath::best(), xs, ys, classes, params, None, None);
        (loss, None)
    };
    (loss_tensor(loss), grad)
}

impl LossKernel for Flex {
    fn asymmetric_loss(
        logits: FloatTensor<Self>,
        targets: FloatTensor<Self>,
        params: &LossParams,
    ) -> FloatTensor<Self> {
        run(logits, targets, params, false).0
    }

    fn asymmetric_loss_with_grad(
        logits: FloatTensor<Self>,
        targets: FloatTensor<Self>,
        params: &LossParams,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (loss, grad) = run(logits, targets, params, true);
        (loss, grad.expect("requested"))
    }

    fn asymmetric_loss_scale_grad(
        grad: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let factor = contiguous_f32(grad_out).as_slice::<f32>().unwrap()[0];
        // A loss is almost always the root of the graph: its incoming gradient is exactly 1.
        if factor == 1.0 {
            return grad;
        }
        let dtype = grad.dtype();
        let mut g = contiguous_f32(grad);
        match g.try_storage_mut::<f32>() {
            Some(values) => scale_in_place(values, factor),
            None => return Flex::float_mul_scalar(in_dtype(g, dtype), factor.into()),
        }
        in_dtype(g, dtype)
    }
}
