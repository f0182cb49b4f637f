//! Per-label thresholds chosen by the Matthews correlation coefficient (issue #5).
