//! An exponential moving average of a model's weights (model EMA), BatchNorm statistics included.

use std::collections::HashMap;

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;

/// The moving average `ema = decay * ema + (1 - decay) * weights` of a model trained on an
/// autodiff backend, kept without gradients on its inner backend, as timm's `ModelEmaV2`: every
/// float tensor of the module, BatchNorm's running statistics included, is averaged.
///
/// ```
/// use aia::train::ModelEma;
/// use burn::backend::{Autodiff, Flex};
/// use burn::module::AutodiffModule;
/// use burn::nn::LinearConfig;
///
/// let device = Default::default();
/// let model = LinearConfig::new(2, 1).init::<Autodiff<Flex>>(&device);
/// let mut ema = ModelEma::new(model.valid(), 0.999);
/// ema.update::<Autodiff<Flex>, _>(&model);
/// assert_eq!(ema.updates(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct ModelEma<M> {
    model: M,
    decay: f64,
    updates: usize,
}

impl<M> ModelEma<M> {
    /// Starts the average at `model` (the trained model's weights, without gradients).
    pub fn new(model: M, decay: f64) -> Self {
        Self {
            model,
            decay,
            updates: 0,
        }
    }

    /// The averaged model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The weight of the past in each update.
    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// Updates applied so far.
    pub fn updates(&self) -> usize {
        self.updates
    }

    /// Replaces the averaged weights (e.g. by those of a checkpoint) and the update count.
    pub fn restore(&mut self, model: M, updates: usize) {
        self.model = model;
        self.updates = updates;
    }

    /// Moves the average towards `trained`'s current weights. Tensors are matched by
    /// [`ParamId`], which [`AutodiffModule::valid`] keeps, so the average must have been started
    /// from `trained.valid()` (or a checkpoint of it).
    pub fn update<B, A>(&mut self, trained: &A)
    where
        B: AutodiffBackend,
        A: AutodiffModule<B, InnerModule = M>,
        M: Module<B::InnerBackend>,
    {
        let mut current = Collect::<B>::default();
        trained.visit(&mut current);
        let mut blend = Blend::<B::InnerBackend> {
            current: current.tensors,
            decay: self.decay,
        };
        self.model = self.model.clone().map(&mut blend);
        self.updates += 1;
    }
}

/// The inner-backend value of every float tensor of a module, flattened, by id.
struct Collect<B: AutodiffBackend> {
    tensors: HashMap<ParamId, Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> Default for Collect<B> {
    fn default() -> Self {
        Self {
            tensors: HashMap::new(),
        }
    }
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Collect<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val().inner();
        let numel = value.shape().num_elements();
        self.tensors.insert(param.id, value.reshape([numel]));
    }
}

/// Blends each float tensor with the collected one of the same id.
struct Blend<B: Backend> {
    current: HashMap<ParamId, Tensor<B, 1>>,
    decay: f64,
}

impl<B: Backend> ModuleMapper<B> for Blend<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let Some(current) = self.current.remove(&param.id) else {
            return param;
        };
        let decay = self.decay;
        param.map(|average| {
            let shape = average.shape();
            average * decay + current.reshape(shape) * (1.0 - decay)
        })
    }
}
