//! Annotation files: parsing, multi-hot targets, presets, and every malformed-input error.

use std::path::Path;
use std::sync::Arc;

use aia::data::{
    AnnotationFolder, AnnotationSplit, DataError, DataSource, DatasetPreset, Vocabulary,
};
use aia::fs::FileError;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// A folder with a 4-label vocabulary file and the given train/test JSON.
fn folder_with(train: &str, test: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "toy_vocabulary.txt", "sky\nsun\nsea\ntree\n");
    write(dir.path(), "train.json", train);
    write(dir.path(), "test.json", test);
    dir
}

const LABELS: &str = r#""labels": ["sky", "sun", "sea", "tree"]"#;

fn good_train() -> String {
    format!(
        r#"{{"samples": [
            {{"image_name": "a.jpeg", "image_labels": ["sun", "sky"]}},
            {{"image_name": "b.jpeg", "image_labels": []}},
            {{"image_name": "c.jpeg", "image_labels": ["tree", "sea", "sun"]}}
        ], {LABELS}}}"#
    )
}

fn good_test() -> String {
    format!(r#"{{"samples": [{{"image_name": "d.jpeg", "image_labels": ["sea"]}}], {LABELS}}}"#)
}

#[test]
fn parses_samples_and_multi_hot_targets() {
    let dir = folder_with(&good_train(), &good_test());
    let folder = AnnotationFolder::open(dir.path()).unwrap();
    assert_eq!(folder.vocabulary().labels(), ["sky", "sun", "sea", "tree"]);
    assert!(folder.vocabulary_path().ends_with("toy_vocabulary.txt"));
    assert_eq!(folder.images_dir(), dir.path().join("images"));
    let train = folder.train();
    assert_eq!(train.len(), 3);
    assert_eq!(train.samples()[0].image_name, "a.jpeg");
    assert_eq!(train.samples()[0].labels, vec![1, 0]);
    // An image with no label is valid: an all-zero target.
    assert!(train.samples()[1].labels.is_empty());
    assert_eq!(train.target(0).unwrap(), vec![1.0, 1.0, 0.0, 0.0]);
    assert_eq!(train.target(1).unwrap(), vec![0.0; 4]);
    assert_eq!(train.target(2).unwrap(), vec![0.0, 1.0, 1.0, 1.0]);
    assert_eq!(train.target(3), None);
    let all = train.targets();
    assert_eq!(all.len(), 12);
    assert_eq!(&all[8..12], &[0.0, 1.0, 1.0, 1.0]);
    let t = train.targets_tensor::<burn::backend::Flex>(&Default::default());
    assert_eq!(t.dims(), [3, 4]);
    assert_eq!(t.into_data().to_vec::<f32>().unwrap(), all);
    assert_eq!(folder.test().samples()[0].labels, vec![2]);
}

#[test]
fn repeated_label_in_a_sample_counts_once() {
    let train = format!(
        r#"{{"samples": [{{"image_name": "a.jpeg", "image_labels": ["sun", "sun"]}}], {LABELS}}}"#
    );
    let dir = folder_with(&train, &good_test());
    let folder = AnnotationFolder::open(dir.path()).unwrap();
    assert_eq!(folder.train().samples()[0].labels, vec![1]);
}

#[test]
fn without_vocabulary_file_the_json_labels_define_the_columns() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "train.json", &good_train());
    write(dir.path(), "test.json", &good_test());
    let folder = AnnotationFolder::open(dir.path()).unwrap();
    assert_eq!(folder.vocabulary().len(), 4);
    assert!(folder.vocabulary_path().ends_with("train.json"));
}

#[test]
fn written_split_reads_back_identically() {
    let dir = folder_with(&good_train(), &good_test());
    let folder = AnnotationFolder::open(dir.path()).unwrap();
    let out = dir.path().join("copy.json");
    folder.train().write(&out).unwrap();
    let back = AnnotationSplit::read(&out, None).unwrap();
    assert_eq!(back.samples(), folder.train().samples());
    assert_eq!(back.vocabulary().labels(), folder.vocabulary().labels());
}

