//! Mutated inputs for every reader of a file the crate does not write itself, or may find
//! damaged: annotation JSON, vocabulary files, timm checkpoints (safetensors and `.pth`), images,
//! and a run folder's files (`results.json`, a checkpoint's `state.json`, `best.mpk`,
//! `evaluation.json`, `model.json`) and an exported model. Errors are fine; a panic is a failure.
//!
//! Seeds are the committed fixtures, small files written here, and, when `AIA_DATASETS` names
//! a folder holding them (CI sets it), the real annotation and vocabulary files of Corel-5k,
//! IAPR TC-12 and ESP Game. Each input is a seed with a few mutations: bytes set, inserted,
//! deleted or duplicated, the file cut short, JSON tokens spliced in; positions lean towards
//! the start of the file, where the headers are.
//!
//! The run is deterministic and bounded (a few thousand cases, seconds). For a longer search:
//! `AIA_FUZZ_SCALE=20` multiplies the case counts, `AIA_FUZZ_SEED=<n>` changes the random
//! stream, and `AIA_FUZZ_SURVEY=1` collects every panic instead of stopping at the first
//! (`--nocapture` shows the counts). A failing input is written to the system's temporary
//! folder as `aia-fuzz-<target>.bin`.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aia::annotate::{Annotator, ThresholdSource};
use aia::data::{
    dataset_stats, load_rgb8, resize_rgb8, AnnotationDataset, AnnotationFolder, AnnotationSample,
    AnnotationSplit, ImageCheck, OnBadImage, Vocabulary,
};
use aia::experiment::{load_best, ExperimentConfig};
use aia::model::{TResNet, TResNetConfig};
use aia::threshold::ThresholdSearch;
use aia::train::{save_model, CheckpointState, LoaderConfig, RunResults, TrainConfig};
use burn::backend::Flex;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

