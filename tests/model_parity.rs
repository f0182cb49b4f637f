//! The Rust TResNet against timm's: fixtures from `scripts/tresnet_fixtures.py` (random weights
//! and BatchNorm statistics, eval-mode logits and pooled features, one train-mode output).

use aia::model::{TResNet, TResNetConfig};
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use burn_store::{ModuleStore, SafetensorsStore};

type B = Flex;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/model");

fn fixture<BK: Backend, const D: usize>(name: &str) -> Tensor<BK, D> {
    let mut store = SafetensorsStore::from_file(format!("{DIR}/io.safetensors"));
    let snapshot = store
        .get_snapshot(name)
        .expect("readable io.safetensors")
        .unwrap_or_else(|| panic!("no tensor {name} in io.safetensors"));
    Tensor::from_data(snapshot.to_data().expect("tensor data"), &Default::default())
}

fn assert_close<BK: Backend, const D: usize>(got: Tensor<BK, D>, want: Tensor<BK, D>, what: &str) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let diff: f32 = (got - want).abs().max().into_scalar().elem();
    assert!(diff < 1e-4, "{what}: max |rust - timm| = {diff}");
}

use burn::tensor::ElementConversion;

fn tiny_a<BK: Backend>() -> TResNet<BK> {
    TResNetConfig::new([1, 1, 1, 1])
        .with_width(0.125)
        .with_num_classes(7)
        .init::<BK>(&Default::default())
        .load_timm(format!("{DIR}/tiny_a.safetensors"))
        .expect("tiny_a loads")
}

fn tiny_b(file: &str) -> TResNet<B> {
    TResNetConfig::new([1, 2, 2, 1])
        .with_width(0.0625)
        .with_num_classes(5)
        .init::<B>(&Default::default())
        .load_timm(format!("{DIR}/{file}"))
        .expect("tiny_b loads")
}

fn check(model: &TResNet<B>, input: &str) {
    let x: Tensor<B, 4> = fixture(input);
    assert_close(model.forward(x.clone()), fixture(&format!("{input}_logits")), input);
    assert_close(
        model.forward_features(x),
        fixture(&format!("{input}_features")),
        &format!("{input} features"),
    );
}

#[test]
fn tiny_a_from_safetensors_matches_timm_square_and_odd_stage_sizes() {
    let model = tiny_a::<B>();
    check(&model, "a_x64");
    // 44x60: stages 11x15 -> 6x8 -> 3x4 -> 2x2 exercise ceil-mode pooling and odd blur inputs.
    check(&model, "a_x44x60");
}

#[test]
fn tiny_b_from_safetensors_matches_timm() {
    let model = tiny_b("tiny_b.safetensors");
    check(&model, "b_x96x64");
    check(&model, "b_x64");
}

#[test]
fn tiny_b_from_pth_matches_timm() {
    let model = tiny_b("tiny_b.pth");
    check(&model, "b_x96x64");
    check(&model, "b_x64");
}

#[test]
fn training_mode_uses_batch_statistics_like_timm() {
    // On an autodiff backend BatchNorm normalises by the batch (timm's model.train()).
    let model = tiny_a::<Autodiff<B>>();
    let x: Tensor<Autodiff<B>, 4> = fixture("a_x64");
    assert_close(model.forward(x), fixture("a_x64_train_logits"), "train-mode logits");
}

#[test]
fn feature_map_has_stride_32_with_ceil() {
    let model = tiny_a::<B>();
    let map = model.forward_feature_map(fixture("a_x44x60"));
    assert_eq!(map.dims(), [1, 256, 2, 2]);
    assert_eq!(model.num_features(), 256);
    assert_eq!(model.num_classes(), 7);
}
