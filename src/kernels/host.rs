//! Flex tensors seen as host slices, the form the CPU kernels work on.

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::ops::FloatTensorOps;
use burn::tensor::{DType, FloatDType, TensorMetadata};

/// The values of a contiguous `f32` tensor.
pub(crate) fn host_slice(t: &FlexTensor) -> &[f32] {
    let n = t.shape().num_elements();
    &t.as_slice::<f32>().expect("contiguous f32")[..n]
}

/// An `f32` tensor whose storage is one contiguous run (a view of it needs no copy).
pub(crate) fn contiguous_f32(t: FlexTensor) -> FlexTensor {
    let t = if t.dtype() == DType::F32 {
        t
    } else {
        Flex::float_cast(t, FloatDType::F32)
    };
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// `t` cast to `dtype`, the dtype of the input a kernel's output belongs to.
pub(crate) fn in_dtype(t: FlexTensor, dtype: DType) -> FlexTensor {
    if dtype == DType::F32 {
        t
    } else {
        Flex::float_cast(t, dtype.into())
    }
}