type B = Flex;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// The multiplier of every case count (`AIA_FUZZ_SCALE`, default 1).
fn scale() -> f64 {
    std::env::var("AIA_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

fn survey() -> bool {
    std::env::var_os("AIA_FUZZ_SURVEY").is_some()
}

/// The random stream's seed (`AIA_FUZZ_SEED`, default 0), mixed with the target's name so
/// that targets do not all draw the same mutations.
fn rng(target: &str) -> TestRng {
    let base: u64 = std::env::var("AIA_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&base.to_le_bytes());
    for (i, byte) in target.bytes().enumerate() {
        seed[8 + i % 24] ^= byte;
    }
    TestRng::from_seed(RngAlgorithm::ChaCha, &seed)
}

/// Text spliced into inputs: JSON's edge cases, and names that try to leave a folder.
const TOKENS: &[&str] = &[
    "0",
    "-1",
    "1e999",
    "-1e999",
    "18446744073709551616",
    "4294967296",
    "0.5",
    "NaN",
    "null",
    "true",
    "\"\"",
    "[]",
    "{}",
    "\"../../x\"",
    "\"/etc/passwd\"",
    "\"a\\u0000b\"",
    "\"\\ud800\"",
    "\"",
    ",",
    "[",
    "]",
    "{",
    "}",
    ":",
    "\u{feff}",
    "\u{0}",
];

/// One change to a seed. Positions are [`Index`]es, resolved against the length at the time;
/// `head` restricts them to the first 1 KiB.
#[derive(Debug, Clone)]
enum Mutation {
    Set {
        at: Index,
        head: bool,
        byte: u8,
    },
    Insert {
        at: Index,
        head: bool,
        bytes: Vec<u8>,
    },
    Delete {
        at: Index,
        head: bool,
        len: usize,
    },
    Duplicate {
        at: Index,
        len: usize,
    },
    Token {
        at: Index,
        head: bool,
        token: Index,
        replace: usize,
    },
    Truncate {
        at: Index,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), any::<bool>(), any::<u8>())
            .prop_map(|(at, head, byte)| Mutation::Set { at, head, byte }),
        2 => (any::<Index>(), any::<bool>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, head, bytes)| Mutation::Insert { at, head, bytes }),
        2 => (any::<Index>(), any::<bool>(), 1usize..64)
            .prop_map(|(at, head, len)| Mutation::Delete { at, head, len }),
        1 => (any::<Index>(), 1usize..256).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        3 => (any::<Index>(), any::<bool>(), any::<Index>(), 0usize..8)
            .prop_map(|(at, head, token, replace)| Mutation::Token { at, head, token, replace }),
        1 => any::<Index>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn position(at: &Index, head: bool, len: usize) -> usize {
    let span = if head { len.min(1024) } else { len };
    if span == 0 {
        0
    } else {
        at.index(span + 1)
    }
}

fn mutate(seed: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for m in mutations {
        let len = bytes.len();
        match m {
            Mutation::Set { at, head, byte } => {
                if len > 0 {
                    let i = position(at, *head, len - 1);
                    bytes[i] = *byte;
                }
            }
            Mutation::Insert {
                at,
                head,
                bytes: new,
            } => {
                let i = position(at, *head, len);
                bytes.splice(i..i, new.iter().copied());
            }
            Mutation::Delete { at, head, len: n } => {
                let i = position(at, *head, len);
                bytes.drain(i..(i + n).min(len));
            }
            Mutation::Duplicate { at, len: n } => {
                let i = position(at, false, len);
                let copy: Vec<u8> = bytes[i..(i + n).min(len)].to_vec();
                bytes.splice(i..i, copy);
            }
            Mutation::Token {
                at,
                head,
                token,
                replace,
            } => {
                let i = position(at, *head, len);
                let token = TOKENS[token.index(TOKENS.len())].as_bytes();
                bytes.splice(i..(i + replace).min(len), token.iter().copied());
            }
            Mutation::Truncate { at } => bytes.truncate(position(at, false, len)),
        }
    }
    bytes
}

/// A change to a JSON document's tree, so that the input stays JSON and reaches the checks
/// behind the parser: a node replaced by an edge-case value, a child of an array or object
/// removed or repeated. Nodes are counted in pre-order.
#[derive(Debug, Clone)]
enum TreeMutation {
    Replace { node: Index, with: Index },
    Remove { node: Index, child: Index },
    Repeat { node: Index, child: Index },
}

fn tree_mutation() -> impl Strategy<Value = TreeMutation> {
    prop_oneof![
        3 => (any::<Index>(), any::<Index>())
            .prop_map(|(node, with)| TreeMutation::Replace { node, with }),
        1 => (any::<Index>(), any::<Index>())
            .prop_map(|(node, child)| TreeMutation::Remove { node, child }),
        1 => (any::<Index>(), any::<Index>())
            .prop_map(|(node, child)| TreeMutation::Repeat { node, child }),
    ]
}

/// The values [`TreeMutation::Replace`] puts in.
fn edge_values() -> Vec<serde_json::Value> {
    use serde_json::json;
    vec![
        json!(0),
        json!(-1),
        json!(1),
        json!(2),
        json!(0.5),
        json!(-1.5),
        json!(1e308),
        json!(-1e308),
        json!(1e-300),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(4096),
        json!(4097),
        json!(null),
        json!(true),
        json!(""),
        json!("../../x"),
        json!("/etc/passwd"),
        json!("a\u{0}b"),
        json!("x".repeat(300)),
        json!([]),
        json!({}),
        json!([1, 2, 3]),
    ]
}

fn count_nodes(value: &serde_json::Value) -> usize {
    1 + match value {
        serde_json::Value::Array(items) => items.iter().map(count_nodes).sum(),
        serde_json::Value::Object(map) => map.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// The node numbered `n` in pre-order (`n` is decremented on the way).
fn nth_node<'a>(
    value: &'a mut serde_json::Value,
    n: &mut usize,
) -> Option<&'a mut serde_json::Value> {
    if *n == 0 {
        return Some(value);
    }
    *n -= 1;
    match value {
        serde_json::Value::Array(items) => items.iter_mut().find_map(|item| nth_node(item, n)),
        serde_json::Value::Object(map) => map.values_mut().find_map(|item| nth_node(item, n)),
        _ => None,
    }
}

fn mutate_tree(seed: &serde_json::Value, mutations: &[TreeMutation]) -> Vec<u8> {
    let edges = edge_values();
    let mut value = seed.clone();
    for m in mutations {
        let (TreeMutation::Replace { node, .. }
        | TreeMutation::Remove { node, .. }
        | TreeMutation::Repeat { node, .. }) = m;
        let mut n = node.index(count_nodes(&value));
        let Some(target) = nth_node(&mut value, &mut n) else {
            continue;
        };
        match (m, target) {
            (TreeMutation::Replace { with, .. }, target) => {
                *target = edges[with.index(edges.len())].clone();
            }
            (TreeMutation::Remove { child, .. }, serde_json::Value::Array(items))
                if !items.is_empty() =>
            {
                items.remove(child.index(items.len()));
            }
            (TreeMutation::Remove { child, .. }, serde_json::Value::Object(map))
                if !map.is_empty() =>
            {
                let key = map.keys().nth(child.index(map.len())).cloned();
                if let Some(key) = key {
                    map.remove(&key);
                }
            }
            (TreeMutation::Repeat { child, .. }, serde_json::Value::Array(items))
                if !items.is_empty() =>
            {
                let i = child.index(items.len());
                items.insert(i, items[i].clone());
            }
            _ => {}
        }
    }
    serde_json::to_vec_pretty(&value).unwrap_or_default()
}

/// Runs `target` on `cases` mutated seeds; a panic fails the test (or, in survey mode, is
/// counted). `target` says whether the reader accepted the input, for the summary: a search
/// whose inputs all fail the first check would test little.
fn fuzz(name: &str, seeds: &[Vec<u8>], cases: u32, target: impl Fn(&[u8]) -> bool) {
    assert!(!seeds.is_empty(), "{name}: no seed");
    let cases = ((cases as f64 * scale()).round() as u32).max(1);
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, rng(name));
    // Seeds that are JSON get tree mutations in half the cases, byte mutations in the others.
    let trees: Vec<Option<serde_json::Value>> = seeds
        .iter()
        .map(|seed| serde_json::from_slice(seed).ok())
        .collect();
    let strategy = (
        any::<Index>(),
        prop::collection::vec(mutation(), 1..6),
        0u8..8,
        prop::collection::vec(tree_mutation(), 1..4),
    );
    let ran = Cell::new(0u32);
    let accepted = Cell::new(0u32);
    let panics: RefCell<Vec<String>> = RefCell::new(Vec::new());
    let started = std::time::Instant::now();
    let result = runner.run(
        &strategy,
        |(which, mutations, unchanged, tree_mutations)| {
            ran.set(ran.get() + 1);
            let which = which.index(seeds.len());
            let seed = &seeds[which];
            // One case in eight is the seed itself with a single change, so that most inputs get
            // past the first check of each reader.
            let mutations = if unchanged == 0 {
                &mutations[..1]
            } else {
                &mutations[..]
            };
            let input = match &trees[which] {
                Some(tree) if unchanged % 2 == 1 => mutate_tree(tree, &tree_mutations),
                _ => mutate(seed, mutations),
            };
            match catch_unwind(AssertUnwindSafe(|| target(&input))) {
                Ok(ok) => {
                    accepted.set(accepted.get() + u32::from(ok));
                    Ok(())
                }
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "a panic without a message".into());
                    let file = std::env::temp_dir().join(format!("aia-fuzz-{name}.bin"));
                    let _ = std::fs::write(&file, &input);
                    if survey() {
                        let mut seen = panics.borrow_mut();
                        if seen.len() < 1000 {
                            seen.push(message);
                        }
                        let numbered = std::env::temp_dir()
                            .join(format!("aia-fuzz-{name}-{}.bin", seen.len()));
                        let _ = std::fs::write(numbered, &input);
                        Ok(())
                    } else {
                        Err(TestCaseError::fail(format!(
                            "{name}: panic: {message} (input in {})",
                            file.display()
                        )))
                    }
                }
            }
        },
    );
    if let Err(error) = result {
        panic!("{name}: {error}");
    }
    let panics = panics.into_inner();
    println!(
        "{name}: {} cases ({} accepted) in {:.2} s, {} panics",
        ran.get(),
        accepted.get(),
        started.elapsed().as_secs_f64(),
        panics.len()
    );
    let mut distinct = panics.clone();
    distinct.sort();
    distinct.dedup();
    for message in &distinct {
        println!("  panic: {message}");
    }
}

