//! Train TResNet on an annotation data set with the paper's recipe, or evaluate a run.
//!
//! ```sh
//! # the paper's recipe on Corel-5k (images in datasets/Corel-5k/images), from timm's weights
//! cargo run --release --example train -- --data Corel-5k --weights tresnet_m.safetensors --out runs/corel
//! # continue a stopped run where it stopped
//! cargo run --release --example train -- --data Corel-5k --weights tresnet_m.safetensors --out runs/corel --resume
//! # MCC thresholds on the training split, the test split at 0.5 and with both threshold sets
//! cargo run --release --example train -- --out runs/corel --evaluate
//! ```
//!
//! Every value of the recipe is a flag whose default is the paper's. The loss takes timm's
//! options on top of its preset: `--reduction mean|sum|batchmean`, `--label-smoothing 0.1`, and
//! `--class-weights weights.json`, a JSON list of one weight per vocabulary word, in the order of
//! the data set's vocabulary (e.g. `[1.0, 2.5, 0.5]`).

use std::path::PathBuf;
use std::process::ExitCode;

use aia::backend::{DefaultBackend, TrainBackend, BACKEND_NAME};
use aia::error::Error;
use aia::experiment::{self, ExperimentConfig, EVALUATION_FILE};
use aia::loss::{LossError, LossPreset, Reduction};
use aia::model::{HeadConfig, TResNetVariant};
use aia::train::LoaderConfig;
use clap::Parser;

/// The defaults of every setting: the library's configs (the paper's recipe).
fn defaults() -> ExperimentConfig {
    ExperimentConfig::new("Corel-5k".into())
}

/// Train TResNet for automatic image annotation (Salar & Ahmadi 2023), or evaluate a run.
#[derive(Parser, Debug)]
struct Args {
    /// Corel-5k, IAPR-TC-12, ESP-Game, Synthetic, or a folder laid out like them.
    #[arg(long, default_value_t = defaults().data)]
    data: String,
    /// Where the named data sets are.
    #[arg(long, default_value_os_t = defaults().data_root)]
    data_root: PathBuf,
    /// The loss: bce, focal, asymmetric or proposed.
    #[arg(long, default_value_t = LossPreset::default())]
    loss: LossPreset,
    /// How the loss is reduced: mean (over every label of the batch), sum, or batchmean (sum
    /// over the labels, mean over the batch).
    #[arg(long, default_value = defaults().loss.reduction.name())]
    reduction: Reduction,
    /// Label smoothing of the targets towards 0.5, in [0, 1).
    #[arg(long, default_value_t = defaults().loss.smoothing)]
    label_smoothing: f64,
    /// JSON file with one loss weight per vocabulary word (a list, in vocabulary order).
    #[arg(long)]
    class_weights: Option<PathBuf>,
    /// TResNet variant: m, l or xl.
    #[arg(long, default_value_t = TResNetVariant::default())]
    model: TResNetVariant,
    /// Dropout before the classifier.
    #[arg(long, default_value_t = defaults().model.dropout)]
    dropout: f64,
    /// The head: `linear` (the paper's) or `attention` (the authors' attention pooling, with
    /// their settings).
    #[arg(long, default_value = defaults().model.head.name())]
    head: HeadConfig,
    /// Epochs.
    #[arg(long, default_value_t = defaults().train.epochs)]
    epochs: usize,
    /// Images per batch.
    #[arg(long, default_value_t = defaults().train.loader.batch_size)]
    batch_size: usize,
    /// Side of the square input images.
    #[arg(long, default_value_t = defaults().train.loader.image_size)]
    image_size: usize,
    /// Adam's peak learning rate under the one-cycle schedule.
    #[arg(long, default_value_t = defaults().train.learning_rate)]
    learning_rate: f64,
    /// Fraction of the steps spent warming up.
    #[arg(long, default_value_t = defaults().train.pct_start)]
    pct_start: f64,
    /// Also keep a moving average of the weights with this decay (the authors' follow-up uses
    /// 0.999), scored beside them each epoch; the better of the two is the best model.
    #[arg(long, value_name = "DECAY")]
    ema: Option<f64>,
    /// Hold this fraction of the training split out (seeded, stratified) to pick the epoch and
    /// calibrate the thresholds, scoring the test split once; without it, the paper's protocol.
    #[arg(long, value_name = "FRACTION")]
    validation: Option<f64>,
    /// Seed of initialisation, shuffling, flips and dropout.
    #[arg(long, default_value_t = defaults().train.seed)]
    seed: u64,
    /// Threads decoding images.
    #[arg(long, default_value_t = defaults().train.loader.num_workers)]
    num_workers: usize,
    /// timm ImageNet checkpoint (.safetensors, .pth) of the same variant.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Output folder of the run.
    #[arg(long, default_value = "runs/train")]
    out: PathBuf,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Skip unreadable images (with a warning and a count) instead of stopping.
    #[arg(long)]
    skip_bad_images: bool,
    /// Evaluate the run in --out instead of training.
    #[arg(long)]
    evaluate: bool,
}

