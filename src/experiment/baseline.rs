use crate::metrics::Thresholds;

/// The frequency baseline: every image gets the `k` labels most frequent in training, where `k`
/// is the mean number of labels per training image, rounded (at least 1).
///
/// Returns row-major `[num_images, C]` scores (each label's training frequency) and the global
/// threshold that selects exactly those `k` labels (between the `k`-th and `k+1`-th frequency).
/// A trained model that does not beat it on per-class F1 and N+ has learnt nothing about the
/// images.
///
/// ```
/// // 3 training images over 3 labels: frequencies 1, 2/3, 0; 5/3 labels per image -> k = 2.
/// let train = [1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0];
/// let (scores, thresholds) = aia::experiment::frequency_baseline(&train, 3, 1);
/// assert_eq!(scores.len(), 3);
/// let t = thresholds.get(0);
/// assert!(scores[0] > t && scores[1] > t && scores[2] <= t);
/// ```
pub fn frequency_baseline(
    train_targets: &[f32],
    num_classes: usize,
    num_images: usize,
) -> (Vec<f32>, Thresholds) {
    let rows = train_targets.len().checked_div(num_classes).unwrap_or(0);
    let mut frequency = vec![0f32; num_classes];
    for row in train_targets.chunks_exact(num_classes.max(1)) {
        for (f, &y) in frequency.iter_mut().zip(row) {
            *f += y;
        }
    }
    let per_image: f32 = frequency.iter().sum::<f32>() / rows.max(1) as f32;
    frequency.iter_mut().for_each(|f| *f /= rows.max(1) as f32);
    let k = (per_image.round() as usize).clamp(1, num_classes.max(1));
    let mut sorted = frequency.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let threshold = match (sorted.get(k - 1), sorted.get(k)) {
        (Some(&kth), Some(&next)) => (kth + next) / 2.0,
        (Some(&kth), None) => kth / 2.0,
        _ => 0.5,
    };
    let scores = frequency
        .iter()
        .copied()
        .cycle()
        .take(num_images * num_classes)
        .collect();
    (scores, Thresholds::Global(threshold))
}