fn read(path: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(path.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

/// The real annotation folders under `AIA_DATASETS`, if set.
fn real_folders() -> Vec<PathBuf> {
    let Some(root) = std::env::var_os("AIA_DATASETS").map(PathBuf::from) else {
        println!("AIA_DATASETS is not set: the real annotation files are not used as seeds");
        return Vec::new();
    };
    ["Corel-5k", "IAPR-TC-12", "ESP-Game"]
        .iter()
        .map(|name| root.join(name))
        .filter(|dir| dir.join("train.json").is_file())
        .collect()
}

fn vocabulary_file(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("vocabulary.txt"))
}

const TOY_VOCABULARY: &str = "sky\nsun\nsea\n";

fn toy_split(names: &[&str]) -> String {
    let samples: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let labels = ["[\"sky\"]", "[\"sun\", \"sea\"]", "[]"][i % 3];
            format!(r#"{{"image_name": "{name}", "image_labels": {labels}}}"#)
        })
        .collect();
    format!(
        "{{\"samples\": [\n  {}\n], \"labels\": [\"sky\", \"sun\", \"sea\"]}}\n",
        samples.join(",\n  ")
    )
}

fn toy_vocabulary() -> Arc<Vocabulary> {
    Arc::new(Vocabulary::parse(TOY_VOCABULARY, Path::new("toy_vocabulary.txt")).unwrap())
}

