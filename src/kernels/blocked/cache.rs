//! Folded, packed convolutions kept from one inference to the next.
//!
//! Folding a BatchNorm into its convolution and packing the weights for the direct kernel reads
//! and writes every weight of the network: at batch 8 on TResNet-M it cost a fifth of an
//! inference. [`folded_conv`] does it once per set of tensors and keeps the result, keyed by the
//! tensors' storage. Flex tensors are immutable while shared (a write to a shared one copies it
//! first), and the cache holds a clone of each source, so the same storage means the same values.
//! An entry goes when the cache holds the last clone of one of its sources: the model it came
//! from was dropped or given new weights (a training step, a loaded checkpoint).

use std::sync::{Arc, Mutex, PoisonError};

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorMetadata};

use super::FoldedConv;
use crate::kernels::dispatch::on_backend;
use crate::kernels::host::{contiguous_f32, host_slice};

/// A bias-free convolution and the inference BatchNorm after it, as the model holds them.
pub(crate) struct ConvNorm<B: Backend> {
    /// `[O, C, k, k]`.
    pub(crate) weight: Tensor<B, 4>,
    /// The BatchNorm's scale and shift, `[O]`.
    pub(crate) gamma: Tensor<B, 1>,
    pub(crate) beta: Tensor<B, 1>,
    /// Its running mean and variance, `[O]`.
    pub(crate) mean: Tensor<B, 1>,
    pub(crate) var: Tensor<B, 1>,
    pub(crate) epsilon: f64,
}

/// A convolution packed from these tensors, kept for later calls.
struct Entry {
    /// Clones of the weight, gamma, beta, mean and variance.
    sources: [FlexTensor; 5],
    epsilon: f64,
    conv: Arc<FoldedConv>,
}

/// Every kept convolution.
static CACHE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// The convolution with its BatchNorm folded in, packed now or taken from an earlier call with
/// the same tensors.
///
/// # Panics
///
/// If `B` is not `Flex` (the blocked maps run on Flex only, see
/// [`available`](super::available)).
pub(crate) fn folded_conv<B: Backend>(layer: ConvNorm<B>) -> Arc<FoldedConv> {
    let sources = [
        flex(layer.weight),
        flex(layer.gamma),
        flex(layer.beta),
        flex(layer.mean),
        flex(layer.var),
    ];
    let found = {
        let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        cache.retain(|e| e.sources.iter().all(|s| !s.is_unique()));
        cache
            .iter()
            .find(|e| e.epsilon == layer.epsilon && e.sources.iter().zip(&sources).all(same))
            .map(|e| e.conv.clone())
    };
    if let Some(conv) = found {
        return conv;
    }
    let conv = Arc::new(pack(&sources, layer.epsilon));
    let entry = Entry {
        sources,
        epsilon: layer.epsilon,
        conv: conv.clone(),
    };
    CACHE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(entry);
    conv
}

/// Whether two tensors are views of the same storage with the same layout.
fn same((a, b): (&FlexTensor, &FlexTensor)) -> bool {
    Arc::ptr_eq(&a.data_arc(), &b.data_arc()) && a.layout() == b.layout() && a.dtype() == b.dtype()
}

/// A tensor of backend `B`, which is Flex, as Flex's.
fn flex<B: Backend, const D: usize>(t: Tensor<B, D>) -> FlexTensor {
    on_backend(t, |t: Tensor<Flex, D>| t.into_primitive().tensor())
        .unwrap_or_else(|_| panic!("blocked maps run on Flex only"))
}

/// `w * s` and `beta - mean * s` per output channel, `s = gamma / sqrt(var + eps)`, packed.
fn pack(sources: &[FlexTensor; 5], epsilon: f64) -> FoldedConv {
    let [weight, gamma, beta, mean, var] = sources.clone().map(contiguous_f32);
    let dims = weight.shape().dims();
    let (gamma, beta, mean, var) = (
        host_slice(&gamma),
        host_slice(&beta),
        host_slice(&mean),
        host_slice(&var),
    );
    let eps = epsilon as f32;
    let scale: Vec<f32> = gamma
        .iter()
        .zip(var)
        .map(|(g, v)| g / (v + eps).sqrt())
        .collect();
    let shift: Vec<f32> = (0..scale.len())
        .map(|o| beta[o] - mean[o] * scale[o])
        .collect();
    FoldedConv::new(host_slice(&weight), dims, &scale, &shift)
}
