//! The batcher: resizing against Pillow (torchvision's Resize), normalisation, seeded flips, and
//! use with Burn's multi-worker `DataLoader`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aia::data::{
    load_rgb8, resize_rgb8, AnnotationBatch, AnnotationBatcher, AnnotationBatcherConfig,
    AnnotationDataset, AnnotationFolder, AnnotationItem, ImageCheck, Normalization,
};
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::DataLoaderBuilder;
use image::{ImageBuffer, Rgb, RgbImage};

type B = burn::backend::Flex;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/data")
        .join(name)
}

struct Reference {
    norm: Normalization,
    /// (size, Pillow's resized RGB bytes, torchvision-normalised CHW values)
    resizes: Vec<(usize, Vec<u8>, Vec<f32>)>,
}

fn reference() -> Reference {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("resize_ref.json")).unwrap())
            .unwrap();
    let arr3 = |x: &serde_json::Value| -> [f32; 3] {
        let a = x.as_array().unwrap();
        [0, 1, 2].map(|i| a[i].as_f64().unwrap() as f32)
    };
    let resizes = v["resizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let size = r["size"].as_u64().unwrap() as usize;
            let rgb = r["rgb"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u8)
                .collect();
            let chw = r["normalized_chw"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            (size, rgb, chw)
        })
        .collect();
    Reference {
        norm: Normalization::new(arr3(&v["mean"]), arr3(&v["std"])),
        resizes,
    }
}

fn item(index: usize, image: RgbImage, target: Vec<f32>) -> AnnotationItem {
    AnnotationItem {
        index,
        image_name: format!("{index}.png"),
        path: PathBuf::from(format!("{index}.png")),
        image,
        target,
    }
}

#[test]
fn resize_matches_pillow_bilinear_down_and_up() {
    let src = load_rgb8(&fixture("resize_src.png"), 0).unwrap();
    assert_eq!(src.dimensions(), (37, 23));
    for (size, want, _) in reference().resizes {
        let got = resize_rgb8(&src, size as u32, size as u32);
        let diffs: Vec<i32> = got
            .as_raw()
            .iter()
            .zip(&want)
            .map(|(&a, &b)| (a as i32 - b as i32).abs())
            .collect();
        let max = *diffs.iter().max().unwrap();
        let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
        // Pillow's and fast_image_resize's fixed-point arithmetic differ in precision: at most
        // one rounding step apart, and only on a part of the values.
        assert!(max <= 1, "size {size}: max difference {max}");
        assert!(mean <= 0.3, "size {size}: mean difference {mean}");
    }
}

#[test]
fn downscaling_is_antialiased() {
    // A 1-pixel checkerboard: plain bilinear interpolation samples it and keeps extreme values;
    // an antialiased filter averages it to mid-grey, as torchvision's Resize does.
    let checker = ImageBuffer::from_fn(64, 64, |x, y| {
        if (x + y) % 2 == 0 {
            Rgb([255u8; 3])
        } else {
            Rgb([0u8; 3])
        }
    });
    let small = resize_rgb8(&checker, 8, 8);
    for p in small.pixels() {
        assert!((120..=135).contains(&p.0[0]), "{:?}", p.0);
    }
}

#[test]
fn eval_batch_matches_torchvision_to_tensor_and_normalize() {
    let reference = reference();
    let src = load_rgb8(&fixture("resize_src.png"), 0).unwrap();
    for (size, _, want) in &reference.resizes {
        let batcher = AnnotationBatcherConfig::new(reference.norm)
            .with_image_size(*size)
            .init();
        let batch: AnnotationBatch<B> = batcher.batch(
            vec![
                item(0, src.clone(), vec![1.0, 0.0]),
                item(1, src.clone(), vec![0.0, 1.0]),
            ],
            &Default::default(),
        );
        assert_eq!(batch.images.dims(), [2, 3, *size, *size]);
        assert_eq!(batch.targets.dims(), [2, 2]);
        assert_eq!(
            batch.targets.into_data().to_vec::<f32>().unwrap(),
            vec![1.0, 0.0, 0.0, 1.0]
        );
        let got = batch.images.into_data().to_vec::<f32>().unwrap();
        // One 8-bit rounding step of the resize, divided by the smallest std.
        let tol = 1.0 / 255.0 / 0.2436 + 1e-5;
        for (k, (g, w)) in got.iter().zip(want.iter().cycle()).enumerate() {
            assert!((g - w).abs() <= tol, "size {size}, value {k}: {g} vs {w}");
        }
    }
}

