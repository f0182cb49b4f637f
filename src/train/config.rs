//! The training recipe's settings.

use burn::config::Config;

use super::{OneCycleLrConfig, ScheduledAdamConfig};

/// The training recipe: the paper's values by default (Adam at 1e-4 under a one-cycle schedule
/// with `pct_start` 0.2, 40 epochs of batch 32 at 448 pixels, seed 1).
///
/// The loop uses the optimizer, schedule, epoch and seed fields directly. The [`loader`]
/// settings are for whoever builds the data loaders; the loop checks that the training loader
/// yields `ceil(items / loader.batch_size)` batches per epoch (the one-cycle schedule's length
/// depends on it). Everything is recorded in the run's results and checkpoints; a resumed run
/// must use the same values, the number of loader threads excepted. The model and loss are
/// described by the caller's own configs, attached to the run with
/// [`Trainer::with_run_info`](super::Trainer::with_run_info).
///
/// [`loader`]: Self::loader
#[derive(Config, Debug, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training set.
    #[config(default = 40)]
    pub epochs: usize,
    /// How the loaders batch and size the images.
    #[config(default = "LoaderConfig::new()")]
    pub loader: LoaderConfig,
    /// Adam's peak learning rate (`max_lr` of the one-cycle schedule).
    #[config(default = 1e-4)]
    pub learning_rate: f64,
    /// The fraction of the steps spent warming up.
    #[config(default = 0.2)]
    pub pct_start: f64,
    /// The first rate is `learning_rate / div_factor`.
    #[config(default = 25.0)]
    pub div_factor: f64,
    /// The last rate is `learning_rate / (div_factor * final_div_factor)`.
    #[config(default = 1e4)]
    pub final_div_factor: f64,
    /// Adam's beta1 at the peak learning rate.
    #[config(default = 0.85)]
    pub base_momentum: f64,
    /// Adam's beta1 at the first and last steps.
    #[config(default = 0.95)]
    pub max_momentum: f64,
    /// Adam's beta2.
    #[config(default = 0.999)]
    pub beta_2: f64,
    /// Adam's epsilon.
    #[config(default = 1e-8)]
    pub epsilon: f64,
    /// Adam's L2 penalty (PyTorch's `weight_decay`).
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// Seed of the run: the loop reseeds the backend with `seed + epoch` before every epoch, so
    /// dropout and any other backend randomness replay identically on resume.
    #[config(default = 1)]
    pub seed: u64,
    /// Keep an exponential moving average of the weights with this decay (the authors'
    /// follow-up uses 0.999, ASL 0.9997), scored beside the trained weights each epoch; `None`
    /// (the paper's recipe) keeps none.
    #[config(default = "None")]
    pub ema_decay: Option<f64>,
}

/// How the data loaders of a run are built: the paper's batch of 32 images at 448 pixels.
#[derive(Config, Debug, PartialEq)]
pub struct LoaderConfig {
    /// Images per batch; the training loop's steps per epoch follow from it.
    #[config(default = 32)]
    pub batch_size: usize,
    /// Side of the square input images, in pixels.
    #[config(default = 448)]
    pub image_size: usize,
    /// Worker threads decoding images (free to change when a run is resumed).
    #[config(default = 4)]
    pub num_workers: usize,
}

/// The loader settings that [`TrainConfig`] kept at its top level before they had their own
/// [`LoaderConfig`].
const LOADER_FIELDS: [&str; 3] = ["batch_size", "image_size", "num_workers"];

/// Rewrites a [`TrainConfig`] serialised before [`LoaderConfig`] existed (loader settings at the
/// top level) into the current layout, so that results, checkpoints and run descriptions
/// written then still load. A current layout is left as it is.
pub(crate) fn upgrade_train_config(config: &mut serde_json::Value) {
    let Some(fields) = config.as_object_mut() else {
        return;
    };
    if fields.contains_key("loader") {
        return;
    }
    let defaults = serde_json::to_value(LoaderConfig::new()).unwrap_or_default();
    let mut loader = defaults.as_object().cloned().unwrap_or_default();
    for name in LOADER_FIELDS {
        if let Some(value) = fields.remove(name) {
            loader.insert(name.to_string(), value);
        }
    }
    fields.insert("loader".to_string(), serde_json::Value::Object(loader));
}

/// Deserialises a [`TrainConfig`] of either layout (see [`upgrade_train_config`]).
pub(crate) fn deserialize_train_config<'de, D>(deserializer: D) -> Result<TrainConfig, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    let mut value = serde_json::Value::deserialize(deserializer)?;
    upgrade_train_config(&mut value);
    serde_json::from_value(value).map_err(serde::de::Error::custom)
}

impl TrainConfig {
    /// The one-cycle schedule for a run of `steps_per_epoch × epochs` optimizer steps.
    pub fn schedule(&self, steps_per_epoch: usize) -> OneCycleLrConfig {
        OneCycleLrConfig::new(self.learning_rate, steps_per_epoch * self.epochs)
            .with_pct_start(self.pct_start)
            .with_div_factor(self.div_factor)
            .with_final_div_factor(self.final_div_factor)
            .with_base_momentum(self.base_momentum)
            .with_max_momentum(self.max_momentum)
    }

    /// The optimizer (its beta1 is overridden at every step by the schedule).
    pub fn optimizer(&self) -> ScheduledAdamConfig {
        ScheduledAdamConfig::new()
            .with_beta_1(self.max_momentum)
            .with_beta_2(self.beta_2)
            .with_epsilon(self.epsilon)
            .with_weight_decay(self.weight_decay)
    }

    /// The number of training batches per epoch for `items` training images.
    pub fn steps_per_epoch(&self, items: usize) -> usize {
        items.div_ceil(self.loader.batch_size.max(1))
    }
}
