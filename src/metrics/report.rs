//! The metrics report: the paper's table row, a per-label table, JSON.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{MetricsError, EPSILON};

/// Per-label counts after thresholding.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LabelCounts {
    pub true_positives: u64,
    pub predicted: u64,
    pub actual: u64,
}

/// A precision, a recall and the F1 of the two (`2PR / (P + R + e)`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PrecisionRecallF1 {
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1 of `precision` and `recall`.
    pub f1: f64,
}

impl PrecisionRecallF1 {
    /// Pairs `precision` and `recall` with their F1, the paper's way.
    pub fn new(precision: f64, recall: f64) -> Self {
        Self {
            precision,
            recall,
            f1: 2.0 * (precision * recall / (precision + recall + EPSILON)),
        }
    }
}

/// One row of the per-label table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelMetrics {
    /// Column of the label.
    pub index: usize,
    /// Name of the label, once a vocabulary is attached.
    pub label: Option<String>,
    /// Samples where the label is present.
    pub support: u64,
    /// Samples where the label is predicted.
    pub predicted: u64,
    /// Samples where it is both.
    pub true_positives: u64,
    /// `tp / (predicted + e)`.
    pub precision: f64,
    /// `tp / (support + e)`.
    pub recall: f64,
    /// `2PR / (P + R + e)`.
    pub f1: f64,
    /// Threshold used for the label.
    pub threshold: f32,
    /// Average precision of the label's scores; `None` without positives.
    pub average_precision: Option<f64>,
}

/// The field's annotation metrics of one set of scores: what [`measure`](super::measure)
/// computes, what the training loop records for every epoch
/// ([`train::Measure`](crate::train::Measure)), and each row of an evaluation's table.
///
/// JSON written before the overall averages were named `overall` (`per_image`) and before the
/// training loop recorded this type (no counts, mAP under `extra`) still loads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "MetricsRecord")]
pub struct AnnotationMetrics {
    /// Number of samples (images); 0 when not measured.
    pub num_samples: usize,
    /// Number of labels; 0 when not measured.
    pub num_labels: usize,
    /// Per-class (label-averaged, macro) precision, recall and F1: the paper's P, R, F1. The
    /// best epoch of a training is the one with the best `per_class.f1`.
    pub per_class: PrecisionRecallF1,
    /// Overall (micro-averaged) precision, recall and F1: true positives, predictions and
    /// positives summed over every image and label before dividing (the field's OP, OR, OF1).
    pub overall: PrecisionRecallF1,
    /// N+: labels with at least one true positive.
    pub n_plus: usize,
    /// Mean average precision over the labels that have a positive; `None` if none has (or
    /// when not measured).
    pub mean_average_precision: Option<f64>,
    /// One entry per label, in label order; empty when left out (see
    /// [`without_per_label`](Self::without_per_label)).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_label: Vec<LabelMetrics>,
    /// Anything else a custom [`train::Measure`](crate::train::Measure) reports, by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, f64>,
}

/// [`AnnotationMetrics`] as written by any version of the crate.
#[derive(Deserialize)]
struct MetricsRecord {
    #[serde(default)]
    num_samples: usize,
    #[serde(default)]
    num_labels: usize,
    per_class: PrecisionRecallF1,
    #[serde(alias = "per_image")]
    overall: PrecisionRecallF1,
    n_plus: usize,
    #[serde(default)]
    mean_average_precision: Option<f64>,
    #[serde(default)]
    per_label: Vec<LabelMetrics>,
    #[serde(default)]
    extra: BTreeMap<String, f64>,
}

/// The key under which the training loop's records kept the mAP before it had its own field.
const OLD_MAP_KEY: &str = "mean_average_precision";

impl From<MetricsRecord> for AnnotationMetrics {
    fn from(record: MetricsRecord) -> Self {
        let mut extra = record.extra;
        let mean_average_precision = record
            .mean_average_precision
            .or_else(|| extra.remove(OLD_MAP_KEY));
        Self {
            num_samples: record.num_samples,
            num_labels: record.num_labels,
            per_class: record.per_class,
            overall: record.overall,
            n_plus: record.n_plus,
            mean_average_precision,
            per_label: record.per_label,
            extra,
        }
    }
}

