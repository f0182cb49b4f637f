//! The README's first command: generate the synthetic set, train a small TResNet with the
//! paper's loss, choose per-label thresholds by MCC, evaluate, and print the paper's table.
//!
//! ```sh
//! cargo run --release --example quickstart
//! ```
//!
//! No download: the synthetic set is written to `datasets/Synthetic` (once), the run to
//! `runs/quickstart`. About 2 minutes on 2 CPU cores.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use aia::backend::{DefaultBackend, TrainBackend, BACKEND_NAME};
use aia::experiment::{self, ExperimentConfig};
use aia::loss::AsymmetricLossConfig;
use aia::model::{AttentionHeadConfig, HeadConfig, TResNetConfig};
use aia::train::{LoaderConfig, TrainConfig};
use clap::Parser;

/// The synthetic set's experiment with the library's defaults, before the quickstart's own
/// settings.
fn experiment() -> ExperimentConfig {
    ExperimentConfig::new("Synthetic".into())
}

/// Train and evaluate a small TResNet on the synthetic set.
#[derive(Parser, Debug)]
struct Args {
    /// Epochs of training.
    #[arg(long, default_value_t = 8)]
    epochs: usize,
    /// Side of the (square) input images.
    #[arg(long, default_value_t = 64)]
    image_size: usize,
    /// Where the run goes (replaced if it exists).
    #[arg(long, default_value = "runs/quickstart")]
    out: PathBuf,
    /// Where the synthetic set goes.
    #[arg(long, default_value_os_t = experiment().data_root)]
    data_root: PathBuf,
    /// The head: `linear` (the paper's) or `attention` (attention pooling, scaled down to the
    /// small network: width 256, 4 heads, feed-forward 512).
    #[arg(long, default_value = experiment().model.head.name())]
    head: HeadConfig,
    /// Also keep a moving average of the weights with this decay (e.g. 0.99 for the
    /// quickstart's few hundred steps), scored beside them each epoch.
    #[arg(long, value_name = "DECAY")]
    ema: Option<f64>,
    /// Hold this fraction of the training split out to pick the epoch and calibrate the
    /// thresholds (the test split is then scored once); without it, the paper's protocol.
    #[arg(long, value_name = "FRACTION")]
    validation: Option<f64>,
}

/// The attention head at the small network's scale: the paper's layout (one pre-norm layer
/// without self-attention), a quarter of its widths.
fn small(head: HeadConfig) -> HeadConfig {
    match head {
        HeadConfig::Attention(_) => HeadConfig::Attention(
            AttentionHeadConfig::new(0)
                .with_hidden(256)
                .with_num_heads(4)
                .with_feedforward(512),
        ),
        linear => linear,
    }
}

fn main() -> ExitCode {
    // Each training step frees its activations and allocates them again: keep that memory here.
    aia::kernels::keep_freed_memory();
    aia::error::exit_status(run(Args::parse()))
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let config = experiment()
        .with_data_root(args.data_root)
        // A small TResNet: one block per stage at half width (0.7 M parameters instead of 29 M).
        .with_model(
            TResNetConfig::new([1, 1, 1, 1])
                .with_width(0.5)
                .with_dropout(0.3)
                .with_head(small(args.head.clone())),
        )
        .with_loss(AsymmetricLossConfig::proposed())
        .with_validation(args.validation)
        // From scratch (no ImageNet weights), a higher peak rate than the paper's fine-tuning.
        .with_train(
            TrainConfig::new()
                .with_loader(
                    LoaderConfig::new()
                        .with_batch_size(32)
                        .with_image_size(args.image_size)
                        .with_num_workers(2),
                )
                .with_epochs(args.epochs)
                .with_learning_rate(2e-3)
                .with_ema_decay(args.ema),
        );
    if args.out.exists() {
        std::fs::remove_dir_all(&args.out).map_err(|e| {
            format!(
                "{}: cannot remove the previous run: {e}; remove it yourself or give another --out",
                args.out.display()
            )
        })?;
    }
    println!(
        "aia quickstart on {BACKEND_NAME}: {} epochs of a [1,1,1,1] x0.5 TResNet with the {} head at {}px, loss `proposed`",
        args.epochs, args.head.name(), args.image_size
    );
    let device = Default::default();
    let outcome = experiment::train::<TrainBackend>(&config, &args.out, &device, |t| t)?;
    if let (Some(epoch), Some(best)) = (outcome.results.best_epoch, outcome.results.best_metrics())
    {
        println!(
            "best epoch {epoch} ({} weights): per-class F1 {:.3} at 0.5 on the {}",
            outcome.results.best_weights.name(),
            best.per_class.f1,
            if args.validation.is_some() {
                "hold-out"
            } else {
                "test split"
            }
        );
    }
    println!(
        "choosing per-label thresholds by MCC on the {}, evaluating the test split...",
        if args.validation.is_some() {
            "hold-out"
        } else {
            "training split"
        }
    );
    let evaluation = experiment::evaluate_run::<DefaultBackend>(&args.out, &device)?;
    println!("\n{}", evaluation.table);
    println!("protocol: {}", evaluation.protocol);
    println!(
        "run folder: {} (results.json, curves.svg, evaluation.json, best model); {:.0} s in all",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