/// The CHW values of an `s`x`s` image in `data`, flipped as asked.
fn flipped(data: &[f32], s: usize, h: bool, v: bool) -> Vec<f32> {
    let mut out = vec![0f32; data.len()];
    for c in 0..3 {
        for y in 0..s {
            for x in 0..s {
                let sy = if v { s - 1 - y } else { y };
                let sx = if h { s - 1 - x } else { x };
                out[c * s * s + y * s + x] = data[c * s * s + sy * s + sx];
            }
        }
    }
    out
}

fn batch_values(batcher: &AnnotationBatcher, items: Vec<AnnotationItem>) -> Vec<Vec<f32>> {
    let n = items.len();
    let batch: AnnotationBatch<B> = batcher.batch(items, &Default::default());
    let data = batch.images.into_data().to_vec::<f32>().unwrap();
    data.chunks(data.len() / n).map(|c| c.to_vec()).collect()
}

#[test]
fn training_flips_are_seeded_per_item_and_epoch() {
    let s = 12;
    let src = ImageBuffer::from_fn(20, 15, |x, y| Rgb([x as u8 * 12, y as u8 * 16, 50]));
    let norm = Normalization::IDENTITY;
    let eval = AnnotationBatcherConfig::new(norm).with_image_size(s).init();
    let plain = batch_values(&eval, vec![item(0, src.clone(), vec![])]).remove(0);
    let variants: Vec<(bool, bool, Vec<f32>)> =
        [(false, false), (true, false), (false, true), (true, true)]
            .into_iter()
            .map(|(h, v)| (h, v, flipped(&plain, s, h, v)))
            .collect();
    let items = || {
        (0..64)
            .map(|i| item(i, src.clone(), vec![]))
            .collect::<Vec<_>>()
    };

    let train = AnnotationBatcherConfig::new(norm)
        .with_image_size(s)
        .with_flips(true)
        .with_seed(11)
        .init();
    let epoch0 = batch_values(&train, items());
    let mut counts = HashMap::new();
    for (i, out) in epoch0.iter().enumerate() {
        let (h, v, _) = variants
            .iter()
            .find(|(_, _, want)| want == out)
            .unwrap_or_else(|| panic!("item {i} is not a flip of the image"));
        assert_eq!((*h, *v), train.flips_for(i), "item {i}");
        *counts.entry((*h, *v)).or_insert(0) += 1;
    }
    // Each of the four outcomes has probability 1/4: 16 expected of 64.
    assert_eq!(counts.len(), 4);
    assert!(
        counts.values().all(|&c| (6..=28).contains(&c)),
        "{counts:?}"
    );

    // Same seed and epoch: the same flips, whatever the batch composition.
    let again = batch_values(&train, items().into_iter().rev().collect());
    for (i, out) in again.iter().rev().enumerate() {
        assert_eq!(out, &epoch0[i]);
    }
    // Another epoch: other flips; back to epoch 0: the first ones. Clones share the epoch.
    let handle = train.clone();
    handle.set_epoch(1);
    assert_eq!(train.epoch(), 1);
    let epoch1 = batch_values(&train, items());
    let changed = epoch0.iter().zip(&epoch1).filter(|(a, b)| a != b).count();
    assert!(changed >= 24, "only {changed} of 64 items changed flips");
    handle.set_epoch(0);
    assert_eq!(batch_values(&train, items()), epoch0);
    // Another seed: other flips.
    let other = AnnotationBatcherConfig::new(norm)
        .with_image_size(s)
        .with_flips(true)
        .with_seed(12)
        .init();
    assert_ne!(batch_values(&other, items()), epoch0);
    // Eval mode never flips.
    assert!(batch_values(&eval, items()).iter().all(|o| o == &plain));
}

