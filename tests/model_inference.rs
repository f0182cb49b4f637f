//! TResNet inference on `Flex`: on x86-64 CPUs with AVX2 or AVX-512 `forward_feature_map` runs on
//! the blocked channel layout (folded BatchNorms, fused epilogues, packed weights kept between
//! calls). Its maps must match the modules' own `forward`, composed by hand here, which runs on
//! `[N, C, H, W]` tensors. Elsewhere (or with `AIA_CPU_PATH=portable`) both sides are the same
//! path and agree trivially.

use aia::model::conv_norm::ConvNormAct;
use aia::model::space_to_depth::space_to_depth;
use aia::model::{TResNet, TResNetConfig};
use burn::backend::Flex;
use burn::module::{Param, RunningState};
use burn::tensor::{Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type B = Flex;

fn random<const D: usize>(
    shape: [usize; D],
    rng: &mut ChaCha8Rng,
    range: (f32, f32),
) -> Tensor<B, D> {
    let len = shape.iter().product();
    let values: Vec<f32> = (0..len)
        .map(|_| rng.random_range(range.0..range.1))
        .collect();
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

/// Random BatchNorm parameters and statistics, so that every fold does something (a new
/// network's last BatchNorm of each block has scale 0).
fn randomize(layer: &mut ConvNormAct<B>, rng: &mut ChaCha8Rng) {
    let o = layer.bn.gamma.dims()[0];
    layer.bn.gamma = Param::from_tensor(random([o], rng, (0.5, 1.5)));
    layer.bn.beta = Param::from_tensor(random([o], rng, (-0.2, 0.2)));
    layer.bn.running_mean = RunningState::new(random([o], rng, (-0.2, 0.2)));
    layer.bn.running_var = RunningState::new(random([o], rng, (0.5, 2.0)));
}

/// Every convolution-and-BatchNorm of the network.
fn layers(model: &mut TResNet<B>) -> Vec<&mut ConvNormAct<B>> {
    let mut all = vec![&mut model.conv1];
    for block in model.layer1.iter_mut().chain(model.layer2.iter_mut()) {
        all.extend([&mut block.conv1, &mut block.conv2]);
        all.extend(block.downsample.as_mut().map(|d| &mut d.conv));
    }
    for block in model.layer3.iter_mut().chain(model.layer4.iter_mut()) {
        all.extend([&mut block.conv1, &mut block.conv2, &mut block.conv3]);
        all.extend(block.downsample.as_mut().map(|d| &mut d.conv));
    }
    all
}

/// A small TResNet (32 base channels: 32 to 1024, every kind of block and shortcut) with random
/// BatchNorms.
fn model(seed: u64) -> TResNet<B> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut model = TResNetConfig::new([2, 1, 2, 1])
        .with_width(0.5)
        .with_num_classes(10)
        .init::<B>(&Default::default());
    for layer in layers(&mut model) {
        randomize(layer, &mut rng);
    }
    model
}

/// The last feature map through the modules' `forward`.
fn reference(model: &TResNet<B>, images: Tensor<B, 4>) -> Tensor<B, 4> {
    let mut x = model.conv1.forward(space_to_depth(images));
    for block in model.layer1.iter().chain(&model.layer2) {
        x = block.forward(x);
    }
    for block in model.layer3.iter().chain(&model.layer4) {
        x = block.forward(x);
    }
    x
}

fn assert_close(got: Tensor<B, 4>, want: Tensor<B, 4>, what: &str) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let scale = want.clone().abs().max().into_scalar();
    let diff = (got - want).abs().max().into_scalar();
    assert!(
        diff <= 1e-4 * scale.max(1.0),
        "{what}: max diff {diff} (max |want| {scale})"
    );
}

#[test]
fn inference_matches_the_modules_forward() {
    let model = model(1);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    // Odd stage sides (15x9 after the stem, 2x1 at the end) and batch 1.
    for dims in [[2, 3, 64, 96], [1, 3, 60, 36]] {
        let images = random(dims, &mut rng, (0.0, 1.0));
        let what = format!("input {dims:?}");
        assert_close(
            model.forward_feature_map(images.clone()),
            reference(&model, images.clone()),
            &what,
        );
        // The second call takes the packed weights the first one kept.
        assert_close(
            model.forward_feature_map(images.clone()),
            reference(&model, images),
            &format!("{what}, again"),
        );
    }
}

/// A model given new weights or statistics, and the model it was cloned from, each run with
/// their own: the kept packed weights follow the tensors, not the layers.
#[test]
fn new_weights_are_used_at_once() {
    let old = model(3);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let images = random([1, 3, 64, 64], &mut rng, (0.0, 1.0));
    let before = old.forward_feature_map(images.clone());

    let mut new = old.clone();
    let weight = new.layer3[0].conv2.conv.weight.val();
    new.layer3[0].conv2.conv.weight = Param::from_tensor(weight.mul_scalar(-0.5));
    randomize(&mut new.layer1[1].conv1, &mut rng);
    let after = new.forward_feature_map(images.clone());
    assert_close(after.clone(), reference(&new, images.clone()), "new model");
    assert_close(
        old.forward_feature_map(images.clone()),
        before.clone(),
        "old model",
    );
    let moved = (after - before).abs().max().into_scalar();
    assert!(
        moved > 1e-3,
        "the new weights changed the map by only {moved}"
    );
}
