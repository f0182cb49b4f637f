//! The example programs on bad input: each ends with exit status 1 (2 for a command-line usage
//! error, as clap does) and one readable line on stderr naming the file, never the `Debug` form
//! of an error.
//!
//! The example binaries are those `cargo test` builds next to the test binaries
//! (`target/<profile>/examples/`); `cargo test --test examples_errors` alone does not build
//! them, so run `cargo build --release --examples` first in that case.

use std::path::{Path, PathBuf};
use std::process::Command;

use aia::experiment::ExperimentConfig;
use aia::model::TResNetConfig;
use aia::train::{save_model, LoaderConfig, RunResults, TrainConfig};

/// The built example `name`.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<this test> -> target/<profile>/examples/<name>
    let profile = exe.parent().and_then(Path::parent).unwrap();
    let path = profile
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is not built: run `cargo test` (which builds the examples) or \
         `cargo build --examples` with the same profile first",
        path.display()
    );
    // A target folder shared by several checkouts holds the examples of whichever built last:
    // cargo's dep-info file beside the binary names the sources it was built from.
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(format!("{name}.rs"));
    if let Ok(dep_info) = std::fs::read_to_string(path.with_extension("d")) {
        assert!(
            dep_info.contains(&source.display().to_string()),
            "{} was built from another checkout, not {}: run `cargo build --examples` \
             (same profile) here first",
            path.display(),
            source.display()
        );
    }
    path
}

/// Runs example `name` with `args` in `cwd`; returns its exit status and stderr.
fn run(name: &str, args: &[&str], cwd: &Path) -> (Option<i32>, String) {
    let output = Command::new(example(name))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Checks a failed run: `code`, stderr naming each of `names`, and no `Debug` syntax.
fn assert_readable_failure(
    what: &str,
    (code, stderr): (Option<i32>, String),
    expected_code: i32,
    names: &[&str],
) {
    assert_eq!(code, Some(expected_code), "{what}: stderr:\n{stderr}");
    for debug in [
        "{ path:",
        "Json {",
        "Io {",
        "Data(",
        "Train(",
        "Model(",
        "Os {",
        "kind:",
        "message: \"",
    ] {
        assert!(
            !stderr.contains(debug),
            "{what}: Debug syntax {debug:?} in stderr:\n{stderr}"
        );
    }
    for name in names {
        assert!(
            stderr.contains(name),
            "{what}: stderr does not name {name:?}:\n{stderr}"
        );
    }
    if expected_code == 1 {
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(errors.len(), 1, "{what}: one error line:\n{stderr}");
    }
}

const VOCABULARY: &str = "sky\nsun\nsea\n";

/// A data-set folder `name` in `dir` with the given train.json (test.json is valid).
fn data_folder(dir: &Path, name: &str, train: &str) -> PathBuf {
    let folder = dir.join(name);
    std::fs::create_dir_all(folder.join("images")).unwrap();
    std::fs::write(folder.join("toy_vocabulary.txt"), VOCABULARY).unwrap();
    std::fs::write(folder.join("train.json"), train).unwrap();
    std::fs::write(folder.join("test.json"), split(&["t.png"])).unwrap();
    folder
}

/// A split file listing `names`, each labelled `sky`.
fn split(names: &[&str]) -> String {
    let samples: Vec<String> = names
        .iter()
        .map(|name| {
            format!(
                r#"{{"image_name": {}, "image_labels": ["sky"]}}"#,
                serde_json::to_string(name).unwrap()
            )
        })
        .collect();
    format!(r#"{{"samples": [{}]}}"#, samples.join(", "))
}

/// A truncated train.json: what an interrupted download leaves.
fn truncated() -> String {
    let whole = split(&["a.png", "b.png"]);
    whole[..whole.len() / 2].to_string()
}

#[test]
fn dataset_stats_reports_bad_folders_by_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = data_folder(dir.path(), "Truncated", &truncated());
    assert_readable_failure(
        "truncated train.json",
        run(
            "dataset_stats",
            &["--data", bad.to_str().unwrap()],
            dir.path(),
        ),
        1,
        &["Truncated/train.json", "malformed annotation file"],
    );
    assert_readable_failure(
        "missing folder",
        run("dataset_stats", &["--data", "No-Such-Set"], dir.path()),
        1,
        &["No-Such-Set", "no such data-set folder"],
    );
    let escaping = data_folder(dir.path(), "Escaping", &split(&["../../../etc/passwd"]));
    assert_readable_failure(
        "image name leaving the folder",
        run(
            "dataset_stats",
            &["--data", escaping.to_str().unwrap()],
            dir.path(),
        ),
        1,
        &[
            "Escaping/train.json",
            "sample 0",
            "../../../etc/passwd",
            "`..`",
        ],
    );
    assert_readable_failure(
        "bad flag value",
        run("dataset_stats", &["--top", "many"], dir.path()),
        2,
        &["--top", "many"],
    );
}

#[test]
fn train_reports_bad_data_and_output_folders() {
    let dir = tempfile::tempdir().unwrap();
    let bad = data_folder(dir.path(), "Truncated", &truncated());
    let out = dir.path().join("run");
    let out = out.to_str().unwrap();
    assert_readable_failure(
        "truncated train.json",
        run(
            "train",
            &["--data", bad.to_str().unwrap(), "--out", out],
            dir.path(),
        ),
        1,
        &["Truncated/train.json"],
    );
    assert_readable_failure(
        "evaluating a run that is not there",
        run("train", &["--evaluate", "--out", out], dir.path()),
        1,
        &["run/results.json"],
    );
    // An output folder that cannot be created: it fails before the model is even built.
    let good = data_folder(dir.path(), "Good", &split(&["a.png"]));
    std::fs::write(dir.path().join("a-file"), b"").unwrap();
    assert_readable_failure(
        "output folder behind a file",
        run(
            "train",
            &["--data", good.to_str().unwrap(), "--out", "a-file/run"],
            dir.path(),
        ),
        1,
        &["a-file/run", "a file stands where a folder is needed"],
    );
    assert_readable_failure(
        "bad flag value",
        run("train", &["--loss", "hinge"], dir.path()),
        2,
        &["hinge"],
    );
}

#[test]
fn quickstart_reports_an_unusable_data_root() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a-file"), b"").unwrap();
    assert_readable_failure(
        "data root behind a file",
        run(
            "quickstart",
            &["--data-root", "a-file/datasets"],
            dir.path(),
        ),
        1,
        &["a-file/datasets"],
    );
    assert_readable_failure(
        "bad flag value",
        run("quickstart", &["--epochs", "lots"], dir.path()),
        2,
        &["--epochs"],
    );
}