/// A data-set folder of three labels and `names` as 40x30 PNG images, two in the test split.
fn toy_folder(dir: &Path, names: &[&str]) -> PathBuf {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for (i, name) in names.iter().enumerate() {
        let shade = (i * 60) as u8;
        image::RgbImage::from_fn(40, 30, |x, y| {
            image::Rgb([shade, (x * 6) as u8, (y * 8) as u8])
        })
        .save(images.join(name))
        .unwrap();
    }
    std::fs::write(dir.join("toy_vocabulary.txt"), TOY_VOCABULARY).unwrap();
    let (test, train) = names.split_at(2);
    std::fs::write(dir.join("train.json"), toy_split(train)).unwrap();
    std::fs::write(dir.join("test.json"), toy_split(test)).unwrap();
    dir.to_path_buf()
}

#[test]
fn annotation_files() {
    let vocabulary = toy_vocabulary();
    let mut seeds = vec![
        toy_split(&["a.jpeg", "b.jpeg", "sub/c.png"]).into_bytes(),
        br#"{"samples": [{"image_name": "x.png", "image_labels": ["sun", "sun"]}]}"#.to_vec(),
    ];
    let target = |bytes: &[u8], vocabulary: Option<(Arc<Vocabulary>, &Path)>| {
        let parsed = AnnotationSplit::parse(bytes, "train.json", vocabulary);
        if let Ok(split) = &parsed {
            let _ = split.target(0);
            let _ = split.target(split.len().saturating_sub(1));
        }
        parsed.is_ok()
    };
    fuzz("annotation_json", &seeds, 800, |bytes| {
        let alone = target(bytes, None);
        let checked = target(
            bytes,
            Some((vocabulary.clone(), Path::new("toy_vocabulary.txt"))),
        );
        alone || checked
    });

    // The real files, against their own vocabulary.
    for dir in real_folders() {
        let vocab_path = vocabulary_file(&dir).unwrap();
        let vocab = Arc::new(Vocabulary::read(&vocab_path).unwrap());
        seeds = vec![read(dir.join("train.json")), read(dir.join("test.json"))];
        let name = format!(
            "annotation_json_{}",
            dir.file_name().unwrap().to_string_lossy()
        );
        fuzz(&name, &seeds, 100, |bytes| {
            target(bytes, Some((vocab.clone(), vocab_path.as_path())))
        });
    }
}

#[test]
fn vocabulary_files() {
    let mut seeds = vec![
        TOY_VOCABULARY.as_bytes().to_vec(),
        b"sky\r\n sun \n\nsea".to_vec(),
    ];
    for dir in real_folders() {
        seeds.push(read(vocabulary_file(&dir).unwrap()));
    }
    fuzz("vocabulary", &seeds, 300, |bytes| {
        let text = String::from_utf8_lossy(bytes);
        let parsed = Vocabulary::parse(&text, Path::new("v.txt"));
        if let Ok(vocabulary) = &parsed {
            let _ = vocabulary.label(vocabulary.len().saturating_sub(1));
        }
        parsed.is_ok()
    });
}

