//! Image decoding to RGB8 (grey, RGBA, CMYK, 16-bit), bad images, and the Burn `Dataset`.

use std::path::{Path, PathBuf};

use aia::data::{
    load_rgb8, AnnotationDataset, AnnotationFolder, DataError, ImageCheck, OnBadImage,
};
use burn::data::dataset::Dataset;
use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/data")
        .join(name)
}

#[test]
fn grey_png_becomes_three_equal_channels() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.png");
    ImageBuffer::from_fn(5, 3, |x, y| Luma([(x * 50 + y) as u8]))
        .save(&path)
        .unwrap();
    let img = load_rgb8(&path, 0).unwrap();
    assert_eq!(img.dimensions(), (5, 3));
    assert_eq!(img.get_pixel(4, 2).0, [202, 202, 202]);
    assert_eq!(img.get_pixel(0, 0).0, [0, 0, 0]);
}

#[test]
fn grey_alpha_and_rgba_drop_the_alpha() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("la.png");
    ImageBuffer::from_fn(2, 2, |x, _| LumaA([90 + x as u8, 10]))
        .save(&path)
        .unwrap();
    assert_eq!(load_rgb8(&path, 0).unwrap().get_pixel(1, 0).0, [91, 91, 91]);

    let path = dir.path().join("rgba.png");
    ImageBuffer::from_fn(3, 2, |x, y| Rgba([x as u8 * 80, y as u8 * 100, 7, 30]))
        .save(&path)
        .unwrap();
    let img = load_rgb8(&path, 0).unwrap();
    assert_eq!(img.get_pixel(2, 1).0, [160, 100, 7]);
}

#[test]
fn sixteen_bit_png_is_scaled_to_eight_bits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rgb16.png");
    // 65535 -> 255, 257 * k -> k exactly, 32896 = 128 * 257 -> 128.
    ImageBuffer::<Rgb<u16>, _>::from_fn(2, 1, |x, _| {
        if x == 0 {
            Rgb([65535, 257 * 3, 32896])
        } else {
            Rgb([0, 257 * 200, 65535])
        }
    })
    .save(&path)
    .unwrap();
    let img = load_rgb8(&path, 0).unwrap();
    assert_eq!(img.get_pixel(0, 0).0, [255, 3, 128]);
    assert_eq!(img.get_pixel(1, 0).0, [0, 200, 255]);

    let path = dir.path().join("l16.png");
    ImageBuffer::<Luma<u16>, _>::from_fn(1, 1, |_, _| Luma([257 * 77]))
        .save(&path)
        .unwrap();
    assert_eq!(load_rgb8(&path, 0).unwrap().get_pixel(0, 0).0, [77, 77, 77]);
}

#[test]
fn cmyk_jpeg_matches_pillow() {
    // Fixture and reference from scripts/data_fixtures.py (Pillow writes and reads it back).
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("cmyk_ref.json")).unwrap()).unwrap();
    let img = load_rgb8(&fixture("cmyk.jpg"), 0).unwrap();
    assert_eq!(img.width() as u64, reference["width"].as_u64().unwrap());
    assert_eq!(img.height() as u64, reference["height"].as_u64().unwrap());
    for c in reference["centres"].as_array().unwrap() {
        let (x, y) = (c["x"].as_u64().unwrap(), c["y"].as_u64().unwrap());
        let want: Vec<i32> = c["rgb"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap() as i32)
            .collect();
        let got = img.get_pixel(x as u32, y as u32).0;
        for ch in 0..3 {
            // JPEG rounding in two different decoders.
            assert!(
                (got[ch] as i32 - want[ch]).abs() <= 3,
                "pixel ({x},{y}): got {got:?}, Pillow {want:?}"
            );
        }
    }
}

#[test]
fn missing_image_is_named() {
    let err = load_rgb8(Path::new("/nonexistent/dir/42.jpeg"), 42).unwrap_err();
    match &err {
        DataError::MissingImage {
            path,
            index,
            image_name,
        } => {
            assert_eq!(path, Path::new("/nonexistent/dir/42.jpeg"));
            assert_eq!(*index, 42);
            assert_eq!(image_name, "42.jpeg");
        }
        other => panic!("expected a missing image, got {other:?}"),
    }
    assert!(err.to_string().contains("42.jpeg"));
}

