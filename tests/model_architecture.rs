//! TResNet-M/L/XL against timm's parameter names, shapes and counts
//! (`tests/fixtures/model/tresnet_m_keys.json`, written by `scripts/tresnet_fixtures.py`), and
//! input-shape validation.

use std::collections::BTreeMap;

use aia::model::{ModelError, TResNetConfig, MIN_SIDE};
use burn::backend::Flex;
use burn::tensor::Tensor;

type B = Flex;

fn timm_fixture() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/model/tresnet_m_keys.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn tresnet_m_has_timm_names_shapes_and_parameter_count() {
    let json = timm_fixture();
    let timm: BTreeMap<String, Vec<usize>> = json["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let shape = t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize);
            (t["key"].as_str().unwrap().to_string(), shape.collect())
        })
        .collect();
    let model = TResNetConfig::m().init::<B>(&Default::default());
    let ours: BTreeMap<String, Vec<usize>> = model.timm_tensor_shapes().into_iter().collect();
    let only_timm: Vec<_> = timm.keys().filter(|k| !ours.contains_key(*k)).collect();
    let only_ours: Vec<_> = ours.keys().filter(|k| !timm.contains_key(*k)).collect();
    assert!(
        only_timm.is_empty() && only_ours.is_empty(),
        "timm only: {only_timm:?}\nours only: {only_ours:?}"
    );
    for (key, shape) in &timm {
        assert_eq!(&ours[key], shape, "{key}");
    }
    assert_eq!(model.num_params(), 31_389_032);
    assert_eq!(
        model.num_params() as u64,
        json["num_params"].as_u64().unwrap()
    );
    assert_eq!(model.num_features(), 2048);
    assert_eq!(model.num_classes(), 1000);
}

#[test]
fn l_and_xl_match_timm_parameter_counts() {
    let json = timm_fixture();
    let l = TResNetConfig::l().init::<B>(&Default::default());
    assert_eq!(
        l.num_params() as u64,
        json["num_params_l"].as_u64().unwrap()
    );
    assert_eq!(l.num_features(), 76 * 32);
    drop(l);
    let xl = TResNetConfig::xl().init::<B>(&Default::default());
    assert_eq!(
        xl.num_params() as u64,
        json["num_params_xl"].as_u64().unwrap()
    );
    assert_eq!(xl.num_features(), 83 * 32);
}

#[test]
fn input_shapes_timm_rejects_are_errors_not_panics() {
    let device = Default::default();
    let model = TResNetConfig::new([1, 1, 1, 1])
        .with_width(0.125)
        .with_num_classes(3)
        .init::<B>(&device);
    let bad: [([usize; 4], &str); 5] = [
        ([1, 3, 62, 64], "multiples of 4"),
        ([1, 3, 64, 30], "multiples of 4"),
        ([1, 3, 16, 64], "at least"),
        ([1, 1, 64, 64], "channels"),
        ([0, 3, 64, 64], "empty"),
    ];
    for (dims, why) in bad {
        let err = model.check_input(&dims).unwrap_err();
        assert!(matches!(err, ModelError::InvalidInput(_)));
        assert!(err.to_string().contains(why), "{dims:?}: {err}");
        assert!(model.try_forward(Tensor::zeros(dims, &device)).is_err());
    }
    // The smallest accepted side and a non-square size run and give [N, classes].
    for dims in [[1, 3, MIN_SIDE, MIN_SIDE], [2, 3, 28, 52]] {
        model.check_input(&dims).unwrap();
        let logits = model.try_forward(Tensor::zeros(dims, &device)).unwrap();
        assert_eq!(logits.dims(), [dims[0], 3]);
    }
}

#[test]
#[should_panic(expected = "multiples of 4")]
fn forward_panics_with_the_same_message() {
    let device = Default::default();
    let model = TResNetConfig::new([1, 1, 1, 1])
        .with_width(0.125)
        .init::<B>(&device);
    model.forward(Tensor::zeros([1, 3, 30, 30], &device));
}
