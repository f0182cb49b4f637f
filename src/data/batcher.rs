//! A Burn `Batcher`: resize, flip, normalise and stack decoded images.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use burn::config::Config;
use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{backend::Backend, Tensor, TensorData};
use fast_image_resize as fr;
use rayon::prelude::*;

use super::decode::resize_into;
use super::{AnnotationBatch, AnnotationItem, Normalization};

/// Configuration of an [`AnnotationBatcher`].
///
/// ```
/// use aia::data::{AnnotationBatcherConfig, DatasetPreset};
/// let train = AnnotationBatcherConfig::new(DatasetPreset::Corel5k.normalization())
///     .with_flips(true)
///     .with_seed(7)
///     .init();
/// let eval = AnnotationBatcherConfig::new(DatasetPreset::Corel5k.normalization())
///     .with_image_size(224)
///     .init();
/// assert_eq!(eval.image_size(), 224);
/// # let _ = train;
/// ```
#[derive(Config, Debug)]
pub struct AnnotationBatcherConfig {
    /// Per-channel mean and std the `[0, 1]` pixels are normalised with.
    pub normalization: Normalization,
    /// Side of the square images of a batch, in pixels.
    #[config(default = 448)]
    pub image_size: usize,
    /// Random horizontal and vertical flips (each with probability 1/2), for training.
    #[config(default = false)]
    pub flips: bool,
    /// Seed of the flips. An item's flips are a function of (seed, epoch, item index) only, so
    /// they do not depend on worker threads, batch composition or shuffling.
    #[config(default = 0)]
    pub seed: u64,
}

impl AnnotationBatcherConfig {
    /// The batcher.
    pub fn init(&self) -> AnnotationBatcher {
        AnnotationBatcher {
            size: self.image_size.clamp(1, u32::MAX as usize) as u32,
            lut: channel_luts(&self.normalization),
            flips: self.flips,
            seed: self.seed,
            epoch: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// Turns [`AnnotationItem`]s into an [`AnnotationBatch`]: each image is resized to `SxS` with an
/// antialiased bilinear filter (as torchvision's `Resize((S, S))`), flipped at random in training
/// mode, scaled to `[0, 1]`, normalised, and stacked to `[B, 3, S, S]`; targets to `[B, C]`.
///
/// The items of a batch are processed in parallel (rayon). Clones share the epoch counter, so
/// keep a clone of the batcher given to `DataLoaderBuilder` and call
/// [`set_epoch`](Self::set_epoch) before each epoch's `iter()` to get new, reproducible flips.
#[derive(Debug, Clone)]
pub struct AnnotationBatcher {
    size: u32,
    /// `lut[c][v]` = `(v / 255 - mean[c]) / std[c]`.
    lut: Arc<[[f32; 256]; 3]>,
    flips: bool,
    seed: u64,
    epoch: Arc<AtomicU64>,
}

impl AnnotationBatcher {
    /// Side of the output images.
    pub fn image_size(&self) -> usize {
        self.size as usize
    }

    /// Sets the epoch the flips are drawn for (shared by all clones of this batcher). Call it
    /// before the epoch's `DataLoader::iter()`, not during.
    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::SeqCst);
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Whether the item of index `index` is flipped (horizontally, vertically) in the current
    /// epoch; `(false, false)` when flips are off.
    pub fn flips_for(&self, index: usize) -> (bool, bool) {
        if !self.flips {
            return (false, false);
        }
        let h = splitmix64(splitmix64(splitmix64(self.seed) ^ self.epoch()) ^ index as u64);
        (h & 1 == 1, h & 2 == 2)
    }

    /// Resizes, flips and normalises one image into `out` (`3 * S * S` values, CHW).
    fn write_item(
        &self,
        resizer: &mut fr::Resizer,
        scratch: &mut [u8],
        item: &AnnotationItem,
        out: &mut [f32],
    ) {
        let s = self.size as usize;
        resize_into(resizer, &item.image, self.size, self.size, scratch);
        let (flip_h, flip_v) = self.flips_for(item.index);
        let plane = s * s;
        let (r, rest) = out.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        for y in 0..s {
            let sy = if flip_v { s - 1 - y } else { y };
            let src = &scratch[sy * s * 3..(sy + 1) * s * 3];
            let row = y * s..(y + 1) * s;
            let (r, g, b) = (&mut r[row.clone()], &mut g[row.clone()], &mut b[row]);
            if flip_h {
                for (x, px) in src.chunks_exact(3).rev().enumerate() {
                    r[x] = self.lut[0][px[0] as usize];
                    g[x] = self.lut[1][px[1] as usize];
                    b[x] = self.lut[2][px[2] as usize];
                }
            } else {
                for (x, px) in src.chunks_exact(3).enumerate() {
                    r[x] = self.lut[0][px[0] as usize];
                    g[x] = self.lut[1][px[1] as usize];
                    b[x] = self.lut[2][px[2] as usize];
                }
            }
        }
    }
}

impl<B: Backend> Batcher<B, AnnotationItem, AnnotationBatch<B>> for AnnotationBatcher {
    /// Stacks the items. All items must have targets of the same length (they do when they come
    /// from one [`AnnotationDataset`](super::AnnotationDataset)).
    fn batch(&self, items: Vec<AnnotationItem>, device: &B::Device) -> AnnotationBatch<B> {
        let n = items.len();
        let s = self.size as usize;
        let per_image = 3 * s * s;
        let mut images = vec![0f32; n * per_image];
        images
            .par_chunks_mut(per_image)
            .zip(items.par_iter())
            .for_each_init(
                || (fr::Resizer::new(), vec![0u8; per_image]),
                |(resizer, scratch), (out, item)| self.write_item(resizer, scratch, item, out),
            );
        let classes = items.first().map_or(0, |i| i.target.len());
        let mut targets = Vec::with_capacity(n * classes);
        for item in &items {
            assert_eq!(
                item.target.len(),
                classes,
                "{}: target of {} columns in a batch of {classes}-column targets",
                item.path.display(),
                item.target.len()
            );
            targets.extend_from_slice(&item.target);
        }
        AnnotationBatch {
            images: Tensor::from_data(TensorData::new(images, [n, 3, s, s]), device),
            targets: Tensor::from_data(TensorData::new(targets, [n, classes]), device),
        }
    }
}

fn channel_luts(norm: &Normalization) -> Arc<[[f32; 256]; 3]> {
    let mut lut = [[0f32; 256]; 3];
    for (c, table) in lut.iter_mut().enumerate() {
        for (v, x) in table.iter_mut().enumerate() {
            *x = (v as f32 / 255.0 - norm.mean[c]) / norm.std[c];
        }
    }
    Arc::new(lut)
}

/// SplitMix64's finaliser: a fixed, well-mixed hash, so flips are stable across `rand` versions.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