/// A valid JPEG's bytes.
fn jpeg_bytes() -> Vec<u8> {
    let img = ImageBuffer::from_fn(64, 48, |x, y| Rgb([x as u8 * 4, y as u8 * 5, 100]));
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .unwrap();
    out
}

/// A valid PNG's bytes.
fn png_bytes() -> Vec<u8> {
    let img = ImageBuffer::from_fn(64, 48, |x, y| Rgb([x as u8 * 4, y as u8 * 5, 100]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[test]
fn corrupt_and_truncated_images_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.jpeg");
    std::fs::write(&garbage, b"this is not an image at all").unwrap();
    let truncated_png = dir.path().join("cut.png");
    let png = png_bytes();
    std::fs::write(&truncated_png, &png[..png.len() / 2]).unwrap();
    let truncated_jpeg = dir.path().join("cut.jpeg");
    let jpeg = jpeg_bytes();
    std::fs::write(&truncated_jpeg, &jpeg[..200]).unwrap();
    for (path, index) in [(&garbage, 3), (&truncated_png, 4), (&truncated_jpeg, 5)] {
        match load_rgb8(path, index) {
            Err(DataError::CorruptImage {
                path: p, index: i, ..
            }) => {
                assert_eq!(&p, path);
                assert_eq!(i, index);
            }
            other => panic!(
                "{}: expected a corrupt image, got {other:?}",
                path.display()
            ),
        }
    }
}

#[test]
fn zero_sized_images_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    // An empty file (an interrupted download).
    let empty = dir.path().join("empty.jpeg");
    std::fs::write(&empty, b"").unwrap();
    let err = load_rgb8(&empty, 9).unwrap_err();
    assert!(
        matches!(&err, DataError::EmptyImage { path, index: 9 } if path == &empty),
        "{err:?}"
    );
    assert!(err.to_string().contains("empty.jpeg"), "{err}");
    // A PNG whose header says 0x0 (the encoder refuses to write one, so patch a real header:
    // width at bytes 16..20, height at 20..24, then the header CRC at 29..33).
    let mut png = png_bytes();
    png[16..24].copy_from_slice(&[0; 8]);
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    let zero = dir.path().join("zero.png");
    std::fs::write(&zero, &png).unwrap();
    let err = load_rgb8(&zero, 1).unwrap_err();
    println!("0x0 PNG: {err}");
    match &err {
        DataError::ZeroSizedImage { path, index, .. }
        | DataError::CorruptImage { path, index, .. } => {
            assert_eq!(path, &zero);
            assert_eq!(*index, 1);
        }
        other => panic!("expected a zero-sized or corrupt image, got {other:?}"),
    }
}

/// CRC-32 (IEEE), for patching a PNG chunk.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A folder of four samples: good JPEG, good PNG with no label, missing, truncated PNG.
fn folder_with_bad_images() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    std::fs::write(images.join("0.jpeg"), jpeg_bytes()).unwrap();
    std::fs::write(images.join("1.png"), png_bytes()).unwrap();
    let png = png_bytes();
    std::fs::write(images.join("3.png"), &png[..png.len() - 100]).unwrap();
    std::fs::write(dir.path().join("toy_vocabulary.txt"), "a\nb\nc\n").unwrap();
    let train = r#"{"samples": [
        {"image_name": "0.jpeg", "image_labels": ["c", "a"]},
        {"image_name": "1.png", "image_labels": []},
        {"image_name": "2.jpeg", "image_labels": ["b"]},
        {"image_name": "3.png", "image_labels": ["b"]}]}"#;
    std::fs::write(dir.path().join("train.json"), train).unwrap();
    std::fs::write(dir.path().join("test.json"), r#"{"samples": []}"#).unwrap();
    dir
}

