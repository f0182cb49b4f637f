//! Loading and saving timm checkpoints: names, shapes, errors, a fresh head for other label sets.

use aia::model::{ModelError, TResNet, TResNetConfig};
use burn::backend::Flex;
use burn::tensor::{ElementConversion, Tensor};
use burn_store::{ModuleStore, SafetensorsStore};

type B = Flex;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/model");

fn tiny_b_config() -> TResNetConfig {
    TResNetConfig::new([1, 2, 2, 1])
        .with_width(0.0625)
        .with_num_classes(5)
}

fn io(name: &str) -> Tensor<B, 4> {
    let mut store = SafetensorsStore::from_file(format!("{DIR}/io.safetensors"));
    let data = store
        .get_snapshot(name)
        .unwrap()
        .unwrap()
        .to_data()
        .unwrap();
    Tensor::from_data(data, &Default::default())
}

fn io2(name: &str) -> Tensor<B, 2> {
    let mut store = SafetensorsStore::from_file(format!("{DIR}/io.safetensors"));
    let data = store
        .get_snapshot(name)
        .unwrap()
        .unwrap()
        .to_data()
        .unwrap();
    Tensor::from_data(data, &Default::default())
}

fn max_diff(a: Tensor<B, 2>, b: Tensor<B, 2>) -> f32 {
    (a - b).abs().max().into_scalar().elem()
}

fn load(config: &TResNetConfig, file: &str) -> Result<TResNet<B>, ModelError> {
    config
        .init::<B>(&Default::default())
        .load_timm(format!("{DIR}/{file}"))
}

#[test]
fn other_label_count_keeps_backbone_and_fresh_head() {
    let device = Default::default();
    let fresh = tiny_b_config().with_num_classes(9).init::<B>(&device);
    let fresh_head = fresh.head.fc.weight.val();
    let fresh_bias = fresh.head.fc.bias.as_ref().unwrap().val();
    for file in ["tiny_b.safetensors", "tiny_b.pth"] {
        let model = fresh.clone().load_timm(format!("{DIR}/{file}")).unwrap();
        assert_eq!(model.num_classes(), 9);
        let x = io("b_x96x64");
        assert!(max_diff(model.forward_features(x), io2("b_x96x64_features")) < 1e-4);
        assert!(max_diff(model.head.fc.weight.val(), fresh_head.clone()) == 0.0);
        let bias = model.head.fc.bias.as_ref().unwrap().val();
        assert!(max_diff(bias.unsqueeze(), fresh_bias.clone().unsqueeze()) == 0.0);
    }
}

#[test]
fn missing_tensor_is_named() {
    // One more bottleneck in stage 3 than the checkpoint has.
    let err = load(
        &TResNetConfig::new([1, 2, 3, 1])
            .with_width(0.0625)
            .with_num_classes(5),
        "tiny_b.safetensors",
    )
    .unwrap_err();
    match &err {
        ModelError::MissingKey { key, path, .. } => {
            assert!(key.starts_with("body.layer3.2."), "{key}");
            assert!(path.ends_with("tiny_b.safetensors"));
        }
        other => panic!("expected MissingKey, got {other:?}"),
    }
    assert!(err.to_string().contains("body.layer3.2."), "{err}");
    assert!(err.to_string().contains("tiny_b.safetensors"), "{err}");
}

#[test]
fn extra_tensor_is_named() {
    // One bottleneck fewer in stage 3: the checkpoint's body.layer3.1.* has no place.
    let err = load(
        &TResNetConfig::new([1, 2, 1, 1])
            .with_width(0.0625)
            .with_num_classes(5),
        "tiny_b.pth",
    )
    .unwrap_err();
    match &err {
        ModelError::UnexpectedKey { key, .. } => {
            assert!(key.starts_with("body.layer3.1."), "{key}")
        }
        other => panic!("expected UnexpectedKey, got {other:?}"),
    }
}

#[test]
fn wrong_shape_is_named_with_both_shapes() {
    // Width 0.125 has 8 stem channels where the checkpoint has 4.
    let err = load(&tiny_b_config().with_width(0.125), "tiny_b.safetensors").unwrap_err();
    match &err {
        ModelError::ShapeMismatch {
            key,
            expected,
            found,
            ..
        } => {
            assert!(key.starts_with("body."), "{key}");
            assert_eq!(
                expected[0],
                2 * found[0],
                "{key}: {expected:?} vs {found:?}"
            );
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
    let err = load(&tiny_b_config().with_width(0.125), "tiny_b.pth").unwrap_err();
    assert!(matches!(err, ModelError::ShapeMismatch { .. }), "{err:?}");
}

#[test]
fn unreadable_or_unknown_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["garbage.safetensors", "garbage.pth", "garbage.bin"] {
        let path = dir.path().join(name);
        std::fs::write(&path, b"this is not a checkpoint").unwrap();
        let err = tiny_b_config()
            .init::<B>(&Default::default())
            .load_timm(&path)
            .unwrap_err();
        assert!(
            matches!(err, ModelError::Checkpoint { .. }),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains(name), "{err}");
    }
    let err = load(&tiny_b_config(), "does_not_exist.safetensors").unwrap_err();
    assert!(matches!(err, ModelError::Checkpoint { .. }), "{err:?}");
    let err = load(&tiny_b_config(), "tiny_b.onnx").unwrap_err();
    assert!(
        matches!(err, ModelError::UnsupportedFormat { .. }),
        "{err:?}"
    );
}

#[test]
fn saved_safetensors_has_timm_keys_and_reloads() {
    let model = load(&tiny_b_config(), "tiny_b.pth").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ours.safetensors");
    model.save_safetensors(&path).unwrap();
    // Overwriting works too (temporary file + rename).
    model.save_safetensors(&path).unwrap();

    let keys = |p: &std::path::Path| {
        let mut k = SafetensorsStore::from_file(p).keys().unwrap();
        k.retain(|k| !k.ends_with("num_batches_tracked"));
        k.sort();
        k
    };
    assert_eq!(
        keys(&path),
        keys(std::path::Path::new(&format!("{DIR}/tiny_b.safetensors")))
    );

    let reloaded = tiny_b_config()
        .init::<B>(&Default::default())
        .load_timm(&path)
        .unwrap();
    let x = io("b_x64");
    assert!(max_diff(reloaded.forward(x), io2("b_x64_logits")) < 1e-4);
}
