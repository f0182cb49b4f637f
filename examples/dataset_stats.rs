//! Prints a data set's statistics: image and label counts, labels per image, images per label,
//! the least and most frequent labels, images with no label.
//!
//! ```text
//! cargo run --release --example dataset_stats -- --data Corel-5k
//! cargo run --release --example dataset_stats -- --data Synthetic     # generated if missing
//! cargo run --release --example dataset_stats -- --data path/to/folder --top 10 --measure
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use aia::data::{dataset_stats, load_rgb8, AnnotationFolder, DataSource, Normalization};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Statistics of an annotation data set")]
struct Args {
    /// Corel-5k, IAPR-TC-12, ESP-Game, Synthetic, or the path of a folder laid out like them.
    #[arg(long, default_value = "Synthetic")]
    data: DataSource,
    /// Where the named sets live.
    #[arg(long, default_value = "datasets")]
    root: PathBuf,
    /// How many of the least and most frequent labels to list.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Also decode the training images and print their per-channel mean and std (the
    /// normalisation to train a folder of your own with).
    #[arg(long)]
    measure: bool,
}

/// Mean and std of the training images, decoded in parallel.
fn measure(folder: &AnnotationFolder) -> Result<Normalization, aia::data::DataError> {
    use rayon::prelude::*;
    let dir = folder.images_dir();
    let images = folder
        .train()
        .samples()
        .par_iter()
        .enumerate()
        .map(|(i, s)| load_rgb8(&dir.join(&s.image_name), i))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Normalization::measure(&images))
}

fn main() -> ExitCode {
    aia::error::exit_status(run(Args::parse()))
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let folder = args.data.open(&args.root)?;
    println!("{} ({})", args.data, folder.root().display());
    println!("{}", dataset_stats(&folder, args.top));
    if args.measure {
        let n = measure(&folder)?;
        println!(
            "normalisation           mean {:.4?} std {:.4?}",
            n.mean, n.std
        );
    }
    Ok(())
}