#[test]
fn dataset_decodes_items_with_targets_names_and_paths() {
    let dir = folder_with_bad_images();
    let folder = AnnotationFolder::open(dir.path()).unwrap();
    // Header checks catch the missing file, not the truncated data.
    let err = AnnotationDataset::open(&folder, folder.train(), ImageCheck::Headers).unwrap_err();
    assert!(
        matches!(&err, DataError::MissingImage { index: 2, image_name, .. } if image_name == "2.jpeg"),
        "{err:?}"
    );
    let ds = AnnotationDataset::open(&folder, folder.train(), ImageCheck::None).unwrap();
    assert_eq!(ds.len(), 4);
    let item = ds.get(0).unwrap();
    assert_eq!(item.index, 0);
    assert_eq!(item.image_name, "0.jpeg");
    assert_eq!(item.path, folder.images_dir().join("0.jpeg"));
    assert_eq!(item.image.dimensions(), (64, 48));
    assert_eq!(item.target, vec![1.0, 0.0, 1.0]);
    let item = ds.get(1).unwrap();
    assert_eq!(item.target, vec![0.0; 3]);
    assert!(ds.get(4).is_none());
    // The fallible access reports the truncated image.
    let err = ds.try_get(3).unwrap_err();
    assert!(
        matches!(&err, DataError::CorruptImage { index: 3, path, .. } if path.ends_with("3.png")),
        "{err:?}"
    );
}

#[test]
fn full_check_finds_truncated_data() {
    let dir = folder_with_bad_images();
    std::fs::write(dir.path().join("images/2.jpeg"), jpeg_bytes()).unwrap();
    let folder = AnnotationFolder::open(dir.path()).unwrap();
    assert!(AnnotationDataset::open(&folder, folder.train(), ImageCheck::Headers).is_ok());
    let err = AnnotationDataset::open(&folder, folder.train(), ImageCheck::Full).unwrap_err();
    assert!(
        matches!(&err, DataError::CorruptImage { index: 3, .. }),
        "{err:?}"
    );
}

#[test]
fn skip_mode_drops_bad_images_and_counts_them() {
    let dir = folder_with_bad_images();
    let folder = AnnotationFolder::open(dir.path()).unwrap();
    let ds = AnnotationDataset::open_skipping(&folder, folder.train(), ImageCheck::Full).unwrap();
    assert_eq!(ds.len(), 2);
    let skipped: Vec<usize> = ds.skipped().iter().map(|s| s.index).collect();
    assert_eq!(skipped, vec![2, 3]);
    assert!(matches!(
        ds.skipped()[0].error,
        DataError::MissingImage { .. }
    ));
    assert_eq!(ds.get(1).unwrap().image_name, "1.png");
    assert_eq!(ds.sample(1).unwrap().image_name, "1.png");
    assert_eq!(ds.late_failures(), 0);
}

#[test]
fn skip_mode_substitutes_an_image_that_fails_late() {
    let dir = folder_with_bad_images();
    let folder = AnnotationFolder::open(dir.path()).unwrap();
    std::fs::write(dir.path().join("images/2.jpeg"), jpeg_bytes()).unwrap();
    let ds = AnnotationDataset::with_images_dir(
        folder.images_dir(),
        folder.train().clone(),
        ImageCheck::Headers,
        OnBadImage::Skip,
    )
    .unwrap();
    assert_eq!(ds.len(), 4);
    // Item 3 is truncated: the next readable one (item 0, wrapping) stands in for it.
    let item = ds.get(3).unwrap();
    assert_eq!(item.image_name, "0.jpeg");
    assert_eq!(item.index, 3);
    assert_eq!(ds.late_failures(), 1);
}

#[test]
fn header_check_reports_empty_and_garbage_files() {
    let dir = folder_with_bad_images();
    std::fs::write(dir.path().join("images/2.jpeg"), b"").unwrap();
    let folder = AnnotationFolder::open(dir.path()).unwrap();
    let err = AnnotationDataset::open(&folder, folder.train(), ImageCheck::Headers).unwrap_err();
    assert!(
        matches!(&err, DataError::EmptyImage { index: 2, path } if path.ends_with("2.jpeg")),
        "{err:?}"
    );
    std::fs::write(dir.path().join("images/2.jpeg"), b"GIF-ish garbage").unwrap();
    let err = AnnotationDataset::open(&folder, folder.train(), ImageCheck::Headers).unwrap_err();
    assert!(
        matches!(&err, DataError::CorruptImage { index: 2, .. }),
        "{err:?}"
    );
}
