//! A seeded validation hold-out of a split, stratified over its labels.

use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::{AnnotationSample, AnnotationSplit, DataError};

/// Which side of a hold-out a sample goes to.
const KEPT: usize = 0;
const HELD_OUT: usize = 1;

impl AnnotationSplit {
    /// Splits off `fraction` of the samples (rounded) as a validation split, returning `(kept,
    /// held_out)`, both in file order. The choice is seeded and stratified over the labels as
    /// iterative stratification does (Sechidis, Tsoumakas & Vlahavas, 2011): the rarest label
    /// still unplaced is placed first, each of its samples going to the side that lacks that
    /// label most, so that every label, rare ones included, is held out in about `fraction` of
    /// its samples.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use aia::data::{AnnotationSample, AnnotationSplit, Vocabulary};
    /// let vocabulary = Arc::new(Vocabulary::from_labels(vec!["a".into(), "b".into()], "v".as_ref())?);
    /// let samples = (0..20)
    ///     .map(|i| AnnotationSample { image_name: format!("{i}.jpg"), labels: vec![i % 2] })
    ///     .collect();
    /// let split = AnnotationSplit::new("train.json", samples, vocabulary);
    /// let (kept, held_out) = split.hold_out(0.2, 1)?;
    /// assert_eq!((kept.len(), held_out.len()), (16, 4));
    /// # Ok::<(), aia::data::DataError>(())
    /// ```
    ///
    /// # Errors
    /// [`DataError::InvalidHoldOut`] when `fraction` is not in (0, 1) or leaves a side empty.
    pub fn hold_out(&self, fraction: f64, seed: u64) -> Result<(Self, Self), DataError> {
        let n = self.len();
        let target = (n as f64 * fraction).round() as usize;
        if !(fraction > 0.0 && fraction < 1.0) || target == 0 || target == n {
            return Err(DataError::InvalidHoldOut {
                path: self.path().to_path_buf(),
                message: format!(
                    "a validation fraction of {fraction} of its {n} samples leaves a side empty; \
                     give a fraction in (0, 1)"
                ),
            });
        }
        let side = stratify(self.samples(), self.vocabulary().len(), target, seed);
        let pick = |which: usize| {
            self.samples()
                .iter()
                .zip(&side)
                .filter(|(_, &s)| s == which)
                .map(|(sample, _)| sample.clone())
                .collect()
        };
        let name = self
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let named = |what: &str| self.path().with_file_name(format!("{name} ({what})"));
        Ok((
            Self::new(named("kept"), pick(KEPT), self.vocabulary().clone()),
            Self::new(
                named("validation"),
                pick(HELD_OUT),
                self.vocabulary().clone(),
            ),
        ))
    }
}

/// The side of each sample: `held_out` samples go to [`HELD_OUT`], by iterative stratification.
fn stratify(
    samples: &[AnnotationSample],
    num_labels: usize,
    held_out: usize,
    seed: u64,
) -> Vec<usize> {
    let n = samples.len();
    // Samples in a seeded order, so that ties fall differently under another seed.
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let mut with_label = vec![Vec::new(); num_labels];
    for &i in &order {
        for &label in &samples[i].labels {
            with_label[label].push(i);
        }
    }
    let mut state = Stratification::new(samples, num_labels, held_out);
    while let Some(label) = state.rarest_unplaced() {
        for &i in &with_label[label] {
            if state.side[i] == UNPLACED {
                let side = state.neediest(Some(label));
                state.place(i, side);
            }
        }
    }
    // Samples without labels fill what each side still wants.
    for &i in &order {
        if state.side[i] == UNPLACED {
            let side = state.neediest(None);
            state.place(i, side);
        }
    }
    state.side
}

/// A sample not yet given a side.
const UNPLACED: usize = usize::MAX;

/// What iterative stratification keeps track of.
struct Stratification<'a> {
    samples: &'a [AnnotationSample],
    /// Per label, its samples not yet placed.
    unplaced: Vec<usize>,
    /// Per side, how many samples of each label it still wants.
    wanted: [Vec<f64>; 2],
    /// Per side, how many samples it still wants in all.
    wanted_total: [f64; 2],
    /// Each sample's side, or [`UNPLACED`].
    side: Vec<usize>,
}