/// The paper's table (per-class P, R, F1, N+; then with MCC thresholds).
fn paper_results(data: &str) -> Option<[(f64, f64, f64, usize); 2]> {
    match data {
        "Corel-5k" => Some([(0.466, 0.554, 0.506, 189), (0.484, 0.563, 0.520, 191)]),
        "IAPR-TC-12" => Some([(0.503, 0.562, 0.531, 285), (0.562, 0.515, 0.537, 277)]),
        "ESP-Game" => Some([(0.423, 0.484, 0.452, 261), (0.508, 0.421, 0.461, 255)]),
        _ => None,
    }
}

/// The per-label loss weights of `path`: a JSON list of numbers.
fn read_class_weights(path: &std::path::Path) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the class weights {}: {e}", path.display()))?;
    let weights: Vec<f64> = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: expected a JSON list of one weight per vocabulary word, e.g. [1.0, 2.5]: {e}",
            path.display()
        )
    })?;
    if let Some(bad) = weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
        return Err(format!(
            "{}: class weight {bad} is not a finite value >= 0",
            path.display()
        )
        .into());
    }
    Ok(weights)
}

fn main() -> ExitCode {
    // Each training step frees its activations and allocates them again: keep that memory here.
    aia::kernels::keep_freed_memory();
    aia::error::exit_status(run(Args::parse()))
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let device = Default::default();
    if args.evaluate {
        let evaluation = experiment::evaluate_run::<DefaultBackend>(&args.out, &device)?;
        println!(
            "{} (best epoch {:?}, {} weights), test split:\n",
            evaluation.data,
            evaluation.best_epoch,
            evaluation.best_weights.name()
        );
        println!("{}", evaluation.table);
        println!("protocol: {}", evaluation.protocol);
        if let Some([plain, mcc]) = paper_results(&evaluation.data) {
            println!(
                "the paper:          P {:.3} R {:.3} F1 {:.3} N+ {}",
                plain.0, plain.1, plain.2, plain.3
            );
            println!(
                "the paper with MCC: P {:.3} R {:.3} F1 {:.3} N+ {}",
                mcc.0, mcc.1, mcc.2, mcc.3
            );
        }
        println!("report: {}", args.out.join(EVALUATION_FILE).display());
        return Ok(());
    }

    let model = args
        .model
        .config()
        .with_dropout(args.dropout)
        .with_head(args.head.clone());
    let weight = args
        .class_weights
        .as_deref()
        .map(read_class_weights)
        .transpose()?;
    let loss = args
        .loss
        .config()
        .with_reduction(args.reduction)
        .with_smoothing(args.label_smoothing)
        .with_weight(weight);
    loss.validate()?;
    let config = ExperimentConfig::new(args.data.clone())
        .with_data_root(args.data_root)
        .with_model(model)
        .with_loss(loss)
        .with_weights(args.weights.clone())
        .with_skip_bad_images(args.skip_bad_images)
        .with_validation(args.validation)
        .with_train(
            defaults()
                .train
                .with_loader(
                    LoaderConfig::new()
                        .with_batch_size(args.batch_size)
                        .with_image_size(args.image_size)
                        .with_num_workers(args.num_workers),
                )
                .with_epochs(args.epochs)
                .with_learning_rate(args.learning_rate)
                .with_pct_start(args.pct_start)
                .with_seed(args.seed)
                .with_ema_decay(args.ema),
        );
    if args.weights.is_none() {
        eprintln!(
            "warning: no --weights: the backbone starts from random initialisation, not ImageNet; \
             expect far lower scores than the paper's"
        );
    }
    println!(
        "training on {BACKEND_NAME}: {} with the {} head and loss `{}` (reduction {}) into {}",
        args.data,
        args.head.name(),
        args.loss,
        args.reduction.name(),
        args.out.display()
    );
    let outcome = experiment::train::<TrainBackend>(&config, &args.out, &device, |t| {
        t.with_resume(args.resume)
    })
    .map_err(|e| -> Box<dyn std::error::Error> {
        // The vocabulary is only known once the data is open: say which file does not fit it.
        match (&e, &args.class_weights) {
            (Error::Loss(LossError::WeightLength { .. }), Some(path)) => {
                format!("{}: {e}", path.display()).into()
            }
            _ => e.into(),
        }
    })?;
    if let Some(from) = outcome.resumed_from {
        println!("resumed after epoch {from}");
    }
    let results = &outcome.results;
    if let (Some(epoch), Some(best)) = (results.best_epoch, results.best_metrics()) {
        println!(
            "best epoch {epoch} ({} weights): per-class P {:.3} R {:.3} F1 {:.3} N+ {} (threshold 0.5)",
            results.best_weights.name(),
            best.per_class.precision,
            best.per_class.recall,
            best.per_class.f1,
            best.n_plus
        );
    }
    println!("next: --out {} --evaluate", args.out.display());
    Ok(())
}
