//! Data-loading speed, against the crate's targets:
//!
//! - `load_448/*`: Corel-sized JPEGs (384x256) decoded, resized to 448x448, flipped, normalised
//!   and stacked, through the `AnnotationDataset` + `AnnotationBatcher` path the training loop
//!   uses; target at least 100 images/s on 2 cores. Measured with one and two rayon threads for
//!   one batch, and through Burn's `DataLoader` with two workers for a whole epoch.
//! - `parse/*`: parsing ESP-Game's `train.json` (1.6 MB); target under 50 ms. Reads the real file
//!   when `AIA_DATASETS` points to the sets, else a generated file of the same size and shape.
//!
//! `cargo bench --bench data`

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aia::data::{
    AnnotationBatch, AnnotationBatcherConfig, AnnotationDataset, AnnotationFolder, AnnotationSplit,
    DatasetPreset, ImageCheck, Vocabulary,
};
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::Dataset;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use image::{Rgb, RgbImage};

type B = burn::backend::Flex;

const IMAGES: usize = 32;
const BATCH: usize = 16;

/// A photo-like 384x256 picture: smooth gradients, a few discs, sensor noise; JPEG quality 90
/// gives ~30-50 kB, like Corel's files.
fn photo(i: usize) -> RgbImage {
    let mut state = 0x9e37_79b9u32.wrapping_mul(i as u32 + 1);
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state % 17) as i32 - 8
    };
    let discs: Vec<(f32, f32, f32, [u8; 3])> = (0..5)
        .map(|k| {
            let k = (k + i * 5) as f32;
            (
                (k * 97.0) % 384.0,
                (k * 61.0) % 256.0,
                20.0 + (k * 13.0) % 60.0,
                [(k * 40.0) as u8, (k * 90.0) as u8, (k * 150.0) as u8],
            )
        })
        .collect();
    RgbImage::from_fn(384, 256, |x, y| {
        let (xf, yf) = (x as f32, y as f32);
        let mut c = [
            (xf / 384.0 * 200.0) as i32 + 30,
            (yf / 256.0 * 180.0) as i32 + 40,
            ((xf + yf) / 640.0 * 160.0) as i32 + 60,
        ];
        for &(cx, cy, r, col) in &discs {
            if (xf - cx).powi(2) + (yf - cy).powi(2) < r * r {
                c = col.map(|v| v as i32);
            }
        }
        let n = noise();
        Rgb(c.map(|v| (v + n).clamp(0, 255) as u8))
    })
}

/// A folder of `IMAGES` Corel-sized JPEGs, one label each.
fn corel_like_folder() -> (tempfile::TempDir, AnnotationFolder) {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let mut samples = Vec::new();
    let mut bytes = 0;
    for i in 0..IMAGES {
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
            .encode_image(&photo(i))
            .unwrap();
        bytes += jpeg.len();
        std::fs::write(images.join(format!("{i}.jpeg")), jpeg).unwrap();
        samples.push(format!(
            r#"{{"image_name": "{i}.jpeg", "image_labels": ["l{}"]}}"#,
            i % 4
        ));
    }
    eprintln!(
        "generated {IMAGES} JPEGs of 384x256, {} kB each on average",
        bytes / IMAGES / 1024
    );
    let json = format!(
        r#"{{"samples": [{}], "labels": ["l0", "l1", "l2", "l3"]}}"#,
        samples.join(",")
    );
    std::fs::write(dir.path().join("train.json"), &json).unwrap();
    std::fs::write(dir.path().join("test.json"), &json).unwrap();
    let folder = AnnotationFolder::open(dir.path()).unwrap();
    (dir, folder)
}

