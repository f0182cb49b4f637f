//! The one-cycle schedule and Adam with a cycled beta1 against PyTorch
//! (`scripts/train_onecycle_fixture.py` → `tests/fixtures/train/onecycle_adam.json`).

use aia::train::{OneCycleLr, OneCycleLrConfig, ScheduledAdam, ScheduledAdamConfig};
use burn::backend::{Autodiff, Flex};
use burn::lr_scheduler::LrScheduler;
use burn::module::{Module, Param};
use burn::optim::{GradientsParams, Optimizer};
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use serde::Deserialize;

type B = Autodiff<Flex>;

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    max_lr: f64,
    total_steps: usize,
    pct_start: f64,
    div_factor: f64,
    final_div_factor: f64,
    base_momentum: f64,
    max_momentum: f64,
    beta_2: f64,
    epsilon: f64,
    weight_decay: f64,
    initial: Vec<f32>,
    lr: Vec<f64>,
    beta_1: Vec<f64>,
    gradients: Vec<Vec<f32>>,
    parameters: Vec<Vec<f32>>,
}

fn fixture() -> Fixture {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/train/onecycle_adam.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

impl Case {
    fn schedule(&self) -> OneCycleLr {
        OneCycleLrConfig::new(self.max_lr, self.total_steps)
            .with_pct_start(self.pct_start)
            .with_div_factor(self.div_factor)
            .with_final_div_factor(self.final_div_factor)
            .with_base_momentum(self.base_momentum)
            .with_max_momentum(self.max_momentum)
            .init()
            .unwrap()
    }

    fn optimizer(&self) -> ScheduledAdam<Vector<B>, B> {
        ScheduledAdamConfig::new()
            .with_beta_2(self.beta_2)
            .with_epsilon(self.epsilon)
            .with_weight_decay(self.weight_decay)
            .init()
    }
}

/// A module holding one parameter vector.
#[derive(Module, Debug)]
struct Vector<B: Backend> {
    value: Param<Tensor<B, 1>>,
}

impl Vector<B> {
    fn new(values: &[f32]) -> Self {
        let device = Default::default();
        Self {
            value: Param::from_tensor(Tensor::from_data(TensorData::from(values), &device)),
        }
    }

    fn values(&self) -> Vec<f32> {
        self.value.val().into_data().to_vec().unwrap()
    }

    /// Gradients equal to `g`: those of `sum(value * g)`.
    fn gradients(&self, g: &[f32]) -> GradientsParams {
        let device = Default::default();
        let g = Tensor::<B, 1>::from_data(TensorData::from(g), &device);
        let loss = (self.value.val() * g).sum();
        GradientsParams::from_grads(loss.backward(), self)
    }
}

fn assert_close(actual: &[f32], expected: &[f32], tolerance: f32, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}");
    for (a, e) in actual.iter().zip(expected) {
        assert!(
            (a - e).abs() <= tolerance,
            "{what}: {actual:?} vs {expected:?}"
        );
    }
}

#[test]
fn the_schedule_matches_pytorch_one_cycle_lr() {
    for case in fixture().cases {
        let mut schedule = case.schedule();
        for (step, (lr, beta_1)) in case.lr.iter().zip(&case.beta_1).enumerate() {
            let point = schedule.next_point().unwrap();
            let relative = ((point.lr - lr) / lr).abs();
            assert!(
                relative < 1e-9,
                "{} step {step}: lr {} vs {lr}",
                case.name,
                point.lr
            );
            assert!(
                (point.momentum - beta_1).abs() < 1e-12,
                "{} step {step}: beta1 {} vs {beta_1}",
                case.name,
                point.momentum
            );
        }
        assert!(
            schedule.next_point().is_err(),
            "{}: PyTorch stops at total_steps",
            case.name
        );
    }
}