impl AnnotationMetrics {
    pub(crate) fn from_counts(
        num_samples: usize,
        counts: &[LabelCounts],
        thresholds: &[f32],
        average_precisions: &[Option<f64>],
    ) -> Self {
        let per_label: Vec<LabelMetrics> = counts
            .iter()
            .zip(thresholds)
            .zip(average_precisions)
            .enumerate()
            .map(|(index, ((c, &threshold), &average_precision))| {
                let tp = c.true_positives as f64;
                let precision = tp / (c.predicted as f64 + EPSILON);
                let recall = tp / (c.actual as f64 + EPSILON);
                LabelMetrics {
                    index,
                    label: None,
                    support: c.actual,
                    predicted: c.predicted,
                    true_positives: c.true_positives,
                    precision,
                    recall,
                    f1: PrecisionRecallF1::new(precision, recall).f1,
                    threshold,
                    average_precision,
                }
            })
            .collect();
        let n = counts.len() as f64;
        let per_class = PrecisionRecallF1::new(
            per_label.iter().map(|l| l.precision).sum::<f64>() / n,
            per_label.iter().map(|l| l.recall).sum::<f64>() / n,
        );
        let sum = |f: fn(&LabelCounts) -> u64| counts.iter().map(f).sum::<u64>() as f64;
        let tp = sum(|c| c.true_positives);
        let overall = PrecisionRecallF1::new(
            tp / (sum(|c| c.predicted) + EPSILON),
            tp / (sum(|c| c.actual) + EPSILON),
        );
        let aps: Vec<f64> = average_precisions.iter().flatten().copied().collect();
        Self {
            num_samples,
            num_labels: counts.len(),
            per_class,
            overall,
            n_plus: counts.iter().filter(|c| c.true_positives > 0).count(),
            mean_average_precision: (!aps.is_empty())
                .then(|| aps.iter().sum::<f64>() / aps.len() as f64),
            per_label,
            extra: BTreeMap::new(),
        }
    }

    /// The same metrics without the per-label table, as the training loop records each epoch's.
    pub fn without_per_label(mut self) -> Self {
        self.per_label = Vec::new();
        self
    }

    /// Names the labels after `vocabulary` (in label order); `None` leaves them as they are.
    pub fn with_vocabulary(mut self, vocabulary: Option<&[String]>) -> Result<Self, MetricsError> {
        if let Some(vocabulary) = vocabulary {
            if vocabulary.len() != self.num_labels {
                return Err(MetricsError::VocabularyLength {
                    expected: self.num_labels,
                    got: vocabulary.len(),
                });
            }
            for (l, name) in self.per_label.iter_mut().zip(vocabulary) {
                l.label = Some(name.clone());
            }
        }
        Ok(self)
    }

    /// The per-label table, printable with `{}`.
    pub fn label_table(&self) -> LabelTable<'_> {
        LabelTable(self)
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> Result<String, MetricsError> {
        Ok(serde_json::to_string_pretty(self)?)
    }
}

fn fmt_ap(ap: Option<f64>) -> String {
    ap.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"))
}

/// The paper's table row: per-class `P R F1 N+`, then overall `P R F1` and mAP.
impl fmt::Display for AnnotationMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (c, i) = (&self.per_class, &self.overall);
        write!(
            f,
            "P {:.3}  R {:.3}  F1 {:.3}  N+ {}  |  overall P {:.3}  R {:.3}  F1 {:.3}  |  mAP {}",
            c.precision,
            c.recall,
            c.f1,
            self.n_plus,
            i.precision,
            i.recall,
            i.f1,
            fmt_ap(self.mean_average_precision)
        )
    }
}

/// The per-label table of an [`AnnotationMetrics`] (see [`AnnotationMetrics::label_table`]).
pub struct LabelTable<'a>(&'a AnnotationMetrics);