#[test]
fn annotation_folders() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["t1.png", "t2.png", "a.png", "b.png", "c.png"];
    let folder = toy_folder(dir.path(), &names);
    let seeds = vec![
        read(folder.join("train.json")),
        read(folder.join("toy_vocabulary.txt")),
    ];
    fuzz("annotation_folder", &seeds, 200, |bytes| {
        // The same bytes as train.json and as the vocabulary file, in turn.
        let mut accepted = false;
        for file in ["train.json", "toy_vocabulary.txt"] {
            let original = read(folder.join(file));
            std::fs::write(folder.join(file), bytes).unwrap();
            if let Ok(opened) = AnnotationFolder::open(&folder) {
                accepted = true;
                let _ = dataset_stats(&opened, 3).to_string();
                let _ =
                    AnnotationDataset::open_skipping(&opened, opened.train(), ImageCheck::Headers);
            }
            std::fs::write(folder.join(file), original).unwrap();
        }
        accepted
    });
}

/// Small images of the formats and layouts the decoder meets.
fn image_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        read(format!("{FIXTURES}/data/cmyk.jpg")),
        read(format!("{FIXTURES}/data/resize_src.png")),
    ];
    let encode = |image: image::DynamicImage, format: image::ImageFormat| {
        let mut bytes = std::io::Cursor::new(Vec::new());
        image.write_to(&mut bytes, format).unwrap();
        bytes.into_inner()
    };
    let rgb = image::RgbImage::from_fn(12, 9, |x, y| {
        image::Rgb([(x * 20) as u8, (y * 25) as u8, 7])
    });
    seeds.push(encode(rgb.clone().into(), image::ImageFormat::Jpeg));
    seeds.push(encode(rgb.into(), image::ImageFormat::Png));
    let grey16 = image::ImageBuffer::<image::LumaA<u16>, _>::from_fn(7, 5, |x, y| {
        image::LumaA([(x * 9000) as u16, (y * 12000) as u16])
    });
    seeds.push(encode(grey16.into(), image::ImageFormat::Png));
    seeds
}

#[test]
fn images() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.img");
    let split = AnnotationSplit::new(
        "memory.json",
        vec![AnnotationSample {
            image_name: "x.img".into(),
            labels: vec![0],
        }],
        toy_vocabulary(),
    );
    fuzz("image", &image_seeds(), 800, |bytes| {
        std::fs::write(&path, bytes).unwrap();
        let decoded = load_rgb8(&path, 0);
        if let Ok(image) = &decoded {
            let _ = resize_rgb8(image, 16, 16);
        }
        let _ = AnnotationDataset::with_images_dir(
            dir.path(),
            split.clone(),
            ImageCheck::Headers,
            OnBadImage::Fail,
        );
        decoded.is_ok()
    });
}

#[test]
fn timm_checkpoints() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let tiny_a = TResNetConfig::new([1, 1, 1, 1])
        .with_width(0.125)
        .with_num_classes(7)
        .init::<B>(&device);
    let tiny_b = TResNetConfig::new([1, 2, 2, 1])
        .with_width(0.0625)
        .with_num_classes(5)
        .init::<B>(&device);
    let load = |model: &TResNet<B>, file: &str, bytes: &[u8]| {
        let path = dir.path().join(file);
        std::fs::write(&path, bytes).unwrap();
        model.clone().load_timm(&path).is_ok()
    };
    let seeds = vec![
        read(format!("{FIXTURES}/model/tiny_a.safetensors")),
        read(format!("{FIXTURES}/model/tiny_b.safetensors")),
    ];
    fuzz("safetensors", &seeds, 150, |bytes| {
        // Each file against both models: mismatched shapes and names are part of the search.
        let a = load(&tiny_a, "x.safetensors", bytes);
        let b = load(&tiny_b, "x.safetensors", bytes);
        a || b
    });
    let seeds = vec![read(format!("{FIXTURES}/model/tiny_b.pth"))];
    fuzz("pth", &seeds, 150, |bytes| load(&tiny_b, "x.pth", bytes));
}

