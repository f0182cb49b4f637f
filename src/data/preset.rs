//! The three benchmark sets of the paper, as named presets.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::DataError;

/// Per-channel mean and standard deviation of a data set's images, on the `[0, 1]` scale.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Mean of the R, G and B channels.
    pub mean: [f32; 3],
    /// Standard deviation of the R, G and B channels.
    pub std: [f32; 3],
}

impl Normalization {
    /// ImageNet's statistics, the usual choice for a folder of unknown statistics.
    pub const IMAGENET: Normalization = Normalization {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };

    /// No normalisation: pixels stay in `[0, 1]`.
    pub const IDENTITY: Normalization = Normalization {
        mean: [0.0; 3],
        std: [1.0; 3],
    };

    /// A normalisation from its mean and standard deviation.
    pub fn new(mean: [f32; 3], std: [f32; 3]) -> Self {
        Self { mean, std }
    }

    /// Measures the per-channel mean and (population) standard deviation of RGB8 images, pixels
    /// scaled to `[0, 1]`; every pixel of every image weighs the same.
    pub fn measure<'a>(images: impl IntoIterator<Item = &'a image::RgbImage>) -> Self {
        let mut sum = [0f64; 3];
        let mut sum_sq = [0f64; 3];
        let mut n = 0u64;
        for img in images {
            // Integer sums per image keep the accumulation exact and fast.
            let mut s = [0u64; 3];
            let mut s2 = [0u64; 3];
            for p in img.pixels() {
                for c in 0..3 {
                    let v = p.0[c] as u64;
                    s[c] += v;
                    s2[c] += v * v;
                }
            }
            for c in 0..3 {
                sum[c] += s[c] as f64 / 255.0;
                sum_sq[c] += s2[c] as f64 / (255.0 * 255.0);
            }
            n += img.width() as u64 * img.height() as u64;
        }
        if n == 0 {
            return Self::IDENTITY;
        }
        let n = n as f64;
        let mean = sum.map(|s| s / n);
        let std = [0, 1, 2].map(|c| (sum_sq[c] / n - mean[c] * mean[c]).max(0.0).sqrt());
        Self {
            mean: mean.map(|m| m as f32),
            std: std.map(|s| (s as f32).max(1e-6)),
        }
    }
}

/// One of the paper's three benchmark sets, with the facts the crate needs about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DatasetPreset {
    /// Corel-5k: 4500 train / 499 test images, 260 labels.
    Corel5k,
    /// IAPR TC-12: 17665 train / 1962 test images, 291 labels.
    IaprTc12,
    /// ESP Game: 18689 train / 2081 test images, 268 labels.
    EspGame,
}

impl DatasetPreset {
    /// The three presets.
    pub const ALL: [DatasetPreset; 3] = [
        DatasetPreset::Corel5k,
        DatasetPreset::IaprTc12,
        DatasetPreset::EspGame,
    ];

    /// The folder name, as the paper's code expects under `datasets/`: `"Corel-5k"`,
    /// `"IAPR-TC-12"` or `"ESP-Game"`. Also the name [`FromStr`] accepts.
    pub fn folder_name(self) -> &'static str {
        match self {
            DatasetPreset::Corel5k => "Corel-5k",
            DatasetPreset::IaprTc12 => "IAPR-TC-12",
            DatasetPreset::EspGame => "ESP-Game",
        }
    }

    /// The vocabulary file's name inside the folder.
    pub fn vocabulary_file(self) -> &'static str {
        match self {
            DatasetPreset::Corel5k => "corel5k_vocabulary.txt",
            DatasetPreset::IaprTc12 => "iaprtc12_vocabulary.txt",
            DatasetPreset::EspGame => "espgame_vocabulary.txt",
        }
    }

    /// Number of training images.
    pub fn train_images(self) -> usize {
        match self {
            DatasetPreset::Corel5k => 4500,
            DatasetPreset::IaprTc12 => 17665,
            DatasetPreset::EspGame => 18689,
        }
    }

    /// Number of test images.
    pub fn test_images(self) -> usize {
        match self {
            DatasetPreset::Corel5k => 499,
            DatasetPreset::IaprTc12 => 1962,
            DatasetPreset::EspGame => 2081,
        }
    }

    /// Number of labels (output columns).
    pub fn num_labels(self) -> usize {
        match self {
            DatasetPreset::Corel5k => 260,
            DatasetPreset::IaprTc12 => 291,
            DatasetPreset::EspGame => 268,
        }
    }

    /// The set's per-channel image mean and standard deviation.
    pub fn normalization(self) -> Normalization {
        match self {
            DatasetPreset::Corel5k => {
                Normalization::new([0.3928, 0.4079, 0.3531], [0.2559, 0.2436, 0.2544])
            }
            DatasetPreset::IaprTc12 => {
                Normalization::new([0.4901, 0.4739, 0.4489], [0.2557, 0.2543, 0.2769])
            }
            DatasetPreset::EspGame => {
                Normalization::new([0.5377, 0.5087, 0.4845], [0.3244, 0.3181, 0.3254])
            }
        }
    }
}

impl fmt::Display for DatasetPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.folder_name())
    }
}

impl FromStr for DatasetPreset {
    type Err = DataError;

    /// Accepts the folder names (`Corel-5k`, `IAPR-TC-12`, `ESP-Game`), case-insensitively and
    /// with or without the dashes (`corel5k`, `iaprtc12`, `espgame`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key: String = s
            .chars()
            .filter(|c| !matches!(c, '-' | '_' | ' '))
            .map(|c| c.to_ascii_lowercase())
            .collect();
        match key.as_str() {
            "corel5k" => Ok(DatasetPreset::Corel5k),
            "iaprtc12" => Ok(DatasetPreset::IaprTc12),
            "espgame" => Ok(DatasetPreset::EspGame),
            _ => Err(DataError::UnknownDataSet(s.to_string())),
        }
    }
}
