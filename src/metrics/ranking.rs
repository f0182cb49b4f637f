//! Per-label rankings: a label's scores split by target, radix-sorted, walked from the top in
//! groups of equal scores. The split is shared by average precision and the exact MCC
//! thresholds (which sort only what they need).

use super::ScoreMatrix;

/// Labels ranked together: one pass over the rows reads a whole cache line of each row.
pub(crate) const LABEL_BLOCK: usize = 16;

/// One label's scores split by target (each part sorted ascending once ranked).
#[derive(Debug, Clone, Default)]
pub(crate) struct RankedColumn {
    /// Buffer whose first `n_pos` values are the scores of the samples where the label is present.
    pos: Vec<f32>,
    /// Buffer whose first `n_neg` values are the scores of the samples where it is absent.
    neg: Vec<f32>,
    n_pos: usize,
    n_neg: usize,
}

impl RankedColumn {
    /// Scores of the samples where the label is present.
    pub fn pos(&self) -> &[f32] {
        &self.pos[..self.n_pos]
    }

    /// Scores of the samples where the label is present, to sort in place.
    pub fn pos_mut(&mut self) -> &mut [f32] {
        &mut self.pos[..self.n_pos]
    }

    /// Scores of the samples where the label is absent.
    pub fn neg(&self) -> &[f32] {
        &self.neg[..self.n_neg]
    }

    /// The groups of equal scores, highest first.
    pub fn groups(&self) -> Groups<'_> {
        Groups {
            pos: self.pos(),
            neg: self.neg(),
            i: self.n_pos,
            j: self.n_neg,
        }
    }
}

/// Samples sharing one score value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Group {
    /// The score.
    pub value: f32,
    /// How many of them are positives.
    pub pos: u64,
    /// How many of them are negatives.
    pub neg: u64,
}

/// Iterator over the [`Group`]s of a [`RankedColumn`], from the highest score down.
pub(crate) struct Groups<'a> {
    pos: &'a [f32],
    neg: &'a [f32],
    /// `pos[..i]` are not yet visited.
    i: usize,
    /// `neg[..j]` are not yet visited.
    j: usize,
}

impl Groups<'_> {
    /// The score of the next group, if any.
    pub fn peek_value(&self) -> Option<f32> {
        match (self.i, self.j) {
            (0, 0) => None,
            (0, j) => Some(self.neg[j - 1]),
            (i, 0) => Some(self.pos[i - 1]),
            (i, j) => Some(self.pos[i - 1].max(self.neg[j - 1])),
        }
    }
}

impl Iterator for Groups<'_> {
    type Item = Group;

    fn next(&mut self) -> Option<Group> {
        let value = self.peek_value()?;
        // `==` also groups -0.0 with 0.0, as numpy's `diff` does in scikit-learn's ranking.
        let (i0, j0) = (self.i, self.j);
        while self.i > 0 && self.pos[self.i - 1] == value {
            self.i -= 1;
        }
        while self.j > 0 && self.neg[self.j - 1] == value {
            self.j -= 1;
        }
        Some(Group {
            value,
            pos: (i0 - self.i) as u64,
            neg: (j0 - self.j) as u64,
        })
    }
}

/// Ranks blocks of labels, reusing its buffers from one block to the next (fresh buffers of
/// this size would cost more in page faults than the ranking itself).
#[derive(Debug, Default)]
pub(crate) struct Ranker {
    columns: Vec<RankedColumn>,
}

impl Ranker {
    /// Splits labels `labels` (at most [`LABEL_BLOCK`] of them, ideally) of `m` by target,
    /// unsorted.
    pub fn split(
        &mut self,
        m: &ScoreMatrix,
        labels: std::ops::Range<usize>,
    ) -> &mut [RankedColumn] {
        let width = labels.len();
        self.columns.resize_with(width, RankedColumn::default);
        for col in &mut self.columns[..width] {
            // Grows once; later blocks write over the old values.
            col.pos.resize(m.rows, 0.0);
            col.neg.resize(m.rows, 0.0);
        }
        let columns = &mut self.columns[..width];
        let mut lens = vec![(0usize, 0usize); width];
        for r in 0..m.rows {
            let row = r * m.cols;
            let scores = &m.scores[row + labels.start..row + labels.end];
            let targets = &m.targets[row + labels.start..row + labels.end];
            // Branch-free split: write to both sides, advance the one the target names.
            for (((col, len), &s), &y) in columns.iter_mut().zip(&mut lens).zip(scores).zip(targets)
            {
                let y = (y != 0.0) as usize;
                col.pos[len.0] = s;
                col.neg[len.1] = s;
                len.0 += y;
                len.1 += 1 - y;
            }
        }
        for (col, &(p, n)) in columns.iter_mut().zip(&lens) {
            (col.n_pos, col.n_neg) = (p, n);
        }
        columns
    }

    /// Splits labels `labels` of `m` by target and sorts both parts.
    pub fn rank(&mut self, m: &ScoreMatrix, labels: std::ops::Range<usize>) -> &[RankedColumn] {
        let columns = self.split(m, labels);
        for col in columns.iter_mut() {
            radsort::sort(&mut col.pos[..col.n_pos]);
            radsort::sort(&mut col.neg[..col.n_neg]);
        }
        columns
    }
}

/// Maps every label's sorted ranking through `f`, in label order, in parallel over blocks of
/// labels.
pub(crate) fn map_ranked<T: Send>(
    m: &ScoreMatrix,
    f: impl Fn(&RankedColumn) -> T + Sync,
) -> Vec<T> {
    use rayon::prelude::*;
    (0..m.cols.div_ceil(LABEL_BLOCK))
        .into_par_iter()
        .map_init(Ranker::default, |ranker, b| {
            let labels = b * LABEL_BLOCK..((b + 1) * LABEL_BLOCK).min(m.cols);
            ranker.rank(m, labels).iter().map(&f).collect::<Vec<T>>()
        })
        .flatten_iter()
        .collect()
}

/// Maps every label's unsorted split through `f` (with a scratch value `S` per worker), in
/// label order, in parallel over blocks of labels.
pub(crate) fn map_split<T: Send, S>(
    m: &ScoreMatrix,
    scratch: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut RankedColumn, &mut S) -> T + Sync,
) -> Vec<T> {
    use rayon::prelude::*;
    (0..m.cols.div_ceil(LABEL_BLOCK))
        .into_par_iter()
        .map_init(
            || (Ranker::default(), scratch()),
            |(ranker, scratch), b| {
                let labels = b * LABEL_BLOCK..((b + 1) * LABEL_BLOCK).min(m.cols);
                ranker
                    .split(m, labels)
                    .iter_mut()
                    .map(|col| f(col, scratch))
                    .collect::<Vec<T>>()
            },
        )
        .flatten_iter()
        .collect()
}