#[test]
fn malformed_json_reports_file_line_and_column() {
    // Line 3, the missing comma before the second sample.
    let train = "{\"samples\": [\n  {\"image_name\": \"a.jpeg\", \"image_labels\": []}\n  {\"image_name\": \"b.jpeg\"}]}";
    let dir = folder_with(train, &good_test());
    let err = AnnotationFolder::open(dir.path()).unwrap_err();
    match &err {
        DataError::Json {
            path, line, column, ..
        } => {
            assert!(path.ends_with("train.json"));
            assert_eq!(*line, 3);
            assert_eq!(*column, 3);
        }
        other => panic!("expected a JSON error, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("train.json:3:3"), "{msg}");
}

#[test]
fn wrong_shape_json_is_a_json_error() {
    // Valid JSON, but `image_labels` is a string.
    let train = r#"{"samples": [{"image_name": "a.jpeg", "image_labels": "sky"}]}"#;
    let dir = folder_with(train, &good_test());
    let err = AnnotationFolder::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, DataError::Json { line: 1, .. }),
        "expected a JSON error on line 1, got {err:?}"
    );
}

#[test]
fn unreadable_json_is_an_io_error_naming_the_file() {
    let dir = folder_with(&good_train(), &good_test());
    // No test.json at all.
    std::fs::remove_file(dir.path().join("test.json")).unwrap();
    let err = AnnotationFolder::open(dir.path()).unwrap_err();
    match &err {
        DataError::File(FileError::Read { path, source }) => {
            assert!(path.ends_with("test.json"));
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
    // A directory where the file should be.
    let dir = folder_with(&good_train(), &good_test());
    std::fs::remove_file(dir.path().join("test.json")).unwrap();
    std::fs::create_dir(dir.path().join("test.json")).unwrap();
    let err = AnnotationFolder::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("test.json"), "{err}");
}

#[test]
fn invalid_utf8_json_is_an_error() {
    let dir = folder_with(&good_train(), &good_test());
    std::fs::write(
        dir.path().join("test.json"),
        b"{\"samples\": [{\"image_name\": \"\xff\", \"image_labels\": []}]}",
    )
    .unwrap();
    let err = AnnotationFolder::open(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::Json { .. }), "{err:?}");
}

#[test]
fn unknown_label_names_file_sample_and_label() {
    let test = format!(
        r#"{{"samples": [{{"image_name": "d.jpeg", "image_labels": ["sea"]}},
                         {{"image_name": "e.jpeg", "image_labels": ["sky", "moon"]}}], {LABELS}}}"#
    );
    let dir = folder_with(&good_train(), &test);
    let err = AnnotationFolder::open(dir.path()).unwrap_err();
    match &err {
        DataError::UnknownLabel {
            path,
            index,
            image_name,
            label,
        } => {
            assert!(path.ends_with("test.json"));
            assert_eq!(*index, 1);
            assert_eq!(image_name, "e.jpeg");
            assert_eq!(label, "moon");
        }
        other => panic!("expected an unknown-label error, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("e.jpeg") && msg.contains("\"moon\""), "{msg}");
}

#[test]
fn duplicate_in_vocabulary_file_names_the_label_and_lines() {
    let dir = folder_with(&good_train(), &good_test());
    write(
        dir.path(),
        "toy_vocabulary.txt",
        "sky\nsun\nsea\nsun\ntree\n",
    );
    let err = AnnotationFolder::open(dir.path()).unwrap_err();
    match &err {
        DataError::DuplicateLabel {
            path,
            label,
            first,
            second,
        } => {
            assert!(path.ends_with("toy_vocabulary.txt"));
            assert_eq!(label, "sun");
            assert_eq!((*first, *second), (2, 4));
        }
        other => panic!("expected a duplicate-label error, got {other:?}"),
    }
}

#[test]
fn duplicate_in_json_labels_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let train = r#"{"samples": [], "labels": ["a", "b", "a"]}"#;
    write(dir.path(), "train.json", train);
    write(dir.path(), "test.json", train);
    let err = AnnotationFolder::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, DataError::DuplicateLabel { path, first: 1, second: 3, .. } if path.ends_with("train.json")),
        "{err:?}"
    );
}