#[test]
fn burns_lr_scheduler_interface_gives_the_same_rates_and_restores_its_position() {
    let case = &fixture().cases[1];
    let mut schedule = case.schedule();
    for lr in &case.lr[..10] {
        assert!((LrScheduler::step(&mut schedule) - lr).abs() <= 1e-9 * lr);
    }
    let record = LrScheduler::to_record::<Flex>(&schedule);
    let mut restored = case.schedule().load_record::<Flex>(record);
    for lr in &case.lr[10..] {
        assert!((LrScheduler::step(&mut restored) - lr).abs() <= 1e-9 * lr);
    }
}

/// Runs Adam under the case's schedule from step `from` to `to`.
fn run_steps(
    case: &Case,
    schedule: &mut OneCycleLr,
    optimizer: &mut ScheduledAdam<Vector<B>, B>,
    mut module: Vector<B>,
    steps: std::ops::Range<usize>,
) -> Vector<B> {
    for step in steps {
        let point = schedule.next_point().unwrap();
        let grads = module.gradients(&case.gradients[step]);
        module = optimizer.step_with(point.lr, point.momentum, module, grads);
        assert_close(
            &module.values(),
            &case.parameters[step],
            1e-6,
            &format!("{} after step {step}", case.name),
        );
    }
    module
}

#[test]
fn adam_with_the_cycled_beta1_matches_torch_optim_adam() {
    for case in fixture().cases {
        let mut schedule = case.schedule();
        let mut optimizer = case.optimizer();
        run_steps(
            &case,
            &mut schedule,
            &mut optimizer,
            Vector::new(&case.initial),
            0..case.total_steps,
        );
    }
}

#[test]
fn a_fixed_beta1_would_not_match_so_the_fixture_sees_the_momentum() {
    let case = &fixture().cases[1];
    let mut schedule = case.schedule();
    let mut optimizer = case.optimizer();
    let mut module = Vector::new(&case.initial);
    for step in 0..case.total_steps {
        let point = schedule.next_point().unwrap();
        let grads = module.gradients(&case.gradients[step]);
        module = optimizer.step_with(point.lr, 0.9, module, grads);
    }
    let last = case.parameters.last().unwrap();
    let gap = module
        .values()
        .iter()
        .zip(last)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(gap > 1e-3, "beta1 0.9 throughout ends only {gap} away");
}

#[test]
fn saving_and_restoring_mid_run_continues_exactly() {
    let case = &fixture().cases[1];
    let half = case.total_steps / 2;
    let mut schedule = case.schedule();
    let mut optimizer = case.optimizer();
    let module = run_steps(
        case,
        &mut schedule,
        &mut optimizer,
        Vector::new(&case.initial),
        0..half,
    );

    let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::default();
    let optimizer_bytes = Recorder::<B>::record(&recorder, optimizer.to_record(), ()).unwrap();
    let module_bytes = Recorder::<B>::record(&recorder, module.into_record(), ()).unwrap();
    let position = schedule.position();

    let device = Default::default();
    let module = Vector::new(&[0.0; 4]).load_record(recorder.load(module_bytes, &device).unwrap());
    let mut optimizer = case
        .optimizer()
        .load_record(recorder.load(optimizer_bytes, &device).unwrap());
    let mut schedule = case.schedule();
    schedule.set_position(position);
    run_steps(
        case,
        &mut schedule,
        &mut optimizer,
        module,
        half..case.total_steps,
    );
}

#[test]
fn forgetting_the_moments_on_restore_would_not_match() {
    let case = &fixture().cases[1];
    let half = case.total_steps / 2;
    let mut schedule = case.schedule();
    let mut optimizer = case.optimizer();
    let mut module = run_steps(
        case,
        &mut schedule,
        &mut optimizer,
        Vector::new(&case.initial),
        0..half,
    );
    let mut fresh = case.optimizer();
    for step in half..case.total_steps {
        let point = schedule.next_point().unwrap();
        let grads = module.gradients(&case.gradients[step]);
        module = fresh.step_with(point.lr, point.momentum, module, grads);
    }
    let last = case.parameters.last().unwrap();
    let gap = module
        .values()
        .iter()
        .zip(last)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(gap > 1e-3, "fresh moments end only {gap} away");
}
