//! The `curves` section: training and validation curves of the final runs.

use super::chart::{Frame, Palette, Px, XAxis, color, line, marker, nice_ticks, padded, plot};
use super::{empty, figure, section};
use crate::study::results::StudyResults;

pub(super) fn curves_section(r: &StudyResults, pal: &Palette) -> String {
    let train = mean_curves(r, pal, |c| &c.train_acc);
    let val = mean_curves(r, pal, |c| &c.val_acc);
    let mut b = String::new();
    if train.is_empty() && val.is_empty() {
        b.push_str(&empty("No training curves were recorded."));
    } else {
        b.push_str("<h3>Training accuracy</h3>\n");
        if train.is_empty() {
            b.push_str(&empty("No training accuracy was recorded."));
        } else {
            b.push_str(&figure(
                curve_plot(&train, pal, "training accuracy (%)"),
                "Training accuracy per epoch of the final runs, mean over seeds.",
            ));
        }
        b.push_str("<h3>Validation accuracy</h3>\n");
        if val.is_empty() {
            b.push_str(&empty(
                "No validation split was held out in the final runs, so there is no validation \
                 curve.",
            ));
        } else {
            b.push_str(&figure(
                curve_plot(&val, pal, "validation accuracy (%)"),
                "Validation accuracy per epoch of the final runs, mean over seeds.",
            ));
        }
    }
    section("curves", "Training curves", &b)
}

/// Per scheme (palette order): the mean over seeds of one per-epoch series, in percent.
pub(super) fn mean_curves(
    r: &StudyResults,
    pal: &Palette,
    series: impl Fn(&crate::study::results::Curve) -> &Vec<f64>,
) -> Vec<(usize, Vec<f64>)> {
    let mut out = Vec::new();
    for (si, name) in pal.names.iter().enumerate() {
        let runs: Vec<&Vec<f64>> = r
            .curves
            .iter()
            .filter(|c| &c.scheme == name)
            .map(&series)
            .collect();
        let epochs = runs.iter().map(|v| v.len()).max().unwrap_or(0);
        let mean: Vec<f64> = (0..epochs)
            .map(|e| {
                let vals: Vec<f64> = runs
                    .iter()
                    .filter_map(|v| v.get(e).copied())
                    .filter(|x| x.is_finite())
                    .collect();
                if vals.is_empty() {
                    f64::NAN
                } else {
                    vals.iter().sum::<f64>() / vals.len() as f64 * 100.0
                }
            })
            .collect();
        if mean.iter().any(|v| v.is_finite()) {
            out.push((si, mean));
        }
    }
    out
}

pub(super) fn curve_plot(
    curves: &[(usize, Vec<f64>)],
    pal: &Palette,
    y_desc: &str,
) -> std::result::Result<String, String> {
    let epochs = curves.iter().map(|c| c.1.len()).max().unwrap_or(1).max(1);
    let ys: Vec<f64> = curves.iter().flat_map(|c| c.1.iter().copied()).collect();
    let ticks = if epochs <= 12 {
        (1..=epochs).map(|e| e as f64).collect()
    } else {
        nice_ticks(1.0, epochs as f64, 10, true)
    };
    let x_fmt = |v: &f64| format!("{:.0}", v);
    let markers = epochs <= 30;
    let frame = Frame {
        x: XAxis::Linear {
            lo: 0.5,
            hi: epochs as f64 + 0.5,
            ticks,
        },
        y: padded(&ys, 1.0),
        x_desc: "epoch",
        y_desc,
        x_fmt: &x_fmt,
        legend: pal.line_legend(curves, markers),
    };
    plot(frame, |root, map| {
        for (i, v) in curves {
            let c = color(*i);
            // Split at missing epochs.
            let mut seg: Vec<Px> = Vec::new();
            for (e, y) in v.iter().enumerate() {
                if y.is_finite() {
                    let p = map(e as f64 + 1.0, *y);
                    seg.push(p);
                    if markers {
                        marker(root, p, *i, c, true, 3)?;
                    }
                } else {
                    line(root, std::mem::take(&mut seg), c)?;
                }
            }
            line(root, seg, c)?;
        }
        Ok(())
    })
}