#[test]
fn json_labels_must_match_the_vocabulary_file() {
    let train = r#"{"samples": [], "labels": ["sky", "sun", "tree", "sea"]}"#;
    let dir = folder_with(train, &good_test());
    let err = AnnotationFolder::open(dir.path()).unwrap_err();
    match &err {
        DataError::VocabularyMismatch {
            position,
            expected,
            found,
            ..
        } => {
            assert_eq!(*position, 3);
            assert_eq!(expected, "sea");
            assert_eq!(found, "tree");
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

#[test]
fn missing_and_ambiguous_vocabularies_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let no_labels = r#"{"samples": []}"#;
    write(dir.path(), "train.json", no_labels);
    write(dir.path(), "test.json", no_labels);
    let err = AnnotationFolder::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, DataError::MissingVocabulary { .. }),
        "{err:?}"
    );

    let dir = folder_with(&good_train(), &good_test());
    write(dir.path(), "other_vocabulary.txt", "x\n");
    let err = AnnotationFolder::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, DataError::AmbiguousVocabulary { files, .. } if files.len() == 2),
        "{err:?}"
    );

    let dir = folder_with(&good_train(), &good_test());
    write(dir.path(), "toy_vocabulary.txt", "\n\n");
    let err = AnnotationFolder::open(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::EmptyVocabulary { .. }), "{err:?}");
}

#[test]
fn vocabulary_trims_blanks_and_crlf() {
    let v = Vocabulary::parse("sky\r\n sun \n\nsea", Path::new("v.txt")).unwrap();
    assert_eq!(v.labels(), ["sky", "sun", "sea"]);
    assert_eq!(v.index_of("sun"), Some(1));
    assert_eq!(v.index_of("moon"), None);
    assert_eq!(v.label(2), Some("sea"));
}

#[test]
fn parse_checks_against_a_given_vocabulary() {
    let vocab = Arc::new(Vocabulary::parse("a\nb\n", Path::new("v.txt")).unwrap());
    let split = AnnotationSplit::parse(
        br#"{"samples": [{"image_name": "x.png", "image_labels": ["b"]}]}"#,
        "s.json",
        Some((vocab, Path::new("v.txt"))),
    )
    .unwrap();
    assert_eq!(split.samples()[0].labels, vec![1]);
}

#[test]
fn presets_carry_the_known_facts() {
    let c = DatasetPreset::Corel5k;
    assert_eq!(
        (c.train_images(), c.test_images(), c.num_labels()),
        (4500, 499, 260)
    );
    assert_eq!(c.folder_name(), "Corel-5k");
    assert_eq!(c.vocabulary_file(), "corel5k_vocabulary.txt");
    assert_eq!(c.normalization().mean, [0.3928, 0.4079, 0.3531]);
    let i = DatasetPreset::IaprTc12;
    assert_eq!(
        (i.train_images(), i.test_images(), i.num_labels()),
        (17665, 1962, 291)
    );
    assert_eq!(i.normalization().std, [0.2557, 0.2543, 0.2769]);
    let e = DatasetPreset::EspGame;
    assert_eq!(
        (e.train_images(), e.test_images(), e.num_labels()),
        (18689, 2081, 268)
    );
    assert_eq!(e.normalization().mean, [0.5377, 0.5087, 0.4845]);
    for p in DatasetPreset::ALL {
        assert_eq!(p.folder_name().parse::<DatasetPreset>().unwrap(), p);
        assert_eq!(p.to_string(), p.folder_name());
    }
    assert_eq!(
        "espgame".parse::<DatasetPreset>().unwrap(),
        DatasetPreset::EspGame
    );
    assert!("Corel-10k".parse::<DatasetPreset>().is_err());
}

#[test]
fn data_source_parses_the_cli_values() {
    let root = Path::new("datasets");
    let s: DataSource = "IAPR-TC-12".parse().unwrap();
    assert_eq!(s, DataSource::Preset(DatasetPreset::IaprTc12));
    assert_eq!(s.folder(root), root.join("IAPR-TC-12"));
    assert_eq!(s.normalization(), DatasetPreset::IaprTc12.normalization());
    let s: DataSource = "synthetic".parse().unwrap();
    assert_eq!(s, DataSource::Synthetic);
    assert_eq!(s.folder(root), root.join("Synthetic"));
    let s: DataSource = "/data/my-set".parse().unwrap();
    assert_eq!(s.folder(root), Path::new("/data/my-set"));
    assert!("".parse::<DataSource>().is_err());
}

