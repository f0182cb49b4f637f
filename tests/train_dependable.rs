//! A run folder under stress: two trainers on it, a trainer killed while holding it, and
//! output folders that cannot be written (a file in the way, a read-only or a full file system).
//!
//! The file-system cases mount a small tmpfs, which needs root (or CAP_SYS_ADMIN); where mounting
//! is not allowed they print why and pass. A directory's write bits would not do: root ignores
//! them.

mod train_support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use aia::fs::FileError;
use aia::train::{
    load_model, CheckpointState, FitOutcome, LoaderConfig, RunLock, RunResults, SilentProgress,
    TrainConfig, TrainError, Trainer, LOCK_FILE, MODEL_FILE,
};
use burn::backend::{Autodiff, Flex};
use train_support::{items, loader, measure_epoch, train_loader, Bce, TinyNet};

type B = Autodiff<Flex>;

fn config(epochs: usize) -> TrainConfig {
    TrainConfig::new()
        .with_loader(LoaderConfig::new().with_batch_size(8).with_image_size(8))
        .with_epochs(epochs)
        .with_learning_rate(0.05)
        .with_seed(3)
}

/// Trains the toy problem into `trainer`'s folder up to epoch `stop`.
fn fit(trainer: Trainer, stop: usize) -> Result<FitOutcome<TinyNet<B>>, TrainError> {
    let device = Default::default();
    let train = train_loader::<B>(items(16, 3), 8, 1);
    let valid = loader::<Flex>(items(8, 4), 8, None);
    let mut measure_epoch = measure_epoch;
    let mut trainer = trainer
        .with_progress(SilentProgress)
        .with_stop_after_epoch(stop);
    trainer.fit(
        TinyNet::<B>::new(&device),
        &Bce,
        &train,
        valid,
        &mut measure_epoch,
        &device,
    )
}

#[test]
fn a_second_trainer_on_the_same_folder_is_refused() {
    let out = tempfile::tempdir().unwrap();
    let mut first = Trainer::new(config(2), out.path());
    first.lock_folder().unwrap();
    let lock_file = out.path().join(LOCK_FILE);
    let pid: u32 = std::fs::read_to_string(&lock_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, std::process::id());

    // Another trainer of this very process: the lock is per open file, not per process.
    let error = fit(Trainer::new(config(2), out.path()), 1).unwrap_err();
    assert!(
        matches!(&error, TrainError::RunLocked { pid: Some(p), .. } if *p == pid),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&out.path().display().to_string()),
        "{message}"
    );
    assert!(message.contains("in this process"), "{message}");
    assert!(message.contains("another output folder"), "{message}");
    assert!(
        !out.path().join("checkpoints").exists(),
        "the refused trainer wrote nothing"
    );

    // Once the first is gone, the folder is free again; a trainer holds it only while it lives.
    drop(first);
    let outcome = fit(Trainer::new(config(2), out.path()), 1).unwrap();
    assert_eq!(outcome.results.epochs.len(), 1);
    let _again = RunLock::acquire(out.path()).unwrap();
}

/// The child side of [`a_lock_left_by_a_killed_trainer_does_not_stay`]: holds the lock on the
/// folder named by `AIA_LOCK_HOLDER`, says so, and waits to be killed.
#[test]
#[ignore = "run by a_lock_left_by_a_killed_trainer_does_not_stay as a child process"]
fn hold_a_run_lock_until_killed() {
    let Some(dir) = std::env::var_os("AIA_LOCK_HOLDER") else {
        return;
    };
    let _lock = RunLock::acquire(Path::new(&dir)).unwrap();
    println!("locked");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(120));
}

#[test]
fn a_lock_left_by_a_killed_trainer_does_not_stay() {
    let out = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "hold_a_run_lock_until_killed",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("AIA_LOCK_HOLDER", out.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let locked = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("locked"));
    assert!(locked, "the child process did not take the lock");

    let error = RunLock::acquire(out.path()).unwrap_err();
    assert!(
        matches!(error, TrainError::RunLocked { pid: Some(pid), .. } if pid == child.id()),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains(&format!("process {}", child.id())),
        "{error}"
    );

    // SIGKILL: no destructor runs, the lock file stays with the dead process's PID in it.
    child.kill().unwrap();
    child.wait().unwrap();
    let stale = std::fs::read_to_string(out.path().join(LOCK_FILE)).unwrap();
    assert_eq!(stale.trim(), child.id().to_string());
    let outcome = fit(Trainer::new(config(2), out.path()), 1).unwrap();
    assert_eq!(outcome.results.epochs.len(), 1);
}

