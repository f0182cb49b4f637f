//! Annotate images with a trained model: labels and scores per image as JSON and CSV, and an
//! HTML contact sheet.
//!
//! ```sh
//! cargo run --release --example annotate -- --run runs/corel --images photos/ --out annotations
//! # with the ground truth of a split file on the sheet
//! cargo run --release --example annotate -- --run runs/corel --split datasets/Corel-5k/test.json --out annotations
//! # one file to ship the model (weights, vocabulary, preparation, thresholds), and its use
//! cargo run --release --example annotate -- --run runs/corel --export corel.safetensors
//! cargo run --release --example annotate -- --run corel.safetensors --images photos/
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use aia::annotate::{self, Annotator, ThresholdSource};
use aia::backend::DefaultBackend;
use aia::data::{AnnotationSplit, Vocabulary};
use clap::Parser;

/// Annotate images with a run's best model.
#[derive(Parser, Debug)]
struct Args {
    /// The run folder (from the `train` example), or a model file written by --export.
    #[arg(long)]
    run: PathBuf,
    /// Write the run's model, vocabulary, preparation and --thresholds as one safetensors file
    /// here, and stop.
    #[arg(long, value_name = "FILE")]
    export: Option<PathBuf>,
    /// Image files or folders of images.
    #[arg(long, num_args = 1..)]
    images: Vec<PathBuf>,
    /// A split file (train.json / test.json): annotate its images and show their ground truth.
    #[arg(long)]
    split: Option<PathBuf>,
    /// Folder of the split's images (default: `images/` beside the split file).
    #[arg(long)]
    images_dir: Option<PathBuf>,
    /// Thresholds: `exact` or `grid` (MCC, from the run's evaluation; an exported file's own),
    /// or a number.
    #[arg(long, default_value = "exact")]
    thresholds: ThresholdSource,
    /// Output folder for annotations.json, annotations.csv and annotations.html.
    #[arg(long, default_value = "annotations")]
    out: PathBuf,
}

fn main() -> ExitCode {
    aia::error::exit_status(run(Args::parse()))
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let device = Default::default();
    let annotator = if args.run.is_file() {
        Annotator::<DefaultBackend>::from_export(&args.run, args.thresholds, &device)?
    } else {
        Annotator::<DefaultBackend>::from_run(&args.run, args.thresholds, &device)?
    };
    if let Some(file) = &args.export {
        annotator.export(file)?;
        println!(
            "{}: the model, its {} words and thresholds; annotate with --run {}",
            file.display(),
            annotator.labels().len(),
            file.display()
        );
        return Ok(());
    }

    let mut paths = Vec::new();
    for path in &args.images {
        if path.is_dir() {
            paths.extend(annotate::images_in(path)?);
        } else {
            paths.push(path.clone());
        }
    }
    let mut truths = Vec::new();
    if let Some(split_path) = &args.split {
        let vocabulary = Arc::new(Vocabulary::from_labels(
            annotator.labels().to_vec(),
            &args.run,
        )?);
        let split = AnnotationSplit::read(split_path, Some((vocabulary.clone(), &args.run)))?;
        let dir = args.images_dir.clone().unwrap_or_else(|| {
            split_path
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join("images")
        });
        for sample in split.samples() {
            paths.push(dir.join(&sample.image_name));
            truths.push(
                sample
                    .labels
                    .iter()
                    .filter_map(|&i| vocabulary.label(i).map(str::to_string))
                    .collect::<Vec<_>>(),
            );
        }
    }
    if paths.is_empty() {
        return Err("no images: give --images FILES/FOLDERS or --split FILE".into());
    }

    let mut annotations = annotator.annotate(&paths)?;
    let offset = annotations.len() - truths.len();
    for (annotation, truth) in annotations[offset..].iter_mut().zip(truths) {
        annotation.truth = Some(truth);
    }
    annotate::write_json(&args.out.join("annotations.json"), &annotations)?;
    annotate::write_csv(&args.out.join("annotations.csv"), &annotations)?;
    annotate::write_html(
        &args.out.join("annotations.html"),
        &format!("{} — {}", args.run.display(), annotations.len()),
        &annotations,
    )?;
    for annotation in annotations.iter().take(10) {
        let words: Vec<_> = annotation
            .labels
            .iter()
            .map(|l| format!("{} ({:.2})", l.label, l.score))
            .collect();
        println!("{}: {}", annotation.image.display(), words.join(", "));
    }
    println!(
        "{} images annotated: {}/annotations.{{json,csv,html}}",
        annotations.len(),
        args.out.display()
    );
    Ok(())
}