/// A split file whose second sample has the image name `name` (JSON-escaped by serde).
fn split_with_name(name: &str) -> String {
    let name = serde_json::to_string(name).unwrap();
    format!(
        r#"{{"samples": [
            {{"image_name": "ok/a.jpeg", "image_labels": ["sun"]}},
            {{"image_name": {name}, "image_labels": ["sky"]}}
        ], {LABELS}}}"#
    )
}

#[test]
fn image_names_leaving_the_images_folder_are_refused() {
    for (name, reason) in [
        ("../../../etc/passwd", "`..`"),
        ("a/../../b.jpeg", "`..`"),
        ("..", "`..`"),
        ("..\\..\\windows.jpeg", "`..`"),
        ("/etc/passwd", "absolute"),
        ("//server/x.jpeg", "absolute"),
        ("", "empty"),
        ("a\0.jpeg", "NUL"),
        (".", "images folder itself"),
        ("./", "images folder itself"),
    ] {
        // In a folder, as train.json...
        let dir = folder_with(&split_with_name(name), &good_test());
        let err = AnnotationFolder::open(dir.path()).unwrap_err();
        match &err {
            DataError::UnsafeImageName {
                path,
                index,
                image_name,
                ..
            } => {
                assert!(path.ends_with("train.json"), "{name:?}: {err}");
                assert_eq!((*index, image_name.as_str()), (1, name), "{err}");
            }
            other => panic!("{name:?}: expected UnsafeImageName, got {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains("train.json"), "{message}");
        assert!(message.contains("sample 1"), "{message}");
        assert!(message.contains(reason), "{name:?}: {message}");
        // ...and as test.json, read alone (as `annotate --split` does).
        let dir = folder_with(&good_train(), &split_with_name(name));
        let err = AnnotationFolder::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("test.json"), "{err}");
        let vocab = Arc::new(Vocabulary::parse("sky\nsun\nsea\ntree\n", Path::new("v")).unwrap());
        let err =
            AnnotationSplit::read(dir.path().join("test.json"), Some((vocab, Path::new("v"))))
                .unwrap_err();
        assert!(matches!(err, DataError::UnsafeImageName { .. }), "{err:?}");
    }
}

#[test]
fn image_names_inside_the_images_folder_are_accepted() {
    for name in [
        "1000.jpeg",
        "sub/dir/x.png",
        "./a.jpg",
        "a..b.jpg",
        "..a.jpg",
        "日本.jpg",
    ] {
        let dir = folder_with(&split_with_name(name), &good_test());
        let folder = AnnotationFolder::open(dir.path()).unwrap();
        assert_eq!(folder.train().samples()[1].image_name, name);
    }
}

#[test]
fn splits_built_in_memory_are_checked_before_their_images_are_read() {
    use aia::data::{AnnotationDataset, AnnotationSample, ImageCheck, OnBadImage};
    let vocab = Arc::new(Vocabulary::parse("sky\n", Path::new("v")).unwrap());
    let split = AnnotationSplit::new(
        "memory.json",
        vec![AnnotationSample {
            image_name: "../secret.jpeg".into(),
            labels: vec![0],
        }],
        vocab,
    );
    let err =
        AnnotationDataset::with_images_dir("images", split, ImageCheck::None, OnBadImage::Skip)
            .unwrap_err();
    assert!(
        matches!(err, DataError::UnsafeImageName { index: 0, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("memory.json"), "{err}");
}

#[test]
fn a_missing_data_folder_says_what_is_expected() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("Corel5k");
    let err = AnnotationFolder::open(&missing).unwrap_err();
    assert!(matches!(err, DataError::MissingFolder { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("Corel5k"), "{message}");
    assert!(message.contains("Corel-5k"), "{message}");
}

#[test]
fn a_truncated_file_says_so_once() {
    let whole = good_train();
    let dir = folder_with(&whole[..whole.len() / 2], &good_test());
    let message = AnnotationFolder::open(dir.path()).unwrap_err().to_string();
    assert!(message.contains("train.json:"), "{message}");
    assert!(message.contains("cut short"), "{message}");
    // The position is in the `path:line:column` prefix, not repeated by serde_json's text.
    assert!(!message.contains(" at line "), "{message}");
}
