//! How a kernel is chosen: by the backend's type, at run time.
//!
//! Every public entry point of the crate is generic over `B: Backend` and nothing more; Rust has
//! no specialisation, so a kernel written for one concrete backend is reached by downcasting the
//! inputs to that backend's tensors (a `TypeId` comparison, no `unsafe`). When the downcast fails
//! the inputs come back untouched and the caller tries the next backend, or Burn's operations.

use std::any::Any;

#[cfg(feature = "flex")]
use burn::backend::{Autodiff, Flex};

/// The crate's CPU training backend, the one with fused convolution and BatchNorm kernels.
#[cfg(feature = "flex")]
pub(crate) type Ad = Autodiff<Flex>;

/// `f(inputs)` when `Inputs` is `KernelInputs` (the same tensors written for the kernel's
/// backend), with its result as `Output`; otherwise the inputs back, untouched.
///
/// `KernelOutput` must be `Output` whenever `KernelInputs` is `Inputs`, which holds when both
/// pairs are the same types written for `B` and for the kernel's backend.
pub(crate) fn on_backend<Inputs, Output, KernelInputs, KernelOutput>(
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