#[test]
fn an_output_folder_behind_a_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, b"x").unwrap();
    let out = file.join("run");
    let error = fit(Trainer::new(config(2), &out), 1).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, TrainError::File(FileError::Write { .. })),
        "{error:?}"
    );
    assert!(message.contains("not-a-folder"), "{message}");
    assert!(
        message.contains("a file stands where a folder is needed"),
        "{message}"
    );
}

/// A tmpfs mounted on a fresh folder, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts one with `options` (e.g. `size=1m`), or says why not and returns `None`.
    fn mount(options: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status();
        match status {
            Ok(status) if status.success() => Some(Self { dir }),
            _ => {
                println!("skipped: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Fills the file system holding `dir` with a file, until it refuses another byte.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 4096];
    loop {
        if file.write_all(&block).is_err() {
            break;
        }
    }
    // Any byte left in the last page: fill it too.
    while file.write_all(&[0]).is_ok() {}
    path
}

/// The files of the run folder and its checkpoints folder, temporaries included.
fn listing(root: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for dir in [root.to_path_buf(), root.join("checkpoints")] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries {
                names.push(entry.unwrap().file_name().to_string_lossy().into_owned());
            }
        }
    }
    names.sort();
    names
}

#[test]
fn a_full_disk_ends_training_with_a_clear_error_and_keeps_the_last_checkpoint() {
    let Some(fs) = Tmpfs::mount("size=2m") else {
        return;
    };
    let out = fs.path().join("run");
    fit(Trainer::new(config(3), &out), 1).unwrap();
    let results_before = std::fs::read(out.join("results.json")).unwrap();
    let best_before = std::fs::read(out.join("best.mpk")).unwrap();
    let filler = fill(fs.path());

    let error = fit(Trainer::new(config(3), &out).with_resume(true), 2).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(&error, TrainError::File(FileError::Write { source, .. })
            if source.kind() == std::io::ErrorKind::StorageFull),
        "{error:?}"
    );
    assert!(message.contains(&out.display().to_string()), "{message}");
    assert!(message.contains("free some space"), "{message}");

    // Epoch 1's files are as they were, with no temporary left beside them.
    let names = listing(&out);
    assert!(
        names.iter().all(|name| !name.starts_with(".tmp")),
        "{names:?}"
    );
    assert!(names.contains(&"epoch-0001".to_string()), "{names:?}");
    assert!(!names.contains(&"epoch-0002".to_string()), "{names:?}");
    assert_eq!(
        std::fs::read(out.join("results.json")).unwrap(),
        results_before
    );
    assert_eq!(std::fs::read(out.join("best.mpk")).unwrap(), best_before);
    let checkpoint = out.join("checkpoints").join("epoch-0001");
    assert_eq!(CheckpointState::load(&checkpoint).unwrap().epoch, 1);
    let device = Default::default();
    load_model::<B, _>(
        TinyNet::<B>::new(&device),
        &checkpoint.join(MODEL_FILE),
        &device,
    )
    .unwrap();

    // With space again, the run resumes from that checkpoint.
    std::fs::remove_file(filler).unwrap();
    let outcome = fit(Trainer::new(config(3), &out).with_resume(true), 2).unwrap();
    assert_eq!(outcome.resumed_from, Some(1));
    assert_eq!(
        RunResults::load(&out.join("results.json"))
            .unwrap()
            .epochs
            .len(),
        2
    );
}

#[test]
fn a_read_only_output_folder_is_a_clear_error_and_changes_nothing() {
    let Some(fs) = Tmpfs::mount("size=2m") else {
        return;
    };
    let out = fs.path().join("run");
    fit(Trainer::new(config(3), &out), 1).unwrap();
    let before = listing(&out);
    fs.remount("ro");

    let error = fit(Trainer::new(config(3), &out).with_resume(true), 2).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, TrainError::File(FileError::Write { .. })),
        "{error:?}"
    );
    assert!(message.contains(&out.display().to_string()), "{message}");
    assert!(
        message.contains("choose an output folder you can write to"),
        "{message}"
    );
    // A new run in a read-only place fails the same way.
    let error = fit(Trainer::new(config(3), fs.path().join("new")), 1).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("choose an output folder you can write to"),
        "{error}"
    );
    fs.remount("rw");
    assert_eq!(listing(&out), before);
}

/// `bytes` with the first parameter id (`"id"`, then a 13-character MessagePack string)
/// replaced by the string `id`.
fn with_parameter_id(bytes: &[u8], id: &str) -> Vec<u8> {
    let at = bytes
        .windows(4)
        .position(|w| w == b"\xa2id\xad")
        .expect("a parameter id in the record");
    let mut out = bytes[..at + 3].to_vec();
    out.push(0xa0 | id.len() as u8);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&bytes[at + 4 + 13..]);
    out
}

