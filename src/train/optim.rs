//! Adam whose learning rate and beta1 are given at every step, as `torch.optim.Adam` under a
//! scheduler that cycles its momentum.

use burn::config::Config;
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{
    GradientsParams, LearningRate, MultiGradientsParams, Optimizer, SimpleOptimizer,
};
use burn::record::Record;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;

use crate::kernels::{adam_update, AdamUpdate};

/// Configuration of [`ScheduledAdam`]; the defaults are `torch.optim.Adam`'s.
#[derive(Config, Debug, PartialEq)]
pub struct ScheduledAdamConfig {
    /// beta1 until [`ScheduledAdam::step_with`] or [`ScheduledAdam::set_beta_1`] says otherwise.
    #[config(default = 0.9)]
    pub beta_1: f64,
    /// The decay of the second-moment estimate.
    #[config(default = 0.999)]
    pub beta_2: f64,
    /// Added to the denominator for numerical stability (PyTorch's `eps`).
    #[config(default = 1e-8)]
    pub epsilon: f64,
    /// L2 penalty added to the gradient (PyTorch's `weight_decay`, not AdamW's decoupled one).
    #[config(default = 0.0)]
    pub weight_decay: f64,
}

impl ScheduledAdamConfig {
    /// Builds the optimizer for a module type, with empty moments.
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(&self) -> ScheduledAdam<M, B> {
        ScheduledAdam {
            config: self.clone(),
            beta_1: self.beta_1,
            records: None,
        }
    }
}

/// One parameter's Adam state.
#[derive(Record, Clone)]
pub struct ScheduledAdamState<B: Backend, const D: usize> {
    /// The number of steps this parameter has taken.
    pub time: usize,
    /// The first-moment estimate (PyTorch's `exp_avg`).
    pub moment_1: Tensor<B, D>,
    /// The second-moment estimate (PyTorch's `exp_avg_sq`).
    pub moment_2: Tensor<B, D>,
}

/// The per-parameter update with fixed hyper-parameters; [`ScheduledAdam`] makes one per step.
#[derive(Clone, Debug)]
pub struct AdamStep {
    beta_1: f64,
    beta_2: f64,
    epsilon: f64,
    weight_decay: f64,
}

impl<B: Backend> SimpleOptimizer<B> for AdamStep {
    type State<const D: usize> = ScheduledAdamState<B, D>;

    /// `torch.optim.Adam`'s single-tensor update, operation for operation: the moments use the
    /// current beta1 and so does the bias correction `1 - beta1^t`.
    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let time = state.as_ref().map_or(0, |s| s.time) + 1;
        let update = AdamUpdate {
            lr,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
            time,
        };
        let moments = state.map(|s| (s.moment_1, s.moment_2));
        let out = adam_update(tensor, grad, moments, update);
        (
            out.param,
            Some(ScheduledAdamState {
                time,
                moment_1: out.moment_1,
                moment_2: out.moment_2,
            }),
        )
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        ScheduledAdamState {
            time: state.time,
            moment_1: state.moment_1.to_device(device),
            moment_2: state.moment_2.to_device(device),
        }
    }
}

/// The optimizer state of a [`ScheduledAdam`] (the moments of every parameter), a burn
/// [`Record`] to save with any recorder.
pub type ScheduledAdamRecord<M, B> = <OptimizerAdaptor<AdamStep, M, B> as Optimizer<M, B>>::Record;

/// Adam with the learning rate and beta1 given at every step, so a one-cycle schedule can cycle
/// the momentum as PyTorch's `OneCycleLR(cycle_momentum=True)` does (burn's `Adam` fixes beta1
/// at build time).
///
/// It also implements burn's [`Optimizer`] (using the last beta1 set), so its state goes through
/// [`Optimizer::to_record`] / [`Optimizer::load_record`].
#[derive(Clone)]
pub struct ScheduledAdam<M: AutodiffModule<B>, B: AutodiffBackend> {
    config: ScheduledAdamConfig,
    beta_1: f64,
    records: Option<ScheduledAdamRecord<M, B>>,
}

impl<M: AutodiffModule<B>, B: AutodiffBackend> ScheduledAdam<M, B> {
    /// One update of every parameter that has a gradient, with this step's rate and beta1.
    pub fn step_with(
        &mut self,
        lr: LearningRate,
        beta_1: f64,
        module: M,
        grads: GradientsParams,
    ) -> M {
        self.beta_1 = beta_1;
        Optimizer::step(self, lr, module, grads)
    }

    /// Sets beta1 for the next [`Optimizer::step`].
    pub fn set_beta_1(&mut self, beta_1: f64) {
        self.beta_1 = beta_1;
    }

    /// The beta1 of the last (or next) step.
    pub fn beta_1(&self) -> f64 {
        self.beta_1
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &ScheduledAdamConfig {
        &self.config
    }

    /// burn's adaptor for this step's hyper-parameters, holding the moments so far.
    fn adaptor(&mut self) -> OptimizerAdaptor<AdamStep, M, B> {
        let adaptor = OptimizerAdaptor::from(AdamStep {
            beta_1: self.beta_1,
            beta_2: self.config.beta_2,
            epsilon: self.config.epsilon,
            weight_decay: self.config.weight_decay,
        });
        match self.records.take() {
            Some(records) => adaptor.load_record(records),
            None => adaptor,
        }
    }
}

impl<M: AutodiffModule<B>, B: AutodiffBackend> Optimizer<M, B> for ScheduledAdam<M, B> {
    type Record = ScheduledAdamRecord<M, B>;

    fn step(&mut self, lr: LearningRate, module: M, grads: GradientsParams) -> M {
        let mut adaptor = self.adaptor();
        let module = adaptor.step(lr, module, grads);
        self.records = Some(adaptor.to_record());
        module
    }

    fn step_multi(&mut self, lr: LearningRate, module: M, grads: MultiGradientsParams) -> M {
        let mut adaptor = self.adaptor();
        let module = adaptor.step_multi(lr, module, grads);
        self.records = Some(adaptor.to_record());
        module
    }

    fn to_record(&self) -> Self::Record {
        self.records.clone().unwrap_or_default()
    }

    fn load_record(mut self, record: Self::Record) -> Self {
        self.records = Some(record);
        self
    }
}
