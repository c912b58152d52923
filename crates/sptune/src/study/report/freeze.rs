//! The `freeze` section: test accuracy against the number of frozen stages.

use super::chart::{
    Frame, Palette, Px, XAxis, color, draw_ci, line, marker, nice_ticks, padded, plot,
};
use super::{empty, figure, section};
use crate::study::results::{Interval, StudyResults};

pub(super) fn freeze_section(r: &StudyResults, pal: &Palette) -> String {
    let body = if r.freeze.iter().all(|p| !p.acc.mean.is_finite()) {
        empty("No freeze sweep was run.")
    } else {
        figure(
            freeze_plot(r, pal),
            "Target test accuracy with the first k stages of the network frozen: mean over seeds \
             with its 95 % interval (schemes slightly offset sideways so whiskers do not overlap).",
        )
    };
    section("freeze", "Freezing stages", &body)
}

pub(super) fn freeze_plot(r: &StudyResults, pal: &Palette) -> std::result::Result<String, String> {
    let mut ks: Vec<usize> = r.freeze.iter().map(|p| p.k).collect();
    ks.sort_unstable();
    ks.dedup();
    let mut per_scheme: Vec<(usize, Vec<(usize, Interval)>)> = Vec::new();
    for (si, name) in pal.names.iter().enumerate() {
        let mut pts: Vec<(usize, Interval)> = r
            .freeze
            .iter()
            .filter(|p| &p.scheme == name && p.acc.mean.is_finite())
            .map(|p| (p.k, p.acc))
            .collect();
        pts.sort_by_key(|p| p.0);
        if !pts.is_empty() {
            per_scheme.push((si, pts));
        }
    }
    let mut ys = Vec::new();
    for (_, pts) in &per_scheme {
        for (_, iv) in pts {
            ys.push(iv.mean);
            if iv.half_width.is_finite() {
                ys.extend([iv.mean - iv.half_width, iv.mean + iv.half_width]);
            }
        }
    }
    let (kmin, kmax) = (ks[0] as f64, ks[ks.len() - 1] as f64);
    let ticks: Vec<f64> = if ks.len() <= 16 {
        ks.iter().map(|&k| k as f64).collect()
    } else {
        nice_ticks(kmin, kmax, 10, true)
    };
    let x_fmt = |v: &f64| format!("{:.0}", v);
    let ns = per_scheme.len();
    let frame = Frame {
        x: XAxis::Linear {
            lo: kmin - 0.5,
            hi: kmax + 0.5,
            ticks,
        },
        y: padded(&ys, 1.0),
        x_desc: "frozen stages k",
        y_desc: "target test accuracy (%)",
        x_fmt: &x_fmt,
        legend: pal.line_legend(&per_scheme, true),
    };
    plot(frame, |root, map| {
        for (j, (i, pts)) in per_scheme.iter().enumerate() {
            let c = color(*i);
            let dodge = if ns > 1 {
                (j as f64 - (ns - 1) as f64 / 2.0) * (0.24 / ns as f64).min(0.08)
            } else {
                0.0
            };
            let px: Vec<Px> = pts
                .iter()
                .map(|(k, iv)| map(*k as f64 + dodge, iv.mean))
                .collect();
            line(root, px.clone(), c)?;
            for ((k, iv), p) in pts.iter().zip(px) {
                draw_ci(root, map, *k as f64 + dodge, iv, c)?;
                marker(root, p, *i, c, true, 5)?;
            }
        }
        Ok(())
    })
}