#[test]
fn a_model_file_with_a_damaged_parameter_id_is_an_error() {
    // Found by the fuzz harness: burn panics on these instead of returning an error.
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    let path = dir.path().join("model.mpk");
    aia::train::save_model(&TinyNet::<Flex>::new(&device), &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    load_model(TinyNet::<Flex>::new(&device), &path, &device).unwrap();
    // Not base32; base32 of more than 8 bytes.
    for id in ["!!!!!!!!!!!!!", "0000000000000000"] {
        std::fs::write(&path, with_parameter_id(&bytes, id)).unwrap();
        let error = load_model(TinyNet::<Flex>::new(&device), &path, &device).unwrap_err();
        assert!(
            matches!(error, TrainError::Record { .. }),
            "{id}: {error:?}"
        );
        assert!(error.to_string().contains("model.mpk"), "{error}");
    }
}

#[test]
fn a_run_config_that_cannot_be_its_model_is_refused_before_building_it() {
    use aia::experiment::{load_best, ExperimentConfig};
    use aia::model::TResNetConfig;
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    let tiny = TResNetConfig::new([1, 1, 1, 1])
        .with_width(0.125)
        .with_num_classes(3);
    aia::train::save_model(&tiny.init::<Flex>(&device), &dir.path().join("best.mpk")).unwrap();
    let cases = [
        // A 3 GB network against a 0.5 MB file: refused without allocating it.
        (tiny.clone().with_width(50.0), "parameters"),
        (
            TResNetConfig {
                layers: [1, 0, 1, 1],
                ..tiny.clone()
            },
            "stage 2",
        ),
        (tiny.clone().with_dropout(2.0), "dropout"),
        (tiny.clone().with_num_classes(0), "classes"),
        (tiny.clone().with_width(0.001), "width"),
    ];
    for (model, what) in cases {
        let config = ExperimentConfig::new("Synthetic".into()).with_model(model);
        let results = RunResults::new(
            config.train.clone(),
            serde_json::to_value(&config).unwrap(),
            1,
        );
        results.save(&dir.path().join("results.json")).unwrap();
        let error = match load_best::<Flex>(dir.path(), &device) {
            Ok(_) => panic!("{what}: accepted"),
            Err(error) => error,
        };
        let message = error.to_string();
        assert!(message.contains("results.json"), "{what}: {message}");
        assert!(message.contains(what), "{what}: {message}");
    }
}

fn annotations(count: usize) -> Vec<aia::annotate::ImageAnnotation> {
    (0..count)
        .map(|i| aia::annotate::ImageAnnotation {
            image: PathBuf::from(format!("images/{i}.jpeg")),
            labels: vec![aia::annotate::LabelScore {
                attention: None,
                label: "sky".into(),
                score: 0.75,
            }],
            truth: Some(vec!["sky".into(), "sun".into()]),
        })
        .collect()
}

#[test]
fn annotations_into_a_full_or_read_only_folder_are_a_clear_error_and_keep_the_last_files() {
    use aia::annotate::{write_csv, write_html, write_json};
    let Some(fs) = Tmpfs::mount("size=1m") else {
        return;
    };
    let out = fs.path().join("annotations");
    let (json, csv, html) = (
        out.join("annotations.json"),
        out.join("annotations.csv"),
        out.join("annotations.html"),
    );
    write_json(&json, &annotations(3)).unwrap();
    write_csv(&csv, &annotations(3)).unwrap();
    write_html(&html, "three", &annotations(3)).unwrap();
    let before: Vec<Vec<u8>> = [&json, &csv, &html]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();

    let filler = fill(fs.path());
    let many = annotations(5000);
    let errors = [
        write_json(&json, &many).unwrap_err(),
        write_csv(&csv, &many).unwrap_err(),
        write_html(&html, "many", &many).unwrap_err(),
    ];
    for (error, path) in errors.iter().zip([&json, &csv, &html]) {
        let message = aia::error::report(error);
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("free some space"), "{message}");
    }
    std::fs::remove_file(filler).unwrap();

    fs.remount("ro");
    let error = write_json(&json, &many).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("choose an output folder you can write to"),
        "{error}"
    );
    fs.remount("rw");
    let after: Vec<Vec<u8>> = [&json, &csv, &html]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(after, before, "the earlier annotations are intact");
    let mut names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["annotations.csv", "annotations.html", "annotations.json"],
        "no temporary left"
    );
}