fn load_448(c: &mut Criterion) {
    let (_dir, folder) = corel_like_folder();
    let dataset = AnnotationDataset::open(&folder, folder.train(), ImageCheck::Headers).unwrap();
    let batcher = AnnotationBatcherConfig::new(DatasetPreset::Corel5k.normalization())
        .with_flips(true)
        .with_seed(1)
        .init();
    let device = Default::default();
    let mut group = c.benchmark_group("load_448");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    // One batch: decode in `Dataset::get`, then the batcher (rayon over the batch's items).
    group.throughput(Throughput::Elements(BATCH as u64));
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        group.bench_with_input(
            BenchmarkId::new("dataset_batcher_threads", threads),
            &threads,
            |b, _| {
                b.iter(|| {
                    pool.install(|| {
                        let items = (0..BATCH).map(|i| dataset.get(i).unwrap()).collect();
                        let batch: AnnotationBatch<B> = batcher.batch(items, &device);
                        batch
                    })
                })
            },
        );
    }

    // A whole epoch through Burn's DataLoader with two workers, as the training loop runs it.
    group.throughput(Throughput::Elements(IMAGES as u64));
    let loader = DataLoaderBuilder::<B, _, _>::new(batcher.clone())
        .batch_size(BATCH)
        .shuffle(3)
        .num_workers(2)
        .build(dataset.clone());
    group.bench_function("dataloader_2_workers_epoch", |b| {
        b.iter(|| {
            loader
                .iter()
                .map(|batch| batch.images.dims()[0])
                .sum::<usize>()
        })
    });
    group.finish();
}

/// ESP-Game's train.json: the real one, or one of the same size and shape.
fn esp_train_json() -> (PathBuf, Arc<Vocabulary>, PathBuf, Option<tempfile::TempDir>) {
    if let Some(root) = std::env::var_os("AIA_DATASETS").map(PathBuf::from) {
        let dir = root.join("ESP-Game");
        let vocab = dir.join(DatasetPreset::EspGame.vocabulary_file());
        if dir.join("train.json").is_file() && vocab.is_file() {
            eprintln!("parsing the real {}", dir.join("train.json").display());
            let v = Arc::new(Vocabulary::read(&vocab).unwrap());
            return (dir.join("train.json"), v, vocab, None);
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let labels: Vec<String> = (0..268).map(|i| format!("label{i:03}")).collect();
    let vocab_path = tmp.path().join("espgame_vocabulary.txt");
    std::fs::write(&vocab_path, labels.join("\n")).unwrap();
    let mut state = 12345u64;
    let mut next = move |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    let samples: Vec<String> = (0..18689)
        .map(|i| {
            let k = 1 + next(8) as usize;
            let ls: Vec<String> = (0..k)
                .map(|_| format!("\"{}\"", labels[next(268) as usize]))
                .collect();
            format!(
                r#"{{"image_name": "{i}.jpg", "image_labels": [{}]}}"#,
                ls.join(", ")
            )
        })
        .collect();
    let quoted: Vec<String> = labels.iter().map(|l| format!("\"{l}\"")).collect();
    let json = format!(
        r#"{{"samples": [{}], "labels": [{}]}}"#,
        samples.join(", "),
        quoted.join(", ")
    );
    let path = tmp.path().join("train.json");
    std::fs::write(&path, &json).unwrap();
    std::fs::write(tmp.path().join("test.json"), &json).unwrap();
    eprintln!(
        "AIA_DATASETS unset: parsing a generated ESP-Game-like train.json of {} kB",
        json.len() / 1024
    );
    let v = Arc::new(Vocabulary::read(&vocab_path).unwrap());
    (path, v, vocab_path, Some(tmp))
}

fn parse(c: &mut Criterion) {
    let (path, vocab, vocab_path, _tmp) = esp_train_json();
    let mut group = c.benchmark_group("parse");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("espgame_train_json", |b| {
        b.iter(|| {
            AnnotationSplit::read(&path, Some((vocab.clone(), vocab_path.as_path())))
                .unwrap()
                .len()
        })
    });
    let folder: &Path = path.parent().unwrap();
    group.bench_function("espgame_folder_open", |b| {
        b.iter(|| AnnotationFolder::open(folder).unwrap().train().len())
    });
    group.finish();
}

criterion_group!(benches, parse, load_448);
criterion_main!(benches);
