use burn::backend::Flex;
use burn::tensor::{Distribution, Tensor};

use super::{adam_update, adam_update_composed, AdamUpdate};

fn values<const D: usize>(t: Tensor<Flex, D>) -> Vec<f32> {
    t.into_data().to_vec().expect("f32 values")
}

/// The fused kernel against the tensor operations, to the bit, over five updates: with and
/// without weight decay, a tensor longer than one task's run, a transposed (non-contiguous)
/// gradient, and moments that another tensor shares (which the update must leave untouched).
#[test]
fn fused_update_is_the_composed_one_to_the_bit() {
    let device = Default::default();
    for weight_decay in [0.0, 1e-2] {
        for dims in [[3, 5], [300, 257]] {
            let random = || Tensor::<Flex, 2>::random(dims, Distribution::Default, &device);
            let (mut fused, mut composed) = ((random(), None), (random(), None));
            composed.0 = fused.0.clone();
            for time in 1..=5 {
                let update = AdamUpdate {
                    lr: 1e-3 * time as f64,
                    beta_1: 0.85 + 0.01 * time as f64,
                    beta_2: 0.999,
                    epsilon: 1e-8,
                    weight_decay,
                    time,
                };
                let [rows, cols] = dims;
                let grad = Tensor::<Flex, 2>::random([cols, rows], Distribution::Default, &device)
                    .sub_scalar(0.5)
                    .transpose();
                // Every other update, the moments are shared with `kept`.
                let kept = fused.1.clone().filter(|_| time % 2 == 0);
                let before = composed.1.clone();
                let a = adam_update(fused.0, grad.clone(), fused.1, update);
                let b = adam_update_composed(composed.0, grad, composed.1, update);
                assert_eq!(
                    values(a.param.clone()),
                    values(b.param.clone()),
                    "param {time}"
                );
                assert_eq!(
                    values(a.moment_1.clone()),
                    values(b.moment_1.clone()),
                    "m1 {time}"
                );
                assert_eq!(
                    values(a.moment_2.clone()),
                    values(b.moment_2.clone()),
                    "m2 {time}"
                );
                if let (Some((m1, m2)), Some((m1_before, m2_before))) = (kept, before) {
                    assert_eq!(values(m1), values(m1_before), "shared m1 {time}");
                    assert_eq!(values(m2), values(m2_before), "shared m2 {time}");
                }
                fused = (a.param, Some((a.moment_1, a.moment_2)));
                composed = (b.param, Some((b.moment_1, b.moment_2)));
            }
        }
    }
}