/// A run folder `annotate` accepts without any training: results.json describing a tiny
/// TResNet on `data`, and that model's initial weights as the best model.
fn tiny_run(dir: &Path, data: &Path) -> PathBuf {
    type B = burn::backend::Flex;
    let run = dir.join("tiny-run");
    let labels = VOCABULARY.lines().count();
    let config = ExperimentConfig::new(data.to_str().unwrap().to_string())
        .with_model(
            TResNetConfig::new([1, 1, 1, 1])
                .with_width(0.125)
                .with_num_classes(labels),
        )
        .with_train(
            TrainConfig::new()
                .with_loader(LoaderConfig::new().with_image_size(32).with_batch_size(2)),
        );
    let results = RunResults::new(
        config.train.clone(),
        serde_json::to_value(&config).unwrap(),
        1,
    );
    results.save(&run.join("results.json")).unwrap();
    let model = config.model.init::<B>(&Default::default());
    save_model::<B, _>(&model, &run.join("best.mpk")).unwrap();
    run
}

#[test]
fn annotate_reports_bad_runs_splits_and_output_folders() {
    let dir = tempfile::tempdir().unwrap();
    assert_readable_failure(
        "missing run",
        run(
            "annotate",
            &["--run", "no-run", "--images", "x.png"],
            dir.path(),
        ),
        1,
        &["no-run/results.json"],
    );
    let data = data_folder(dir.path(), "Good", &split(&["a.png"]));
    let image = data.join("images").join("a.png");
    image::RgbImage::from_pixel(40, 30, image::Rgb([200, 100, 50]))
        .save(&image)
        .unwrap();
    let run_dir = tiny_run(dir.path(), &data);
    let run_arg = run_dir.to_str().unwrap();

    let bad_split = dir.path().join("bad-split.json");
    std::fs::write(&bad_split, split(&["a.png", "/etc/passwd"])).unwrap();
    assert_readable_failure(
        "split naming a file outside the images folder",
        run(
            "annotate",
            &[
                "--run",
                run_arg,
                "--thresholds",
                "0.5",
                "--split",
                bad_split.to_str().unwrap(),
            ],
            dir.path(),
        ),
        1,
        &["bad-split.json", "sample 1", "/etc/passwd", "absolute"],
    );
    let truncated_split = dir.path().join("truncated.json");
    std::fs::write(&truncated_split, truncated()).unwrap();
    assert_readable_failure(
        "truncated split",
        run(
            "annotate",
            &[
                "--run",
                run_arg,
                "--thresholds",
                "0.5",
                "--split",
                truncated_split.to_str().unwrap(),
            ],
            dir.path(),
        ),
        1,
        &["truncated.json"],
    );

    std::fs::write(dir.path().join("a-file"), b"").unwrap();
    let image_arg = image.to_str().unwrap();
    assert_readable_failure(
        "output folder behind a file",
        run(
            "annotate",
            &[
                "--run",
                run_arg,
                "--thresholds",
                "0.5",
                "--images",
                image_arg,
                "--out",
                "a-file/out",
            ],
            dir.path(),
        ),
        1,
        &["a-file/out", "a file stands where a folder is needed"],
    );
    // The same run annotates fine into a folder that can be written: the failures above are
    // the inputs', not the run's.
    let (code, stderr) = run(
        "annotate",
        &[
            "--run",
            run_arg,
            "--thresholds",
            "0.5",
            "--images",
            image_arg,
            "--out",
            "out",
        ],
        dir.path(),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(dir.path().join("out/annotations.json").is_file());

    assert_readable_failure(
        "bad flag value",
        run(
            "annotate",
            &["--run", run_arg, "--thresholds", "2"],
            dir.path(),
        ),
        2,
        &["--thresholds", "2"],
    );
}

#[test]
fn train_reports_bad_loss_options_and_class_weights() {
    let dir = tempfile::tempdir().unwrap();
    let good = data_folder(dir.path(), "Good", &split(&["a.png"]));
    let data = good.to_str().unwrap();
    let out = dir.path().join("run");
    let out = out.to_str().unwrap();
    let train = |extra: &[&str]| {
        let mut args = vec!["--data", data, "--out", out];
        args.extend_from_slice(extra);
        run("train", &args, dir.path())
    };
    assert_readable_failure(
        "missing class weights",
        train(&["--class-weights", "nowhere.json"]),
        1,
        &["nowhere.json"],
    );
    std::fs::write(dir.path().join("words.json"), r#"{"sky": 2.0}"#).unwrap();
    assert_readable_failure(
        "class weights that are not a list",
        train(&["--class-weights", "words.json"]),
        1,
        &["words.json", "JSON list"],
    );
    std::fs::write(dir.path().join("negative.json"), "[1.0, -2.0, 1.0]").unwrap();
    assert_readable_failure(
        "a negative class weight",
        train(&["--class-weights", "negative.json"]),
        1,
        &["negative.json", "-2"],
    );
    // Three words in the vocabulary, two weights.
    std::fs::write(dir.path().join("short.json"), "[1.0, 2.0]").unwrap();
    assert_readable_failure(
        "class weights of another vocabulary",
        train(&["--class-weights", "short.json"]),
        1,
        &["short.json", "2 values", "3 classes"],
    );
    assert_readable_failure(
        "smoothing out of range",
        train(&["--label-smoothing", "1.5"]),
        1,
        &["smoothing", "1.5"],
    );
    assert_readable_failure(
        "training without a reduction",
        train(&["--reduction", "none"]),
        1,
        &["none", "batchmean"],
    );
    assert_readable_failure(
        "unknown reduction",
        train(&["--reduction", "average"]),
        2,
        &["average"],
    );
}
