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
use aia::model::TResNetConfig;
use aia::train::TrainConfig;
use clap::Parser;

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
    #[arg(long, default_value = "datasets")]
    data_root: PathBuf,
}

fn main() -> ExitCode {
    aia::error::exit_status(run(Args::parse()))
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let config = ExperimentConfig::new("Synthetic".into())
        .with_data_root(args.data_root)
        // A small TResNet: one block per stage at half width (0.7 M parameters instead of 29 M).
        .with_model(
            TResNetConfig::new([1, 1, 1, 1])
                .with_width(0.5)
                .with_dropout(0.3),
        )
        .with_loss(AsymmetricLossConfig::proposed())
        // From scratch (no ImageNet weights), a higher peak rate than the paper's fine-tuning.
        .with_train(
            TrainConfig::new()
                .with_epochs(args.epochs)
                .with_batch_size(32)
                .with_image_size(args.image_size)
                .with_learning_rate(2e-3)
                .with_num_workers(2),
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
        "aia quickstart on {BACKEND_NAME}: {} epochs of a [1,1,1,1] x0.5 TResNet at {}px, loss `proposed`",
        args.epochs, args.image_size
    );
    let device = Default::default();
    let outcome = experiment::train::<TrainBackend>(&config, &args.out, &device, |t| t)?;
    if let Some(best) = outcome.results.best() {
        println!(
            "best epoch {}: per-class F1 {:.3} at 0.5 on the test split",
            best.epoch, best.metrics.per_class.f1
        );
    }
    println!(
        "choosing per-label thresholds by MCC on the training split, evaluating the test split..."
    );
    let evaluation = experiment::evaluate::<DefaultBackend>(&args.out, &device)?;
    println!("\n{}", evaluation.table);
    println!(
        "run folder: {} (results.json, curves.svg, evaluation.json, best model); {:.0} s in all",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