impl<'a> Stratification<'a> {
    fn new(samples: &'a [AnnotationSample], num_labels: usize, held_out: usize) -> Self {
        let n = samples.len();
        let ratio = held_out as f64 / n as f64;
        let mut unplaced = vec![0; num_labels];
        for sample in samples {
            for &label in &sample.labels {
                unplaced[label] += 1;
            }
        }
        let share = |r: f64| unplaced.iter().map(|&c| c as f64 * r).collect();
        Self {
            samples,
            wanted: [share(1.0 - ratio), share(ratio)],
            unplaced,
            wanted_total: [(n - held_out) as f64, held_out as f64],
            side: vec![UNPLACED; n],
        }
    }

    fn rarest_unplaced(&self) -> Option<usize> {
        (0..self.unplaced.len())
            .filter(|&l| self.unplaced[l] > 0)
            .min_by_key(|&l| self.unplaced[l])
    }

    /// The side that wants `label` most, then the one that wants most samples (kept on a tie);
    /// a side that is full takes no more, so the hold-out has exactly the size asked for.
    fn neediest(&self, label: Option<usize>) -> usize {
        if self.wanted_total[HELD_OUT] < 0.5 {
            return KEPT;
        }
        if self.wanted_total[KEPT] < 0.5 {
            return HELD_OUT;
        }
        let by = |wanted: [f64; 2]| {
            if wanted[HELD_OUT] > wanted[KEPT] {
                Some(HELD_OUT)
            } else if wanted[HELD_OUT] < wanted[KEPT] {
                Some(KEPT)
            } else {
                None
            }
        };
        label
            .and_then(|l| by([self.wanted[KEPT][l], self.wanted[HELD_OUT][l]]))
            .or_else(|| by(self.wanted_total))
            .unwrap_or(KEPT)
    }

    fn place(&mut self, i: usize, side: usize) {
        self.side[i] = side;
        self.wanted_total[side] -= 1.0;
        for &label in &self.samples[i].labels {
            self.wanted[side][label] -= 1.0;
            self.unplaced[label] -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::data::Vocabulary;

    /// 200 samples over 6 labels of frequencies from 3 to 120, some with none.
    fn split() -> AnnotationSplit {
        let labels = (0..6).map(|l| format!("w{l}")).collect();
        let vocabulary = Arc::new(Vocabulary::from_labels(labels, "v".as_ref()).unwrap());
        let samples = (0..200)
            .map(|i| AnnotationSample {
                image_name: format!("{i}.jpg"),
                labels: [(0, 120), (1, 60), (2, 30), (3, 15), (4, 6), (5, 3)]
                    .iter()
                    .filter(|&&(l, every)| (i * 7 + l) % (200 / every) == 0)
                    .map(|&(l, _)| l)
                    .collect(),
            })
            .collect();
        AnnotationSplit::new("train.json", samples, vocabulary)
    }

    fn counts(split: &AnnotationSplit) -> Vec<usize> {
        let mut counts = vec![0; 6];
        for sample in split.samples() {
            for &l in &sample.labels {
                counts[l] += 1;
            }
        }
        counts
    }

    #[test]
    fn every_label_is_held_out_in_proportion() {
        let all = split();
        let (kept, held) = all.hold_out(0.25, 3).unwrap();
        assert_eq!((kept.len(), held.len()), (150, 50));
        // A partition, each side in file order.
        let mut names: Vec<&str> = kept
            .samples()
            .iter()
            .chain(held.samples())
            .map(|s| s.image_name.as_str())
            .collect();
        names.sort_unstable();
        let mut expected: Vec<&str> = all
            .samples()
            .iter()
            .map(|s| s.image_name.as_str())
            .collect();
        expected.sort_unstable();
        assert_eq!(names, expected);
        for (label, (&h, &a)) in counts(&held).iter().zip(&counts(&all)).enumerate() {
            let want = a as f64 * 0.25;
            assert!(
                (h as f64 - want).abs() <= 1.0,
                "label {label}: {h} of {a} held out"
            );
        }
    }

    #[test]
    fn the_seed_decides_and_repeats() {
        let all = split();
        let names = |s: &AnnotationSplit| -> Vec<String> {
            s.samples().iter().map(|s| s.image_name.clone()).collect()
        };
        let a = names(&all.hold_out(0.25, 3).unwrap().1);
        assert_eq!(a, names(&all.hold_out(0.25, 3).unwrap().1));
        assert_ne!(a, names(&all.hold_out(0.25, 4).unwrap().1));
    }

    #[test]
    fn fractions_that_empty_a_side_are_refused() {
        let all = split();
        for fraction in [0.0, 1.0, -0.5, 1e-4, 0.9999, f64::NAN] {
            let err = all.hold_out(fraction, 1).unwrap_err().to_string();
            assert!(
                err.contains("train.json") && err.contains("fraction"),
                "{err}"
            );
        }
    }
}
