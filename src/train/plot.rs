//! The training curves of a run as a small hand-written SVG: loss, F1 and N+ per epoch.

use std::fmt::Write;

use super::EpochRecord;

const PANEL_WIDTH: f64 = 360.0;
const PANEL_HEIGHT: f64 = 260.0;
const MARGIN_LEFT: f64 = 56.0;
const MARGIN_RIGHT: f64 = 14.0;
const MARGIN_TOP: f64 = 46.0;
const MARGIN_BOTTOM: f64 = 40.0;

/// One line of a panel.
struct Series {
    name: &'static str,
    color: &'static str,
    points: Vec<(f64, f64)>,
}

/// One chart.
struct Panel {
    title: &'static str,
    y_label: &'static str,
    /// A fixed y range (F1 lives in [0, 1]); otherwise fitted to the data.
    y_range: Option<(f64, f64)>,
    /// Whether a fitted y range starts at zero (counts).
    from_zero: bool,
    series: Vec<Series>,
}

/// Round tick positions covering `[low, high]`, about `count` of them.
fn ticks(low: f64, high: f64, count: usize) -> Vec<f64> {
    let span = (high - low).max(f64::MIN_POSITIVE);
    let raw = span / count.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|step| span / step <= count as f64)
        .unwrap_or(10.0 * magnitude);
    let first = (low / step).ceil() as i64;
    let last = (high / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// A tick label without float noise.
fn label(value: f64) -> String {
    let text = format!("{:.4}", value);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

/// The y range of a panel: fixed, or the data's padded by 5 %.
fn y_range(panel: &Panel) -> (f64, f64) {
    if let Some(range) = panel.y_range {
        return range;
    }
    let values = panel
        .series
        .iter()
        .flat_map(|series| series.points.iter().map(|point| point.1));
    let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !low.is_finite() {
        return (0.0, 1.0);
    }
    if panel.from_zero {
        return (0.0, if high > 0.0 { high * 1.1 } else { 1.0 });
    }
    if high - low < 1e-12 {
        let pad = if low == 0.0 { 1.0 } else { low.abs() * 0.1 };
        return (low - pad, high + pad);
    }
    let pad = (high - low) * 0.05;
    (low - pad, high + pad)
}

fn draw_panel(svg: &mut String, panel: &Panel, x_offset: f64, epochs: usize) {
    let plot_w = PANEL_WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let plot_h = PANEL_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let (x_min, x_max) = if epochs <= 1 {
        (0.5, 1.5)
    } else {
        (1.0, epochs as f64)
    };
    let (y_min, y_max) = y_range(panel);
    let x = |v: f64| x_offset + MARGIN_LEFT + (v - x_min) / (x_max - x_min) * plot_w;
    let y = |v: f64| MARGIN_TOP + (1.0 - (v - y_min) / (y_max - y_min)) * plot_h;

    let _ = writeln!(svg, r#"<g class="panel" data-title="{}">"#, panel.title);
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="18" text-anchor="middle" font-weight="bold">{}</text>"#,
        x_offset + MARGIN_LEFT + plot_w / 2.0,
        panel.title
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#888"/>"##,
        x_offset + MARGIN_LEFT,
        MARGIN_TOP,
        plot_w,
        plot_h
    );
    for tick in ticks(y_min, y_max, 5) {
        let ty = y(tick);
        let _ = writeln!(
            svg,
            r##"<line x1="{:.1}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="10">{}</text>"##,
            x_offset + MARGIN_LEFT,
            x_offset + MARGIN_LEFT + plot_w,
            x_offset + MARGIN_LEFT - 4.0,
            ty + 3.5,
            label(tick)
        );
    }
    for tick in ticks(x_min, x_max, 8) {
        if tick.fract() != 0.0 {
            continue;
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#,
            x(tick),
            MARGIN_TOP + plot_h + 14.0,
            label(tick)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11">epoch</text>"#,
        x_offset + MARGIN_LEFT + plot_w / 2.0,
        PANEL_HEIGHT - 6.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11" transform="rotate(-90 {:.1} {:.1})">{}</text>"#,
        x_offset + 12.0,
        MARGIN_TOP + plot_h / 2.0,
        x_offset + 12.0,
        MARGIN_TOP + plot_h / 2.0,
        panel.y_label
    );
    for (index, series) in panel.series.iter().enumerate() {
        let points: Vec<String> = series
            .points
            .iter()
            .map(|&(px, py)| format!("{:.2},{:.2}", x(px), y(py)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<g class="series" data-series="{}" data-points="{}" stroke="{}" fill="{}">"#,
            series.name,
            series.points.len(),
            series.color,
            series.color
        );
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        for &(px, py) in &series.points {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.2}" cy="{:.2}" r="2.5"/>"#,
                x(px),
                y(py)
            );
        }
        // The legend is a row above the frame, so it never hides data.
        let legend_y = MARGIN_TOP - 10.0;
        let legend_x = x_offset + MARGIN_LEFT + 130.0 * index as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke-width="2"/><text x="{:.1}" y="{:.1}" font-size="10" stroke="none">{}</text>"#,
            legend_x,
            legend_y - 3.5,
            legend_x + 16.0,
            legend_y - 3.5,
            legend_x + 20.0,
            legend_y,
            series.name
        );
        let _ = writeln!(svg, "</g>");
    }
    let _ = writeln!(svg, "</g>");
}

/// The points `(epoch, value)` of the finite values of a field.
fn points(epochs: &[EpochRecord], value: impl Fn(&EpochRecord) -> f64) -> Vec<(f64, f64)> {
    epochs
        .iter()
        .map(|record| (record.epoch as f64, value(record)))
        .filter(|point| point.1.is_finite())
        .collect()
}

/// The training curves as an SVG document: three panels side by side, the training and
/// validation loss, the per-class and overall F1, and N+, each against the epoch, with the
/// moving average's validation loss and per-class F1 when the run keeps one. Non-finite values
/// are left out.
pub fn training_curves_svg(epochs: &[EpochRecord], total_epochs: usize) -> String {
    let mut panels = [
        Panel {
            title: "Loss",
            y_label: "loss",
            y_range: None,
            from_zero: false,
            series: vec![
                Series {
                    name: "train loss",
                    color: "#1f77b4",
                    points: points(epochs, |r| r.train_loss),
                },
                Series {
                    name: "validation loss",
                    color: "#ff7f0e",
                    points: points(epochs, |r| r.val_loss),
                },
            ],
        },
        Panel {
            title: "F1",
            y_label: "F1",
            y_range: Some((0.0, 1.0)),
            from_zero: true,
            series: vec![
                Series {
                    name: "per-class F1",
                    color: "#2ca02c",
                    points: points(epochs, |r| r.metrics.per_class.f1),
                },
                Series {
                    name: "overall F1",
                    color: "#9467bd",
                    points: points(epochs, |r| r.metrics.overall.f1),
                },
            ],
        },
        Panel {
            title: "N+",
            y_label: "labels recalled",
            y_range: None,
            from_zero: true,
            series: vec![Series {
                name: "N+",
                color: "#d62728",
                points: points(epochs, |r| r.metrics.n_plus as f64),
            }],
        },
    ];
    if epochs.iter().any(|r| r.ema.is_some()) {
        let ema = |value: fn(&super::EmaRecord) -> f64| {
            points(epochs, move |r| r.ema.as_ref().map_or(f64::NAN, value))
        };
        panels[0].series.push(Series {
            name: "EMA validation loss",
            color: "#8c564b",
            points: ema(|e| e.val_loss),
        });
        panels[1].series.push(Series {
            name: "EMA per-class F1",
            color: "#17becf",
            points: ema(|e| e.metrics.per_class.f1),
        });
    }
    let last_epoch = epochs.iter().map(|r| r.epoch).max().unwrap_or(1);
    let x_epochs = total_epochs.max(last_epoch);
    let width = PANEL_WIDTH * panels.len() as f64;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{PANEL_HEIGHT:.0}" viewBox="0 0 {width:.0} {PANEL_HEIGHT:.0}" font-family="sans-serif">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (index, panel) in panels.iter().enumerate() {
        draw_panel(&mut svg, panel, PANEL_WIDTH * index as f64, x_epochs);
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let t = ticks(0.0, 1.0, 5);
        assert_eq!(t.len(), 6, "{t:?}");
        for (tick, expected) in t.iter().zip([0.0, 0.2, 0.4, 0.6, 0.8, 1.0]) {
            assert!((tick - expected).abs() < 1e-12, "{t:?}");
        }
        // Steps of 0.001, 0.002 and 0.005 give more than 5 ticks over 0.034.
        let t = ticks(0.013, 0.047, 5);
        assert_eq!(t.len(), 3, "{t:?}");
        for (tick, expected) in t.iter().zip([0.02, 0.03, 0.04]) {
            assert!((tick - expected).abs() < 1e-12, "{t:?}");
        }
        assert_eq!(
            ticks(1.0, 40.0, 8),
            (1..=8).map(|i| i as f64 * 5.0).collect::<Vec<_>>()
        );
    }

    fn record(epoch: usize, val_loss: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            train_loss: 1.0 / epoch as f64,
            val_loss,
            learning_rate: 1e-4,
            momentum: 0.9,
            metrics: Default::default(),
            ema: None,
            seconds: 1.0,
            images_per_second: 1.0,
        }
    }

    /// The `data-series` and `data-points` of each series group, checking the XML is well formed.
    fn series(svg: &str) -> Vec<(String, String)> {
        let mut found = Vec::new();
        for event in xml::reader::EventReader::from_str(svg) {
            if let xml::reader::XmlEvent::StartElement { attributes, .. } = event.unwrap() {
                let get = |key: &str| {
                    attributes
                        .iter()
                        .find(|a| a.name.local_name == key)
                        .map(|a| a.value.clone())
                };
                if let (Some(name), Some(points)) = (get("data-series"), get("data-points")) {
                    found.push((name, points));
                }
            }
        }
        found
    }

    #[test]
    fn non_finite_values_are_left_out_and_one_epoch_still_draws() {
        let svg = training_curves_svg(&[record(1, 0.5), record(2, f64::NAN), record(3, 0.2)], 10);
        let found = series(&svg);
        assert_eq!(found.len(), 5);
        assert_eq!(found[0], ("train loss".into(), "3".into()));
        assert_eq!(found[1], ("validation loss".into(), "2".into()));
        assert!(!svg.contains("NaN"));

        let svg = training_curves_svg(&[record(1, 0.5)], 1);
        assert!(series(&svg).iter().all(|(_, points)| points == "1"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn labels_have_no_float_noise() {
        assert_eq!(label(0.30000000000000004), "0.3");
        assert_eq!(label(5.0), "5");
        assert_eq!(label(-0.0), "0");
    }

    #[test]
    fn the_moving_average_gets_its_own_series_when_there_is_one() {
        let plain = series(&training_curves_svg(&[record(1, 0.5), record(2, 0.4)], 2));
        assert!(plain.iter().all(|(name, _)| !name.starts_with("EMA")));
        let mut averaged = record(2, 0.4);
        averaged.ema = Some(crate::train::EmaRecord {
            val_loss: 0.3,
            metrics: Default::default(),
        });
        let found = series(&training_curves_svg(&[record(1, 0.5), averaged], 2));
        for name in ["EMA validation loss", "EMA per-class F1"] {
            assert!(
                found.contains(&(name.to_string(), "1".to_string())),
                "{name} with the one epoch that has it: {found:?}"
            );
        }
    }
}
