//! The attention-pooling head against the authors' PyTorch code (fixtures written by
//! scripts/attention_head_fixtures.py): logits and attention maps, both file formats, errors.

use aia::model::{AttentionHead, AttentionHeadConfig, ModelError};
use burn::backend::Flex;
use burn::tensor::{ElementConversion, Tensor};
use burn_store::{ModuleStore, SafetensorsStore};

type B = Flex;

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/model/attention"
);

/// The fixtures' sizes (the script's CHANNELS, HIDDEN, HEADS, FEEDFORWARD, CLASSES).
fn small() -> AttentionHeadConfig {
    AttentionHeadConfig::new(7)
        .with_in_channels(32)
        .with_hidden(32)
        .with_num_heads(4)
        .with_feedforward(48)
}

/// Each fixture's configuration, as the script's CONFIGS table.
fn config(name: &str) -> AttentionHeadConfig {
    match name {
        "paper" => small(),
        "post_norm_self_attn" => small()
            .with_num_layers(2)
            .with_norm_first(false)
            .with_self_attention(true),
        "no_query_position" => small().with_self_attention(true).with_query_position(false),
        _ => unreachable!(),
    }
}

fn io<const D: usize>(name: &str, tensor: &str) -> Tensor<B, D> {
    let mut store = SafetensorsStore::from_file(format!("{DIR}/{name}_io.safetensors"));
    let data = store
        .get_snapshot(tensor)
        .unwrap()
        .unwrap()
        .to_data()
        .unwrap();
    Tensor::from_data(data, &Default::default())
}

fn load(config: &AttentionHeadConfig, file: &str) -> Result<AttentionHead<B>, ModelError> {
    config
        .init::<B>(&Default::default())
        .load_authors(format!("{DIR}/{file}"))
}

/// Largest absolute difference, relative to the reference's largest magnitude.
fn relative_diff<const D: usize>(ours: Tensor<B, D>, theirs: Tensor<B, D>) -> f32 {
    let scale: f32 = theirs.clone().abs().max().into_scalar().elem();
    let diff: f32 = (ours - theirs).abs().max().into_scalar().elem();
    diff / scale.max(f32::MIN_POSITIVE)
}

#[test]
fn matches_the_authors_head_in_every_configuration() {
    for name in ["paper", "post_norm_self_attn", "no_query_position"] {
        let head = load(&config(name), &format!("{name}.safetensors")).unwrap();
        let (logits, attention) = head.forward_with_attention(io(name, "features"));
        let logits_diff = relative_diff(logits.clone(), io(name, "logits"));
        let attention_diff = relative_diff(attention.clone(), io(name, "attention"));
        println!("{name}: logits {logits_diff:.2e}, attention {attention_diff:.2e} (relative)");
        assert!(logits_diff < 1e-4, "{name}: logits differ by {logits_diff}");
        assert!(
            attention_diff < 1e-4,
            "{name}: attention differs by {attention_diff}"
        );
        assert_eq!(attention.dims(), [2, 7, 12]);
        // Each label's attention is a distribution over the 4 x 3 pixels.
        let sums = attention.sum_dim(2);
        let off: f32 = (sums - 1.0).abs().max().into_scalar().elem();
        assert!(off < 1e-5);
        let plain = head.forward(io(name, "features"));
        assert_eq!(plain.into_data(), logits.into_data());
    }
}

#[test]
fn pth_and_safetensors_load_the_same() {
    let config = config("paper");
    let a = load(&config, "paper.safetensors").unwrap();
    let b = load(&config, "paper.pth").unwrap();
    let x = io::<4>("paper", "features");
    assert_eq!(a.forward(x.clone()).into_data(), b.forward(x).into_data());
    let diff = relative_diff(b.forward(io("paper", "features")), io("paper", "logits"));
    assert!(diff < 1e-4, "{diff}");
}

#[test]
fn missing_tensor_is_named() {
    // The paper's file has no self-attention: a head that wants one misses its weights.
    let err = load(&config("paper").with_self_attention(true), "paper.pth").unwrap_err();
    match &err {
        ModelError::MissingKey { key, others, .. } => {
            assert_eq!(
                key,
                "head.transformer.decoder.layers.0.self_attn.in_proj_weight"
            );
            assert_eq!(*others, 5, "{err}");
        }
        other => panic!("expected MissingKey, got {other:?}"),
    }
    assert!(err.to_string().contains("self_attn.in_proj_weight"));
}

#[test]
fn misshaped_tensor_is_named() {
    let err = load(&config("paper").with_in_channels(16), "paper.safetensors").unwrap_err();
    match err {
        ModelError::ShapeMismatch {
            key,
            expected,
            found,
            ..
        } => {
            assert_eq!(key, "head.linear_projection.weight");
            assert_eq!(expected, vec![32, 16, 1, 1]);
            assert_eq!(found, vec![32, 32, 1, 1]);
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
    let err = load(&config("paper").with_feedforward(40), "paper.safetensors").unwrap_err();
    assert!(
        matches!(&err, ModelError::ShapeMismatch { key, .. }
            if key == "head.transformer.decoder.layers.0.linear1.weight"),
        "{err:?}"
    );
}

#[test]
fn tensors_of_another_configuration_are_named() {
    // Two layers in the file, one in the model.
    let err = load(
        &config("post_norm_self_attn").with_num_layers(1),
        "post_norm_self_attn.safetensors",
    )
    .unwrap_err();
    assert!(
        matches!(&err, ModelError::UnexpectedKey { key, .. }
            if key.starts_with("head.transformer.decoder.layers.1.")),
        "{err:?}"
    );
}

#[test]
fn unreadable_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("head.safetensors");
    std::fs::write(&garbage, b"not a checkpoint").unwrap();
    let head = small().init::<B>(&Default::default());
    let err = head.clone().load_authors(&garbage).unwrap_err();
    assert!(matches!(err, ModelError::Checkpoint { .. }), "{err:?}");
    let garbage = dir.path().join("head.pth");
    std::fs::write(&garbage, b"not a checkpoint").unwrap();
    let err = head.clone().load_authors(&garbage).unwrap_err();
    assert!(matches!(err, ModelError::Checkpoint { .. }), "{err:?}");
    let err = head.load_authors(dir.path().join("head.txt")).unwrap_err();
    assert!(
        matches!(err, ModelError::UnsupportedFormat { .. }),
        "{err:?}"
    );
}

#[test]
fn defaults_are_the_papers() {
    let c = AttentionHeadConfig::new(260);
    assert_eq!(
        (
            c.in_channels,
            c.hidden,
            c.num_heads,
            c.num_layers,
            c.feedforward
        ),
        (2048, 1024, 8, 1, 2048)
    );
    assert!(c.norm_first && !c.self_attention && c.query_position);
    assert_eq!(c.dropout, 0.1);
    let head = small().init::<B>(&Default::default());
    let keys: Vec<String> = head
        .authors_tensor_shapes()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys.len(), 19);
    assert!(!keys
        .iter()
        .any(|k| k.contains("self_attn") || k.contains("norm1")));
    let logits = head.forward(Tensor::zeros([3, 32, 2, 5], &Default::default()));
    assert_eq!(logits.dims(), [3, 7]);
}
