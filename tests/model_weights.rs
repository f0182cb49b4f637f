//! Loading and saving timm checkpoints: names, shapes, errors, a fresh head for other label sets.

use aia::model::{AttentionHeadConfig, HeadConfig, ModelError, TResNet, TResNetConfig};
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
    let fresh_head = fresh.head.linear().expect("linear head").fc.weight.val();
    let fresh_bias = fresh
        .head
        .linear()
        .expect("linear head")
        .fc
        .bias
        .as_ref()
        .unwrap()
        .val();
    for file in ["tiny_b.safetensors", "tiny_b.pth"] {
        let model = fresh.clone().load_timm(format!("{DIR}/{file}")).unwrap();
        assert_eq!(model.num_classes(), 9);
        let x = io("b_x96x64");
        assert!(max_diff(model.forward_features(x), io2("b_x96x64_features")) < 1e-4);
        assert!(
            max_diff(
                model.head.linear().expect("linear head").fc.weight.val(),
                fresh_head.clone()
            ) == 0.0
        );
        let bias = model
            .head
            .linear()
            .expect("linear head")
            .fc
            .bias
            .as_ref()
            .unwrap()
            .val();
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

/// A small attention head for the tiny network (its feature map has 128 channels).
fn tiny_attention() -> HeadConfig {
    HeadConfig::Attention(
        AttentionHeadConfig::new(0)
            .with_hidden(16)
            .with_num_heads(2)
            .with_feedforward(32)
            .with_dropout(0.0),
    )
}

#[test]
fn attention_head_takes_timms_backbone_and_keeps_its_own_head() {
    let device = Default::default();
    let fresh = tiny_b_config()
        .with_num_classes(7)
        .with_head(tiny_attention())
        .init::<B>(&device);
    let head = fresh.head.attention().expect("attention head");
    assert_eq!((head.num_classes(), head.in_channels()), (7, 128));
    let fresh_w = head.w.val().flatten::<2>(0, 1);
    for file in ["tiny_b.safetensors", "tiny_b.pth"] {
        let model = fresh.clone().load_timm(format!("{DIR}/{file}")).unwrap();
        // timm's backbone is in: its pooled features are timm's.
        let x = io("b_x96x64");
        assert!(max_diff(model.forward_features(x), io2("b_x96x64_features")) < 1e-4);
        // timm's 5-class classifier is dropped, the head is untouched.
        let w = model.head.attention().unwrap().w.val().flatten::<2>(0, 1);
        assert!(max_diff(w, fresh_w.clone()) == 0.0);
        assert_eq!(model.num_classes(), 7);
    }
}

#[test]
fn a_saved_attention_model_reloads_whole() {
    let device = Default::default();
    let config = tiny_b_config().with_head(tiny_attention());
    let model = config
        .init::<B>(&device)
        .load_timm(format!("{DIR}/tiny_b.safetensors"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("attention.safetensors");
    model
        .save_safetensors_with_metadata(&path, &[("note", "kept")])
        .unwrap();
    assert_eq!(
        aia::model::safetensors_metadata(&path).unwrap().get("note"),
        Some(&"kept".to_string())
    );
    // Another initialisation of the head: only a reload of its tensors gives the same logits.
    let x = io("b_x96x64");
    let other = config.init::<B>(&device);
    let other_head = other
        .clone()
        .load_timm(format!("{DIR}/tiny_b.safetensors"))
        .unwrap();
    assert!(max_diff(other_head.forward(x.clone()), model.forward(x.clone())) > 1e-4);
    let reloaded = other.load_timm(&path).unwrap();
    assert!(max_diff(reloaded.forward(x.clone()), model.forward(x)) < 1e-6);
}

#[test]
fn attention_head_reads_the_feature_map() {
    let device = Default::default();
    let model = tiny_b_config()
        .with_head(tiny_attention())
        .init::<B>(&device);
    let x = io("b_x96x64");
    let map = model.forward_feature_map(x.clone());
    let [n, _, h, w] = map.dims();
    let alone = model.head.attention().unwrap().forward(map);
    let (logits, attention) = model.forward_with_attention(x.clone());
    assert_eq!(logits.dims(), [n, 5]);
    assert!(max_diff(logits.clone(), alone) < 1e-6);
    assert!(max_diff(model.forward(x), logits) < 1e-6);
    // One distribution over the map's pixels per image and label.
    let attention = attention.expect("the attention head returns its weights");
    assert_eq!(attention.dims(), [n, 5, h * w]);
    let sums = attention.sum_dim(2).flatten::<1>(0, 2);
    let off: f32 = (sums - 1.0).abs().max().into_scalar().elem();
    assert!(off < 1e-5, "attention rows sum to 1 within {off}");
}

#[test]
fn linear_head_has_no_attention() {
    let model = tiny_b_config().init::<B>(&Default::default());
    let (logits, attention) = model.forward_with_attention(io("b_x64"));
    assert!(attention.is_none());
    assert!(max_diff(logits, model.forward(io("b_x64"))) < 1e-6);
}

#[test]
fn heads_parse_and_invalid_ones_are_refused() {
    assert_eq!("linear".parse::<HeadConfig>().unwrap().name(), "linear");
    assert_eq!(
        " Attention".parse::<HeadConfig>().unwrap().name(),
        "attention"
    );
    assert!("mlp".parse::<HeadConfig>().unwrap_err().contains("mlp"));
    let attention = |f: fn(AttentionHeadConfig) -> AttentionHeadConfig| {
        tiny_b_config().with_head(HeadConfig::Attention(f(AttentionHeadConfig::new(0))))
    };
    assert!(attention(|c| c).validate().is_ok());
    for (config, what) in [
        (attention(|c| c.with_num_heads(3)), "do not divide"),
        (attention(|c| c.with_num_layers(0)), "decoder layers"),
        (attention(|c| c.with_dropout(1.5)), "dropout"),
        (tiny_b_config().with_num_classes(0), "classes"),
    ] {
        let err = config.validate().unwrap_err();
        assert!(
            matches!(&err, ModelError::InvalidConfig(m) if m.contains(what)),
            "{what}: {err}"
        );
    }
}
