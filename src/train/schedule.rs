//! The one-cycle learning-rate and momentum schedule, as PyTorch's `OneCycleLR` defines it.

use burn::config::Config;
use burn::lr_scheduler::LrScheduler;
use burn::optim::LearningRate;
use burn::tensor::backend::Backend;

use super::TrainError;

/// Configuration of [`OneCycleLr`]: PyTorch's
/// `OneCycleLR(max_lr, total_steps, pct_start, anneal_strategy='cos', div_factor,
/// final_div_factor, three_phase=False, cycle_momentum=True, base_momentum, max_momentum)`.
///
/// The rate rises from `max_lr / div_factor` to `max_lr` over the first `pct_start` of the steps
/// along a half cosine, then falls to `max_lr / (div_factor * final_div_factor)` along another;
/// the momentum (Adam's beta1) moves the opposite way, from `max_momentum` down to
/// `base_momentum` and back.
#[derive(Config, Debug, PartialEq)]
pub struct OneCycleLrConfig {
    /// The peak learning rate.
    pub max_lr: f64,
    /// The number of optimizer steps of the whole run (epochs × batches per epoch).
    pub total_steps: usize,
    /// The fraction of the steps spent warming up.
    #[config(default = 0.2)]
    pub pct_start: f64,
    /// The first rate is `max_lr / div_factor`.
    #[config(default = 25.0)]
    pub div_factor: f64,
    /// The last rate is `max_lr / (div_factor * final_div_factor)`.
    #[config(default = 1e4)]
    pub final_div_factor: f64,
    /// The momentum at the peak learning rate.
    #[config(default = 0.85)]
    pub base_momentum: f64,
    /// The momentum at the first and last steps.
    #[config(default = 0.95)]
    pub max_momentum: f64,
}

impl OneCycleLrConfig {
    /// Checks the values as PyTorch does and builds the schedule, positioned at its first step.
    pub fn init(&self) -> Result<OneCycleLr, TrainError> {
        let invalid = |reason: String| Err(TrainError::InvalidConfig(reason));
        if self.total_steps == 0 {
            return invalid("one-cycle schedule: total_steps must be positive".into());
        }
        if !(self.pct_start >= 0.0 && self.pct_start <= 1.0) {
            return invalid(format!(
                "one-cycle schedule: pct_start must be in [0, 1], got {}",
                self.pct_start
            ));
        }
        for (name, value) in [
            ("max_lr", self.max_lr),
            ("div_factor", self.div_factor),
            ("final_div_factor", self.final_div_factor),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return invalid(format!(
                    "one-cycle schedule: {name} must be positive, got {value}"
                ));
            }
        }
        for (name, value) in [
            ("base_momentum", self.base_momentum),
            ("max_momentum", self.max_momentum),
        ] {
            if !(0.0..1.0).contains(&value) {
                return invalid(format!(
                    "one-cycle schedule: {name} must be in [0, 1), got {value}"
                ));
            }
        }
        // PyTorch computes the end of the warm-up in floating point, so it can fall between steps;
        // a negative one (very short runs) skips the warm-up, and exactly 0 divides by zero at
        // step 0, which PyTorch reports as an error too.
        let warmup_end = self.pct_start * self.total_steps as f64 - 1.0;
        let last = self.total_steps as f64 - 1.0;
        if warmup_end == 0.0 {
            return invalid(format!(
                "one-cycle schedule: pct_start {} × {} steps makes a warm-up of length 0",
                self.pct_start, self.total_steps
            ));
        }
        let initial_lr = self.max_lr / self.div_factor;
        Ok(OneCycleLr {
            initial_lr,
            max_lr: self.max_lr,
            min_lr: initial_lr / self.final_div_factor,
            base_momentum: self.base_momentum,
            max_momentum: self.max_momentum,
            warmup_end,
            last,
            total_steps: self.total_steps,
            step: 0,
        })
    }
}

/// The learning rate and momentum for one optimizer step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SchedulePoint {
    /// The learning rate.
    pub lr: LearningRate,
    /// The momentum, used as Adam's beta1.
    pub momentum: f64,
}

/// PyTorch's `OneCycleLR` (two phases, cosine annealing, cycled momentum), stepped every batch.
///
/// [`next_point`](Self::next_point) gives the values for the current optimizer step and moves to
/// the next one; the position is the whole state, saved and restored through
/// [`LrScheduler::to_record`] / [`LrScheduler::load_record`] or [`position`](Self::position) /
/// [`set_position`](Self::set_position).
///
/// ```
/// use aia::train::OneCycleLrConfig;
///
/// let mut schedule = OneCycleLrConfig::new(1e-4, 100).init().unwrap();
/// let first = schedule.next_point().unwrap();
/// assert!((first.lr - 1e-4 / 25.0).abs() < 1e-15);
/// assert_eq!(first.momentum, 0.95);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct OneCycleLr {
    initial_lr: f64,
    max_lr: f64,
    min_lr: f64,
    base_momentum: f64,
    max_momentum: f64,
    warmup_end: f64,
    last: f64,
    total_steps: usize,
    step: usize,
}