/// A run folder `annotate` and `evaluate` accept, without training: `results.json` describing
/// a tiny TResNet on `data`, its initial weights as the best model, and a checkpoint state.
fn tiny_run(dir: &Path, data: &Path) -> PathBuf {
    let run = dir.join("run");
    let config = ExperimentConfig::new(data.to_str().unwrap().to_string())
        .with_model(
            TResNetConfig::new([1, 1, 1, 1])
                .with_width(0.125)
                .with_num_classes(3),
        )
        .with_train(
            TrainConfig::new()
                .with_loader(LoaderConfig::new().with_image_size(32).with_batch_size(2))
                .with_epochs(2),
        );
    let mut results = RunResults::new(
        config.train.clone(),
        serde_json::to_value(&config).unwrap(),
        1,
    );
    for epoch in 1..=2 {
        let mut metrics = aia::metrics::AnnotationMetrics::default();
        metrics.per_class.f1 = 0.1 * epoch as f64;
        metrics.mean_average_precision = Some(0.3);
        results.push(aia::train::EpochRecord {
            epoch,
            train_loss: 0.7,
            val_loss: 0.8,
            learning_rate: 1e-4,
            momentum: 0.9,
            metrics,
            ema: None,
            seconds: 1.5,
            images_per_second: 20.0,
        });
    }
    results.save(&run.join("results.json")).unwrap();
    let state = CheckpointState {
        epoch: 2,
        schedule_position: 2,
        results,
    };
    std::fs::write(
        run.join("state.json"),
        serde_json::to_vec_pretty(&state).unwrap(),
    )
    .unwrap();
    let model = config.model.init::<B>(&Default::default());
    save_model::<B, _>(&model, &run.join("best.mpk")).unwrap();
    run
}

#[test]
fn run_folders() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let data = toy_folder(
        &dir.path().join("data"),
        &["t1.png", "t2.png", "a.png", "b.png", "c.png"],
    );
    let run = tiny_run(dir.path(), &data);
    let results = read(run.join("results.json"));
    let best = read(run.join("best.mpk"));

    fuzz(
        "results_json",
        std::slice::from_ref(&results),
        300,
        |bytes| {
            std::fs::write(run.join("results.json"), bytes).unwrap();
            let _ = RunResults::load(&run.join("results.json"));
            load_best::<B>(&run, &device).is_ok()
        },
    );
    std::fs::write(run.join("results.json"), &results).unwrap();

    let state = read(run.join("state.json"));
    fuzz("state_json", &[state], 300, |bytes| {
        std::fs::write(run.join("state.json"), bytes).unwrap();
        CheckpointState::load(&run).is_ok()
    });

    fuzz("best_mpk", std::slice::from_ref(&best), 200, |bytes| {
        std::fs::write(run.join("best.mpk"), bytes).unwrap();
        load_best::<B>(&run, &device).is_ok()
    });
    std::fs::write(run.join("best.mpk"), &best).unwrap();

    // evaluation.json: the real one of this run, then mutated under `annotate`'s reader.
    match aia::experiment::evaluate_run::<B>(&run, &device) {
        Ok(_) => {
            let evaluation = read(run.join(aia::experiment::EVALUATION_FILE));
            fuzz("evaluation_json", &[evaluation], 150, |bytes| {
                std::fs::write(run.join(aia::experiment::EVALUATION_FILE), bytes).unwrap();
                Annotator::<B>::from_run(
                    &run,
                    ThresholdSource::Mcc(ThresholdSearch::Exact),
                    &device,
                )
                .is_ok()
            });
        }
        Err(e) => panic!("evaluating the tiny run: {}", aia::error::report(&e)),
    }

    // model.json, the manifest that lets a run annotate without its data set.
    let annotator = Annotator::<B>::from_run(&run, ThresholdSource::Global(0.5), &device).unwrap();
    annotator.manifest().save(&run).unwrap();
    let manifest = read(run.join(aia::experiment::MANIFEST_FILE));
    fuzz("manifest_json", &[manifest], 200, |bytes| {
        std::fs::write(run.join(aia::experiment::MANIFEST_FILE), bytes).unwrap();
        Annotator::<B>::from_run(&run, ThresholdSource::Global(0.5), &device).is_ok()
    });

    // An exported model: one safetensors file with the manifest in its header.
    let file = dir.path().join("model.safetensors");
    annotator.export(&file).unwrap();
    let exported = read(file.clone());
    fuzz("exported_model", &[exported], 200, |bytes| {
        std::fs::write(&file, bytes).unwrap();
        Annotator::<B>::from_export(&file, ThresholdSource::Mcc(ThresholdSearch::Exact), &device)
            .is_ok()
    });
}
