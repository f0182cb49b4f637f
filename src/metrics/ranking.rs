//! Per-label rankings: a label's scores split by target, radix-sorted, walked from the top in
//! groups of equal scores. Shared by average precision and the exact MCC thresholds.

use super::ScoreMatrix;

/// Labels ranked together: one pass over the rows reads a whole cache line of each row.
pub(crate) const LABEL_BLOCK: usize = 16;

/// One label's scores split by target, each part sorted ascending.
#[derive(Debug, Clone, Default)]
pub(crate) struct RankedColumn {
    /// Scores of the samples where the label is present.
    pub pos: Vec<f32>,
    /// Scores of the samples where the label is absent.
    pub neg: Vec<f32>,
}

impl RankedColumn {
    /// Whether every score of the label is the same.
    pub fn is_constant(&self) -> bool {
        let lows = self.pos.first().into_iter().chain(self.neg.first());
        let highs = self.pos.last().into_iter().chain(self.neg.last());
        let min = lows.fold(f32::INFINITY, |a, &b| a.min(b));
        let max = highs.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        min == max
    }

    /// The groups of equal scores, highest first.
    pub fn groups(&self) -> Groups<'_> {
        Groups {
            pos: &self.pos,
            neg: &self.neg,
            i: self.pos.len(),
            j: self.neg.len(),
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

/// Ranks labels `labels` (at most [`LABEL_BLOCK`] of them, ideally) of `m`.
pub(crate) fn rank_labels(m: &ScoreMatrix, labels: std::ops::Range<usize>) -> Vec<RankedColumn> {
    let mut columns: Vec<RankedColumn> = labels.clone().map(|_| RankedColumn::default()).collect();
    for r in 0..m.rows {
        let row = r * m.cols;
        let scores = &m.scores[row + labels.start..row + labels.end];
        let targets = &m.targets[row + labels.start..row + labels.end];
        for ((col, &s), &y) in columns.iter_mut().zip(scores).zip(targets) {
            if y != 0.0 {
                col.pos.push(s);
            } else {
                col.neg.push(s);
            }
        }
    }
    for col in &mut columns {
        radsort::sort(&mut col.pos);
        radsort::sort(&mut col.neg);
    }
    columns
}
