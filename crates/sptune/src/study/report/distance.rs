//! The `distance` section: relative distance to the starting point per layer.

use super::chart::{
    Frame, Palette, Px, XAxis, color, layer_order, line, marker, nice_ticks, padded, plot,
};
use std::fmt::Write as _;

use super::{empty, esc, figure, section};
use crate::study::results::StudyResults;

pub(super) fn distance_section(r: &StudyResults, pal: &Palette) -> String {
    let layers = layer_order(r);
    let body = if r.distances.iter().all(|d| !d.rel.is_finite()) {
        empty("No per-layer distances to the starting point were recorded.")
    } else {
        let mut b = figure(
            distance_plot(r, &layers, pal),
            "Relative distance ‖w − w0‖ / ‖w0‖ of each tensor to its pre-trained value after \
             fine-tuning (mean over seeds), in network order; the layer index is listed below.",
        );
        b.push_str("<details><summary>Layer index → tensor</summary><ol start=\"0\">");
        for l in &layers {
            let _ = write!(b, "<li>{}</li>", esc(l));
        }
        b.push_str("</ol></details>\n");
        b
    };
    section("distance", "Distance to the pre-trained weights", &body)
}

pub(super) fn distance_plot(
    r: &StudyResults,
    layers: &[String],
    pal: &Palette,
) -> std::result::Result<String, String> {
    let n = layers.len();
    let mut per_scheme: Vec<(usize, Vec<(f64, f64)>)> = Vec::new();
    for (si, name) in pal.names.iter().enumerate() {
        let mut pts: Vec<(f64, f64)> = r
            .distances
            .iter()
            .filter(|d| &d.scheme == name && d.rel.is_finite())
            .filter_map(|d| Some((layers.iter().position(|l| *l == d.layer)? as f64, d.rel)))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        if !pts.is_empty() {
            per_scheme.push((si, pts));
        }
    }
    let mut ys: Vec<f64> = per_scheme
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .collect();
    ys.push(0.0);
    let ymax = ys.iter().copied().fold(0.0, f64::max);
    let ticks = if n <= 16 {
        (0..n).map(|i| i as f64).collect()
    } else {
        nice_ticks(0.0, (n - 1) as f64, 10, true)
    };
    let x_fmt = |v: &f64| format!("{:.0}", v);
    let markers = n <= 40;
    let frame = Frame {
        x: XAxis::Linear {
            lo: -0.5,
            hi: n as f64 - 0.5,
            ticks,
        },
        y: padded(&ys, (ymax * 0.1).max(1e-6)),
        x_desc: "layer index (network order)",
        y_desc: "relative distance ‖w − w0‖ / ‖w0‖",
        x_fmt: &x_fmt,
        legend: pal.line_legend(&per_scheme, markers),
    };
    plot(frame, |root, map| {
        for (i, pts) in &per_scheme {
            let px: Vec<Px> = pts.iter().map(|&(x, y)| map(x, y)).collect();
            line(root, px.clone(), color(*i))?;
            if markers {
                for p in px {
                    marker(root, p, *i, color(*i), true, 4)?;
                }
            }
        }
        Ok(())
    })
}
