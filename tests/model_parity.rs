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
    Tensor::from_data(
        snapshot.to_data().expect("tensor data"),
        &Default::default(),
    )
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
        .unwrap_or_else(|e| panic!("tiny_b loads: {e}"))
}

fn check(model: &TResNet<B>, input: &str) {
    let x: Tensor<B, 4> = fixture(input);
    assert_close(
        model.forward(x.clone()),
        fixture(&format!("{input}_logits")),
        input,
    );
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

/// `|got - want| <= 1e-4 * max(1, max |want|)`: gradients span several orders of magnitude.
fn assert_close_rel<const D: usize>(got: Tensor<B, D>, want: Tensor<B, D>, what: &str) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let scale: f32 = want.clone().abs().max().into_scalar().elem();
    let diff: f32 = (got - want).abs().max().into_scalar().elem();
    assert!(
        diff <= 1e-4 * scale.max(1.0),
        "{what}: max diff {diff} (max |timm| {scale})"
    );
}

#[test]
fn training_mode_matches_timm_outputs_running_stats_and_gradients() {
    // On an autodiff backend BatchNorm normalises by the batch (timm's model.train()).
    type A = Autodiff<B>;
    let model = tiny_a::<A>();
    let x: Tensor<A, 4> = fixture("a_x64");
    let logits = model.forward(x);
    assert_close(
        logits.clone(),
        fixture("a_x64_train_logits"),
        "train-mode logits",
    );

    let w: Tensor<A, 2> = fixture("a_train_w");
    let grads = (logits * w).sum().backward();
    let g = |name: &str| fixture::<B, 4>(&format!("a_train_{name}"));
    let g1 = |name: &str| fixture::<B, 1>(&format!("a_train_{name}"));
    let conv1 = model.conv1.conv.weight.grad(&grads).unwrap();
    assert_close_rel(conv1, g("body_conv1_conv_weight"), "grad stem conv");
    let gamma = model.layer2[0].conv1.bn.gamma.grad(&grads).unwrap();
    assert_close_rel(
        gamma,
        g1("body_layer2_0_conv1_bn_weight"),
        "grad layer2 bn weight",
    );
    let se = model.layer3[0]
        .se
        .as_ref()
        .unwrap()
        .fc1
        .weight
        .grad(&grads)
        .unwrap();
    assert_close_rel(se, g("body_layer3_0_se_fc1_weight"), "grad layer3 se fc1");
    let beta = model.layer4[0].conv3.bn.beta.grad(&grads).unwrap();
    assert_close_rel(
        beta,
        g1("body_layer4_0_conv3_bn_bias"),
        "grad layer4 last bn bias",
    );
    // Convolutions of every kind the training backward meets: 3x3, 1x1 in and out of a
    // bottleneck, and a shortcut's 1x1 after its average pool.
    let conv_grads = [
        (
            &model.layer2[0].conv2.conv.weight,
            "body_layer2_0_conv2_conv_weight",
        ),
        (
            &model.layer3[0].conv1.conv.weight,
            "body_layer3_0_conv1_conv_weight",
        ),
        (
            &model.layer4[0].conv3.conv.weight,
            "body_layer4_0_conv3_conv_weight",
        ),
        (
            &model.layer3[0]
                .downsample
                .as_ref()
                .unwrap()
                .conv
                .conv
                .weight,
            "body_layer3_0_downsample_1_conv_weight",
        ),
    ];
    for (param, name) in conv_grads {
        assert_close_rel(param.grad(&grads).unwrap(), g(name), name);
    }
    let fc = model
        .head
        .linear()
        .expect("linear head")
        .fc
        .weight
        .grad(&grads)
        .unwrap()
        .transpose();
    assert_close_rel(fc, fixture::<B, 2>("a_train_head_fc_weight"), "grad head");

    // Running statistics moved by momentum 0.1 towards the batch's (unbiased variance).
    let rm = model.conv1.bn.running_mean.value_sync().inner();
    assert_close(rm, g1("body_conv1_bn_running_mean"), "stem running mean");
    let rv = model.conv1.bn.running_var.value_sync().inner();
    assert_close(rv, g1("body_conv1_bn_running_var"), "stem running var");
    let rv3 = model.layer3[0].conv2.bn.running_var.value_sync().inner();
    assert_close(
        rv3,
        g1("body_layer3_0_conv2_bn_running_var"),
        "layer3 running var",
    );
}

#[test]
fn feature_map_has_stride_32_with_ceil() {
    let model = tiny_a::<B>();
    let map = model.forward_feature_map(fixture("a_x44x60"));
    assert_eq!(map.dims(), [1, 256, 2, 2]);
    assert_eq!(model.num_features(), 256);
    assert_eq!(model.num_classes(), 7);
}