#[test]
fn normalisation_uses_the_mean_and_std() {
    let img = ImageBuffer::from_pixel(4, 4, Rgb([255u8, 0, 51]));
    let norm = Normalization::new([0.5, 0.25, 0.1], [0.5, 0.25, 0.2]);
    let batcher = AnnotationBatcherConfig::new(norm).with_image_size(4).init();
    let out = batch_values(&batcher, vec![item(0, img, vec![])]).remove(0);
    // (1 - 0.5) / 0.5 = 1, (0 - 0.25) / 0.25 = -1, (0.2 - 0.1) / 0.2 = 0.5
    for (c, want) in [1.0f32, -1.0, 0.5].into_iter().enumerate() {
        assert!(out[c * 16..(c + 1) * 16]
            .iter()
            .all(|v| (v - want).abs() < 1e-6));
    }
}

#[test]
fn normalization_measure_matches_hand_computation() {
    let a = ImageBuffer::from_pixel(2, 1, Rgb([0u8, 255, 51]));
    let b = ImageBuffer::from_pixel(1, 2, Rgb([255u8, 255, 51]));
    let n = Normalization::measure([&a, &b]);
    // Red: two 0s and two 1s -> mean 0.5, std 0.5; green: all 1; blue: all 0.2.
    assert!((n.mean[0] - 0.5).abs() < 1e-6 && (n.std[0] - 0.5).abs() < 1e-6);
    assert!((n.mean[1] - 1.0).abs() < 1e-6 && n.std[1] < 1e-3);
    assert!((n.mean[2] - 0.2).abs() < 1e-6);
}

/// A folder of `n` PNG images; image `i` has label `i` only, so a target row names its item.
fn numbered_folder(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let mut samples = Vec::new();
    for i in 0..n {
        let img = ImageBuffer::from_fn(30 + i as u32, 20 + 2 * i as u32, |x, y| {
            Rgb([(x * 7 + i as u32 * 13) as u8, (y * 11) as u8, (x * y) as u8])
        });
        img.save(images.join(format!("{i}.png"))).unwrap();
        samples.push(format!(
            r#"{{"image_name": "{i}.png", "image_labels": ["l{i}"]}}"#
        ));
    }
    let labels: Vec<String> = (0..n).map(|i| format!("\"l{i}\"")).collect();
    let json = format!(
        r#"{{"samples": [{}], "labels": [{}]}}"#,
        samples.join(","),
        labels.join(",")
    );
    std::fs::write(dir.path().join("train.json"), &json).unwrap();
    std::fs::write(dir.path().join("test.json"), &json).unwrap();
    dir
}

#[test]
fn multi_worker_dataloader_gives_each_item_once_with_its_own_flips() {
    let n = 14;
    let dir = numbered_folder(n);
    let folder = AnnotationFolder::open(dir.path()).unwrap();
    let dataset = AnnotationDataset::open(&folder, folder.train(), ImageCheck::Full).unwrap();
    let batcher = AnnotationBatcherConfig::new(Normalization::IMAGENET)
        .with_image_size(24)
        .with_flips(true)
        .with_seed(3)
        .init();
    // What each item must become, batched alone.
    let expected = |epoch: u64| -> Vec<Vec<f32>> {
        batcher.set_epoch(epoch);
        use burn::data::dataset::Dataset;
        (0..n)
            .map(|i| batch_values(&batcher, vec![dataset.get(i).unwrap()]).remove(0))
            .collect()
    };
    let want = [expected(0), expected(1)];
    let loader = DataLoaderBuilder::<B, _, _>::new(batcher.clone())
        .batch_size(4)
        .shuffle(99)
        .num_workers(2)
        .build(dataset);
    for (epoch, want) in want.iter().enumerate() {
        batcher.set_epoch(epoch as u64);
        let mut seen = vec![0; n];
        for batch in loader.iter() {
            let b = batch.images.dims()[0];
            assert_eq!(batch.images.dims()[1..], [3, 24, 24]);
            assert_eq!(batch.targets.dims(), [b, n]);
            let targets = batch.targets.into_data().to_vec::<f32>().unwrap();
            let images = batch.images.into_data().to_vec::<f32>().unwrap();
            for (row, image) in targets.chunks(n).zip(images.chunks(3 * 24 * 24)) {
                let id = row.iter().position(|&t| t == 1.0).unwrap();
                assert_eq!(row.iter().sum::<f32>(), 1.0);
                seen[id] += 1;
                assert_eq!(image, &want[id][..], "epoch {epoch}, item {id}");
            }
        }
        assert_eq!(seen, vec![1; n], "epoch {epoch}");
    }
    assert_ne!(want[0], want[1]);
}
