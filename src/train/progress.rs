//! Live progress of a run: what the loop reports, and a printer for it.

use std::io::Write;
use std::time::{Duration, Instant};

use super::EpochRecord;

/// The state of the run after a training batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchUpdate {
    /// The epoch (1-based).
    pub epoch: usize,
    /// The number of epochs of the run.
    pub epochs: usize,
    /// The batch just done (1-based).
    pub batch: usize,
    /// The number of batches of the epoch.
    pub batches: usize,
    /// The mean training loss of the epoch so far.
    pub loss: f64,
    /// The learning rate of this batch's step.
    pub lr: f64,
    /// Adam's beta1 of this batch's step.
    pub momentum: f64,
    /// Training throughput of the epoch so far.
    pub images_per_second: f64,
    /// Time since the epoch started.
    pub elapsed: Duration,
    /// Estimated time to the end of the epoch's training batches.
    pub epoch_eta: Duration,
    /// Estimated time to the end of the run (training and validation of every epoch left).
    pub run_eta: Duration,
}

/// Receives the progress of a run. Every method has a default that ignores it.
pub trait Progress {
    /// After every training batch.
    fn batch(&mut self, update: &BatchUpdate) {
        let _ = update;
    }
    /// Before the validation pass of an epoch, with its number of images.
    fn validation_started(&mut self, epoch: usize, images: usize) {
        let _ = (epoch, images);
    }
    /// After each epoch's measurement; `best_epoch` is the best so far (possibly this one).
    fn epoch_done(&mut self, record: &EpochRecord, epochs: usize, best_epoch: usize) {
        let _ = (record, epochs, best_epoch);
    }
    /// Notices: resuming, files written, warnings.
    fn message(&mut self, text: &str) {
        let _ = text;
    }
}

/// Reports nothing (tests, libraries).
#[derive(Debug, Clone, Copy, Default)]
pub struct SilentProgress;

impl Progress for SilentProgress {}

/// Prints progress lines to a writer, batch lines at most once per `min_interval` (plus the last
/// batch of each epoch), so logs stay readable whether a batch takes milliseconds or minutes.
///
/// ```text
/// epoch 3/40 batch 120/157 loss 0.04121 lr 9.87e-5 beta1 0.851 | 61.3 img/s | epoch ETA 0:00:36 | run ETA 1:23:45
/// ```
#[derive(Debug)]
pub struct WriterProgress<W: Write> {
    out: W,
    min_interval: Duration,
    last_print: Option<Instant>,
}

/// [`WriterProgress`] on standard error, the default of [`Trainer`](super::Trainer).
pub type StderrProgress = WriterProgress<std::io::Stderr>;

impl Default for StderrProgress {
    fn default() -> Self {
        Self::new(std::io::stderr(), Duration::from_secs(2))
    }
}

impl<W: Write> WriterProgress<W> {
    /// A printer to `out`, batch lines at most every `min_interval` (zero: every batch).
    pub fn new(out: W, min_interval: Duration) -> Self {
        Self {
            out,
            min_interval,
            last_print: None,
        }
    }

