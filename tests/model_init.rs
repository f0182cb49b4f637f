//! Initialisation as timm's TResNet: Kaiming-normal fan-out convolutions (std sqrt(2 / fan_out)),
//! BatchNorm weight 1 / bias 0, zero weight on each block's last BatchNorm, classifier N(0, 0.01),
//! PyTorch's default uniform biases elsewhere.

use aia::model::conv_norm::ConvNormAct;
use aia::model::TResNetConfig;
use burn::backend::Flex;
use burn::tensor::{ElementConversion, Tensor};

type B = Flex;

fn mean_std<const D: usize>(t: Tensor<B, D>) -> (f64, f64) {
    let flat = t.flatten::<1>(0, D - 1);
    let n = flat.dims()[0] as f64;
    let mean: f64 = flat.clone().mean().into_scalar().elem();
    let var: f64 = (flat - mean)
        .powi_scalar(2)
        .sum()
        .into_scalar()
        .elem::<f64>()
        / n;
    (mean, var.sqrt())
}

fn all_equal<const D: usize>(t: Tensor<B, D>, value: f32) -> bool {
    let max: f32 = (t - value).abs().max().into_scalar().elem();
    max == 0.0
}

fn check_conv(c: &ConvNormAct<B>, last: bool, what: &str) {
    let [out, _, kh, kw] = c.conv.weight.dims();
    let (mean, std) = mean_std(c.conv.weight.val());
    let expected = (2.0 / (out * kh * kw) as f64).sqrt();
    let n = c.conv.weight.val().dims().iter().product::<usize>() as f64;
    // Sample std of n normal draws: relative error ~ 1 / sqrt(2n); allow 5 sigma (and 2%).
    let tol = (5.0 / (2.0 * n).sqrt()).max(0.02);
    assert!(
        (std / expected - 1.0).abs() < tol,
        "{what}: std {std} vs {expected} (n {n})"
    );
    assert!(
        mean.abs() < 5.0 * expected / n.sqrt(),
        "{what}: mean {mean}"
    );
    assert!(c.conv.bias.is_none(), "{what}: conv has a bias");
    assert!(
        all_equal(c.bn.gamma.val(), if last { 0.0 } else { 1.0 }),
        "{what}: gamma"
    );
    assert!(all_equal(c.bn.beta.val(), 0.0), "{what}: beta");
    assert!(all_equal(c.bn.running_mean.value(), 0.0) && all_equal(c.bn.running_var.value(), 1.0));
    assert_eq!(c.bn.epsilon, 1e-5, "{what}: eps");
}

#[test]
fn initialisation_follows_timm() {
    let model = TResNetConfig::new([1, 2, 2, 1])
        .with_width(0.5)
        .with_num_classes(50)
        .init::<B>(&Default::default());
    check_conv(&model.conv1, false, "stem");
    for (i, b) in model.layer1.iter().chain(&model.layer2).enumerate() {
        check_conv(&b.conv1, false, &format!("basic {i} conv1"));
        check_conv(&b.conv2, true, &format!("basic {i} conv2"));
        if let Some(d) = &b.downsample {
            check_conv(&d.conv, false, &format!("basic {i} downsample"));
        }
        let se = b.se.as_ref().expect("stages 1-2 have SE");
        let [rd, c, _, _] = se.fc1.weight.dims();
        assert_eq!(rd, (c / 4).max(64));
        let bound = 1.0 / (c as f32).sqrt();
        let bias = se.fc1.bias.as_ref().unwrap().val();
        let max: f32 = bias.abs().max().into_scalar().elem();
        assert!(
            max <= bound && max > 0.0,
            "SE bias within U(-{bound}, {bound}): {max}"
        );
    }
    for (i, b) in model.layer3.iter().chain(&model.layer4).enumerate() {
        check_conv(&b.conv1, false, &format!("bottleneck {i} conv1"));
        check_conv(&b.conv2, false, &format!("bottleneck {i} conv2"));
        check_conv(&b.conv3, true, &format!("bottleneck {i} conv3"));
        if let Some(d) = &b.downsample {
            check_conv(&d.conv, false, &format!("bottleneck {i} downsample"));
        }
    }
    assert!(model.layer3.iter().all(|b| b.se.is_some()));
    assert!(
        model.layer4.iter().all(|b| b.se.is_none()),
        "stage 4 has no SE"
    );
    let (mean, std) = mean_std(model.head.linear().expect("linear head").fc.weight.val());
    assert!(
        (std - 0.01).abs() < 0.0005 && mean.abs() < 0.0005,
        "head N(0, 0.01): {mean} {std}"
    );
}

#[test]
fn a_fresh_network_is_the_identity_on_its_residual_branches() {
    // With every block's last BatchNorm at zero, each block computes relu(shortcut(x)): blocks
    // without a downsample return relu(x) = x for the non-negative inputs they receive.
    let device = Default::default();
    let model = TResNetConfig::new([1, 2, 1, 1])
        .with_width(0.25)
        .init::<B>(&device);
    let x = Tensor::<B, 4>::random(
        [1, 32, 8, 8],
        burn::tensor::Distribution::Uniform(0.0, 1.0),
        &device,
    );
    let y = model.layer2[1].forward(x.clone());
    let diff: f32 = (y - x).abs().max().into_scalar().elem();
    assert_eq!(diff, 0.0);
}
