//! Folded, packed convolutions kept from one inference to the next.
//!
//! Folding a BatchNorm into its convolution and packing the weights for the direct kernel reads
//! and writes every weight of the network: at batch 8 on TResNet-M it cost a fifth of an
//! inference. [`folded_conv`] does it once per set of tensors and keeps the result, keyed by the
//! tensors' storage. Flex tensors are immutable while shared (a write to a shared one copies it
//! first), and the cache holds a clone of each source, so the same storage means the same values.
//! A 3x3 convolution also holds its weight tensor, whose kernels it transforms again for another
//! variant of Winograd's algorithm. An entry goes when the cache's own clones are all that is left
//! of one of its sources: the model it came from was dropped or given new weights (a training
//! step, a loaded checkpoint).

use std::collections::HashMap;
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
    /// The kernels that `conv` holds, if it does.
    kernels: Option<Arc<TensorValues>>,
}

/// A contiguous `f32` tensor's values, read where the tensor keeps them.
struct TensorValues(FlexTensor);

impl AsRef<[f32]> for TensorValues {
    fn as_ref(&self) -> &[f32] {
        host_slice(&self.0)
    }
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
    let find = |cache: &[Entry], sources: &[FlexTensor; 5]| {
        cache
            .iter()
            .find(|e| e.epsilon == layer.epsilon && e.sources.iter().zip(sources).all(same))
            .map(|e| e.conv.clone())
    };
    {
        let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        evict(&mut cache);
        if let Some(conv) = find(&cache, &sources) {
            return conv;
        }
    }
    // Packed without the lock, so that other layers and models are not held up; another thread
    // may have packed the same layer meanwhile, and then its entry is the one kept.
    let (conv, kernels) = pack(&sources, layer.epsilon);
    let conv = Arc::new(conv);
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(conv) = find(&cache, &sources) {
        return conv;
    }
    cache.push(Entry {
        sources,
        epsilon: layer.epsilon,
        conv: conv.clone(),
        kernels,
    });
    conv
}

/// Drops the entries one of whose sources nothing but the cache holds, until none is left.
fn evict(cache: &mut Vec<Entry>) {
    loop {
        let storage = |t: &FlexTensor| {
            let data = t.data_arc();
            // Less the clone just made.
            (
                Arc::as_ptr(&data).cast::<()>(),
                Arc::strong_count(&data) - 1,
            )
        };
        // The cache's clones of each storage: the sources, and the kernels a convolution holds
        // (the weight's storage itself where it was contiguous `f32`).
        let mut in_cache: HashMap<*const (), usize> = HashMap::new();
        let kernels = cache.iter().filter_map(|e| e.kernels.as_deref());
        for tensor in cache
            .iter()
            .flat_map(|e| &e.sources)
            .chain(kernels.map(|k| &k.0))
        {
            *in_cache.entry(storage(tensor).0).or_default() += 1;
        }
        let before = cache.len();
        cache.retain(|e| {
            e.sources.iter().all(|s| {
                let (at, count) = storage(s);
                count > in_cache[&at]
            })
        });
        if cache.len() == before {
            return;
        }
    }
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

/// `w * s` and `beta - mean * s` per output channel, `s = gamma / sqrt(var + eps)`, packed; and
/// the kernels, if the convolution holds them.
fn pack(sources: &[FlexTensor; 5], epsilon: f64) -> (FoldedConv, Option<Arc<TensorValues>>) {
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
    let kernels = Arc::new(TensorValues(weight));
    let conv = FoldedConv::new(kernels.clone(), dims, &scale, &shift);
    let kept = conv.keeps_kernels().then_some(kernels);
    (conv, kept)
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;

    fn layer(seed: f32) -> ConvNorm<Flex> {
        let device = Default::default();
        let vector =
            |v: f32| Tensor::<Flex, 1>::from_data(TensorData::new(vec![v; 16], [16]), &device);
        let weight: Vec<f32> = (0..16 * 16 * 9).map(|i| seed + i as f32 * 1e-3).collect();
        ConvNorm {
            weight: Tensor::from_data(TensorData::new(weight, [16, 16, 3, 3]), &device),
            gamma: vector(1.5),
            beta: vector(0.1),
            mean: vector(0.2),
            var: vector(2.0),
            epsilon: 1e-5,
        }
    }

    /// The same tensors give the same packed convolution; once the caller has dropped them and
    /// the convolution, the next lookup lets go of the cache's clones, and their storage is freed.
    #[test]
    fn entries_follow_their_tensors() {
        let kept = layer(1.0);
        let clone = || ConvNorm {
            weight: kept.weight.clone(),
            gamma: kept.gamma.clone(),
            beta: kept.beta.clone(),
            mean: kept.mean.clone(),
            var: kept.var.clone(),
            epsilon: kept.epsilon,
        };
        let first = folded_conv(clone());
        assert!(Arc::ptr_eq(&first, &folded_conv(clone())), "packed twice");
        let other = ConvNorm {
            epsilon: 1e-3,
            ..clone()
        };
        assert!(!Arc::ptr_eq(&first, &folded_conv(other)), "another epsilon");

        let storage = Arc::downgrade(&flex(kept.weight.clone()).data_arc());
        drop(kept);
        assert!(storage.upgrade().is_some(), "the cache holds a clone");
        folded_conv(layer(2.0));
        // The entries are gone, but the 3x3 convolution still in use reads its kernels where
        // the model kept them: it holds them, not a copy.
        assert!(
            storage.upgrade().is_some(),
            "the convolution holds its kernels"
        );
        drop(first);
        assert!(storage.upgrade().is_none(), "the entry outlived its model");
    }
}