/// PyTorch's `_annealing_cos`: from `start` at `pct = 0` to `end` at `pct = 1` along a half cosine.
fn annealing_cos(start: f64, end: f64, pct: f64) -> f64 {
    let cos_out = (std::f64::consts::PI * pct).cos() + 1.0;
    end + (start - end) / 2.0 * cos_out
}

impl OneCycleLr {
    /// The values at any step (0-based), without moving; `None` past the last step.
    pub fn point_at(&self, step: usize) -> Option<SchedulePoint> {
        if step >= self.total_steps {
            return None;
        }
        let step = step as f64;
        // PyTorch's phase loop: the warm-up up to `warmup_end` included, then the decay.
        let (start_step, end_step, lr, momentum) = if step <= self.warmup_end {
            (
                0.0,
                self.warmup_end,
                (self.initial_lr, self.max_lr),
                (self.max_momentum, self.base_momentum),
            )
        } else {
            (
                self.warmup_end,
                self.last,
                (self.max_lr, self.min_lr),
                (self.base_momentum, self.max_momentum),
            )
        };
        let pct = (step - start_step) / (end_step - start_step);
        Some(SchedulePoint {
            lr: annealing_cos(lr.0, lr.1, pct),
            momentum: annealing_cos(momentum.0, momentum.1, pct),
        })
    }

    /// The values for the current step, moving to the next one.
    ///
    /// Errors once all `total_steps` steps are used, as PyTorch does.
    pub fn next_point(&mut self) -> Result<SchedulePoint, TrainError> {
        let point = self
            .point_at(self.step)
            .ok_or(TrainError::ScheduleExhausted {
                total_steps: self.total_steps,
            })?;
        self.step += 1;
        Ok(point)
    }

    /// The number of steps already taken.
    pub fn position(&self) -> usize {
        self.step
    }

    /// Moves to a step (0-based), e.g. when resuming a run.
    pub fn set_position(&mut self, step: usize) {
        self.step = step;
    }

    /// The number of steps of the whole schedule.
    pub fn total_steps(&self) -> usize {
        self.total_steps
    }
}

impl LrScheduler for OneCycleLr {
    type Record<B: Backend> = usize;

    /// The learning rate of the current step, moving to the next one; past the end it stays at
    /// the last rate (use [`OneCycleLr::next_point`] to get an error instead).
    fn step(&mut self) -> LearningRate {
        let point = self
            .point_at(self.step.min(self.total_steps - 1))
            .expect("total_steps is positive");
        self.step += 1;
        point.lr
    }

    fn to_record<B: Backend>(&self) -> Self::Record<B> {
        self.step
    }

    fn load_record<B: Backend>(mut self, record: Self::Record<B>) -> Self {
        self.step = record;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_the_definition() {
        let schedule = OneCycleLrConfig::new(1e-3, 101).init().unwrap();
        let first = schedule.point_at(0).unwrap();
        assert!((first.lr - 1e-3 / 25.0).abs() < 1e-18);
        assert_eq!(first.momentum, 0.95);
        // pct_start * 101 - 1 = 19.2: the peak falls between steps 19 and 20, both just below it.
        let peak = schedule
            .point_at(19)
            .unwrap()
            .lr
            .max(schedule.point_at(20).unwrap().lr);
        assert!(peak < 1e-3 && peak > 0.999e-3);
        let last = schedule.point_at(100).unwrap();
        assert!((last.lr - 1e-3 / 25.0 / 1e4).abs() < 1e-18);
        assert!((last.momentum - 0.95).abs() < 1e-15);
        assert!(schedule.point_at(101).is_none());
    }

    #[test]
    fn exhausting_the_schedule_is_an_error() {
        let mut schedule = OneCycleLrConfig::new(1e-3, 10).init().unwrap();
        for _ in 0..10 {
            schedule.next_point().unwrap();
        }
        assert!(matches!(
            schedule.next_point(),
            Err(TrainError::ScheduleExhausted { total_steps: 10 })
        ));
    }

    #[test]
    fn invalid_configs_are_rejected() {
        assert!(OneCycleLrConfig::new(1e-3, 0).init().is_err());
        assert!(OneCycleLrConfig::new(-1.0, 10).init().is_err());
        assert!(OneCycleLrConfig::new(1e-3, 10)
            .with_pct_start(1.5)
            .init()
            .is_err());
        // 0.2 * 5 - 1 = 0: PyTorch divides by zero at step 0.
        assert!(OneCycleLrConfig::new(1e-3, 5).init().is_err());
    }

    #[test]
    fn very_short_runs_skip_the_warm_up_as_pytorch_does() {
        // 0.2 * 3 - 1 = -0.4: every step is in the decay phase, which starts at step -0.4.
        let schedule = OneCycleLrConfig::new(1e-3, 3).init().unwrap();
        let pct = 0.4 / 2.4;
        let expected =
            1e-3 / 25e4 + (1e-3 - 1e-3 / 25e4) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0);
        assert!((schedule.point_at(0).unwrap().lr - expected).abs() < 1e-18);
        assert!((schedule.point_at(2).unwrap().lr - 1e-3 / 25e4).abs() < 1e-18);
    }
}
