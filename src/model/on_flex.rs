//! What the fused training kernels ([`conv`](super::conv), [`batch_norm`](super::batch_norm))
//! share: choosing them at run time when the backend is `Flex` or `Autodiff<Flex>`, and reading a Flex
//! tensor's values on the host.
//!
//! The model stays generic over `B: Backend`; Rust has no specialisation, so the kernels are
//! picked by downcasting the inputs (a `TypeId` comparison, no `unsafe`).

use std::any::Any;

use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::TensorMetadata;

/// The crate's CPU training backend, the one with fused kernels.
pub(super) type Ad = Autodiff<Flex>;

/// `f(inputs)` when `Inputs` is `KernelInputs` (the same tuple of tensors on the kernel's
/// backend, `Flex` or `Autodiff<Flex>`), with its result as `Output`; otherwise the inputs back,
/// untouched.
///
/// `KernelOutput` must be `Output` whenever `KernelInputs` is `Inputs`, which holds when both
/// pairs are the same types written for `B` and for the kernel's backend.
pub(super) fn on_backend<Inputs, Output, KernelInputs, KernelOutput>(
    inputs: Inputs,
    f: impl FnOnce(KernelInputs) -> KernelOutput,
) -> Result<Output, Inputs>
where
    Inputs: 'static,
    Output: 'static,
    KernelInputs: 'static,
    KernelOutput: 'static,
{
    let inputs: Box<dyn Any> = Box::new(inputs);
    match inputs.downcast::<KernelInputs>() {
        Ok(inputs) => {
            let output: Box<dyn Any> = Box::new(f(*inputs));
            Ok(*output
                .downcast::<Output>()
                .expect("the backend is the kernel's, checked above"))
        }
        Err(inputs) => Err(*inputs.downcast::<Inputs>().expect("boxed as such above")),
    }
}

/// The values of a contiguous `f32` tensor.
pub(super) fn host_slice(t: &FlexTensor) -> &[f32] {
    let n = t.shape().num_elements();
    &t.as_slice::<f32>().expect("contiguous f32")[..n]
}