    /// The writer, e.g. to read what a test printed.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// `h:mm:ss`.
pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    format!(
        "{}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

impl<W: Write> Progress for WriterProgress<W> {
    fn batch(&mut self, u: &BatchUpdate) {
        let due = self
            .last_print
            .is_none_or(|last| last.elapsed() >= self.min_interval);
        if !due && u.batch != u.batches {
            return;
        }
        self.last_print = Some(Instant::now());
        // Progress is best effort: a closed stderr must not stop training.
        let _ = writeln!(
            self.out,
            "epoch {}/{} batch {}/{} loss {:.5} lr {:.3e} beta1 {:.3} | {:.1} img/s | epoch ETA {} | run ETA {}",
            u.epoch,
            u.epochs,
            u.batch,
            u.batches,
            u.loss,
            u.lr,
            u.momentum,
            u.images_per_second,
            format_duration(u.epoch_eta),
            format_duration(u.run_eta),
        );
    }

    fn validation_started(&mut self, epoch: usize, images: usize) {
        let _ = writeln!(self.out, "epoch {epoch}: validating on {images} images");
    }

    fn epoch_done(&mut self, r: &EpochRecord, epochs: usize, best_epoch: usize) {
        let m = &r.metrics;
        let _ = writeln!(
            self.out,
            "epoch {}/{} done in {}: train loss {:.5} val loss {:.5} | per-class P {:.3} R {:.3} F1 {:.3} N+ {} | overall P {:.3} R {:.3} F1 {:.3} | best epoch {}",
            r.epoch,
            epochs,
            format_duration(Duration::from_secs_f64(r.seconds.max(0.0))),
            r.train_loss,
            r.val_loss,
            m.per_class.precision,
            m.per_class.recall,
            m.per_class.f1,
            m.n_plus,
            m.overall.precision,
            m.overall.recall,
            m.overall.f1,
            best_epoch,
        );
        if let Some(ema) = &r.ema {
            let e = &ema.metrics;
            let _ = writeln!(
                self.out,
                "    EMA weights: val loss {:.5} | per-class P {:.3} R {:.3} F1 {:.3} N+ {} | overall P {:.3} R {:.3} F1 {:.3}",
                ema.val_loss,
                e.per_class.precision,
                e.per_class.recall,
                e.per_class.f1,
                e.n_plus,
                e.overall.precision,
                e.overall.recall,
                e.overall.f1,
            );
        }
    }

    fn message(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::AnnotationMetrics;
    use crate::train::EmaRecord;

    fn update(batch: usize) -> BatchUpdate {
        BatchUpdate {
            epoch: 2,
            epochs: 40,
            batch,
            batches: 10,
            loss: 0.5,
            lr: 1e-4,
            momentum: 0.9,
            images_per_second: 12.0,
            elapsed: Duration::from_secs(3),
            epoch_eta: Duration::from_secs(3725),
            run_eta: Duration::from_secs(90061),
        }
    }

    #[test]
    fn durations_read_as_hours_minutes_seconds() {
        assert_eq!(format_duration(Duration::from_secs(0)), "0:00:00");
        assert_eq!(format_duration(Duration::from_secs(3725)), "1:02:05");
        assert_eq!(format_duration(Duration::from_secs(90061)), "25:01:01");
    }

    #[test]
    fn batch_lines_are_rate_limited_but_the_last_batch_always_prints() {
        let mut progress = WriterProgress::new(Vec::new(), Duration::from_secs(3600));
        for batch in 1..=10 {
            progress.batch(&update(batch));
        }
        let text = String::from_utf8(progress.into_inner()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("epoch 2/40 batch 1/10 loss 0.50000 lr 1.000e-4"));
        assert!(lines[1].contains("batch 10/10"));
        assert!(lines[1].contains("epoch ETA 1:02:05 | run ETA 25:01:01"));
    }

    fn record(f1: f64, ema_f1: Option<f64>) -> EpochRecord {
        let metrics = |f1| {
            let mut m = AnnotationMetrics::default();
            m.per_class.f1 = f1;
            m
        };
        EpochRecord {
            epoch: 3,
            train_loss: 0.25,
            val_loss: 0.5,
            learning_rate: 1e-4,
            momentum: 0.9,
            metrics: metrics(f1),
            ema: ema_f1.map(|f1| EmaRecord {
                val_loss: 0.125,
                metrics: metrics(f1),
            }),
            seconds: 61.0,
            images_per_second: 10.0,
        }
    }

    #[test]
    fn the_epoch_line_shows_the_ema_weights_when_there_are_some() {
        let mut progress = WriterProgress::new(Vec::new(), Duration::ZERO);
        progress.epoch_done(&record(0.5, None), 8, 3);
        progress.epoch_done(&record(0.5, Some(0.625)), 8, 3);
        let text = String::from_utf8(progress.into_inner()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with("epoch 3/8 done in 0:01:01: train loss 0.25000 val loss 0.50000")
        );
        assert!(lines[0].contains("F1 0.500") && lines[0].ends_with("best epoch 3"));
        assert!(lines[1].starts_with("epoch 3/8 done"));
        assert!(
            lines[2].contains("EMA weights: val loss 0.12500"),
            "{}",
            lines[2]
        );
        assert!(lines[2].contains("F1 0.625"), "{}", lines[2]);
    }

    #[test]
    fn a_zero_interval_prints_every_batch() {
        let mut progress = WriterProgress::new(Vec::new(), Duration::ZERO);
        for batch in 1..=10 {
            progress.batch(&update(batch));
        }
        let text = String::from_utf8(progress.into_inner()).unwrap();
        assert_eq!(text.lines().count(), 10);
    }
}