impl fmt::Display for LabelTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .0
            .per_label
            .iter()
            .map(|l| l.label.clone().unwrap_or_else(|| format!("#{}", l.index)))
            .collect();
        let w = names
            .iter()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(0)
            .max(5);
        writeln!(
            f,
            "{:<w$}  {:>7}  {:>7}  {:>7}  {:>6}  {:>6}  {:>6}  {:>6}  {:>9}",
            "label", "support", "pred", "tp", "P", "R", "F1", "AP", "threshold"
        )?;
        for (l, name) in self.0.per_label.iter().zip(&names) {
            writeln!(
                f,
                "{:<w$}  {:>7}  {:>7}  {:>7}  {:>6.3}  {:>6.3}  {:>6.3}  {:>6}  {:>9.4}",
                name,
                l.support,
                l.predicted,
                l.true_positives,
                l.precision,
                l.recall,
                l.f1,
                fmt_ap(l.average_precision),
                l.threshold
            )?;
        }
        Ok(())
    }
}

/// Several named [`AnnotationMetrics`] (e.g. thresholds 0.5, MCC grid, MCC exact) lined up like
/// the paper's table.
///
/// ```
/// use aia::metrics::{measure, MetricsTable, Thresholds};
///
/// let (scores, targets) = ([0.9, 0.2, 0.3, 0.7], [1.0, 0.0, 0.0, 1.0]);
/// let mut table = MetricsTable::default();
/// for t in [0.5, 0.8] {
///     let m = measure(&scores, &targets, 2, &Thresholds::Global(t)).unwrap();
///     table.push(format!("threshold {t}"), m);
/// }
/// println!("{table}");
/// assert_eq!(table.rows().len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsTable {
    rows: Vec<(String, AnnotationMetrics)>,
}

impl MetricsTable {
    /// Appends a row.
    pub fn push(&mut self, name: impl Into<String>, metrics: AnnotationMetrics) {
        self.rows.push((name.into(), metrics));
    }

    /// The rows, in the order pushed.
    pub fn rows(&self) -> &[(String, AnnotationMetrics)] {
        &self.rows
    }

    /// The table in Markdown, with the paper's columns first.
    pub fn to_markdown(&self) -> String {
        let mut s = String::from(
            "| thresholds | precision | recall | f1-score | N+ | overall P | overall R | overall F1 | mAP |\n\
             | :-- | --: | --: | --: | --: | --: | --: | --: | --: |\n",
        );
        for (name, m) in &self.rows {
            let (c, i) = (&m.per_class, &m.overall);
            s.push_str(&format!(
                "| {name} | {:.3} | {:.3} | {:.3} | {} | {:.3} | {:.3} | {:.3} | {} |\n",
                c.precision,
                c.recall,
                c.f1,
                m.n_plus,
                i.precision,
                i.recall,
                i.f1,
                fmt_ap(m.mean_average_precision)
            ));
        }
        s
    }

    /// The table as pretty-printed JSON.
    pub fn to_json(&self) -> Result<String, MetricsError> {
        Ok(serde_json::to_string_pretty(self)?)
    }
}

impl fmt::Display for MetricsTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self
            .rows
            .iter()
            .map(|(n, _)| n.chars().count())
            .max()
            .unwrap_or(0)
            .max("thresholds".len());
        writeln!(
            f,
            "{:<w$} | {:>6} {:>6} {:>6} {:>4} | {:>6} {:>6} {:>6} | {:>6}",
            "thresholds", "P", "R", "F1", "N+", "OP", "OR", "OF1", "mAP"
        )?;
        writeln!(f, "{:-<w$}-+-{:-<27}-+-{:-<20}-+-{:-<6}", "", "", "", "")?;
        for (name, m) in &self.rows {
            let (c, i) = (&m.per_class, &m.overall);
            writeln!(
                f,
                "{:<w$} | {:>6.3} {:>6.3} {:>6.3} {:>4} | {:>6.3} {:>6.3} {:>6.3} | {:>6}",
                name,
                c.precision,
                c.recall,
                c.f1,
                m.n_plus,
                i.precision,
                i.recall,
                i.f1,
                fmt_ap(m.mean_average_precision)
            )?;
        }
        Ok(())
    }
}
