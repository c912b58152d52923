//! The `search` section: validation accuracy of every search trial against its α.

use std::fmt::Write as _;

use plotters::prelude::*;

use super::chart::{Frame, Key, Palette, XAxis, alpha_tick, color, marker, padded, plot};
use super::{empty, figure, section};
use crate::study::results::StudyResults;

pub(super) fn search_section(r: &StudyResults, pal: &Palette) -> String {
    let shown: Vec<_> = r
        .search
        .iter()
        .filter(|p| p.alpha > 0.0 && p.alpha.is_finite() && p.val_acc.is_finite())
        .collect();
    let hidden = r.search.len() - shown.len();
    let body = if shown.is_empty() {
        if r.search.is_empty() {
            empty("No hyperparameter search was run.")
        } else {
            empty("No search trial had a positive α, so there is nothing to draw on a log axis.")
        }
    } else {
        let mut caption = String::from(
            "Hyperparameter search: best validation accuracy of each trial against its α. Filled \
             markers ran all their epochs, hollow ones were stopped early by successive halving; \
             trials at one α differ in β, learning rate or backbone multiplier. The ring marks \
             each scheme's chosen setting.",
        );
        if hidden > 0 {
            let _ = write!(
                caption,
                " {hidden} trial(s) with α ≤ 0 (or no accuracy) are not shown."
            );
        }
        figure(search_plot(r, &shown, pal), &caption)
    };
    section("search", "Hyperparameter search", &body)
}

pub(super) fn search_plot(
    r: &StudyResults,
    shown: &[&crate::study::results::SearchPoint],
    pal: &Palette,
) -> std::result::Result<String, String> {
    let amin = shown.iter().map(|p| p.alpha).fold(f64::INFINITY, f64::min);
    let amax = shown
        .iter()
        .map(|p| p.alpha)
        .fold(f64::NEG_INFINITY, f64::max);
    let mut dlo = amin.log10().floor() as i32;
    let mut dhi = amax.log10().ceil() as i32;
    if dhi <= dlo {
        dlo -= 1;
        dhi += 1;
    }
    let every = ((dhi - dlo) as usize).div_ceil(8).max(1);
    let ticks: Vec<f64> = (dlo..=dhi)
        .filter(|d| ((d - dlo) as usize).is_multiple_of(every))
        .map(|d| 10f64.powi(d))
        .collect();
    let (lo, hi) = (10f64.powf(dlo as f64 - 0.15), 10f64.powf(dhi as f64 + 0.15));
    let chosen: Vec<(usize, f64, f64)> = r
        .schemes
        .iter()
        .filter(|s| s.alpha > 0.0 && s.alpha.is_finite() && s.val_acc.is_finite())
        .filter(|s| shown.iter().any(|p| p.scheme == s.scheme))
        .map(|s| (pal.index(&s.scheme), s.alpha, s.val_acc * 100.0))
        .collect();
    let ys: Vec<f64> = shown
        .iter()
        .map(|p| p.val_acc * 100.0)
        .chain(chosen.iter().map(|c| c.2))
        .collect();
    let mut schemes: Vec<usize> = shown.iter().map(|p| pal.index(&p.scheme)).collect();
    schemes.sort_unstable();
    schemes.dedup();
    let mut legend: Vec<(String, Key)> = schemes
        .iter()
        .map(|&i| (pal.names[i].clone(), Key::Marker { i, filled: true }))
        .collect();
    if shown.iter().any(|p| p.stopped) {
        legend.push(("stopped early".into(), Key::Hollow));
    }
    if !chosen.is_empty() {
        legend.push(("chosen".into(), Key::Ring));
    }
    let x_fmt = |v: &f64| alpha_tick(*v);
    let frame = Frame {
        x: XAxis::Log { lo, hi, ticks },
        y: padded(&ys, 1.0),
        x_desc: "α (log scale)",
        y_desc: "validation accuracy (%)",
        x_fmt: &x_fmt,
        legend,
    };
    plot(frame, |root, map| {
        // Finished trials on top of stopped ones.
        for stopped in [true, false] {
            for p in shown.iter().filter(|p| p.stopped == stopped) {
                let i = pal.index(&p.scheme);
                marker(
                    root,
                    map(p.alpha, p.val_acc * 100.0),
                    i,
                    color(i),
                    !stopped,
                    5,
                )?;
            }
        }
        for &(i, a, v) in &chosen {
            root.draw(&Circle::new(map(a, v), 10, color(i).stroke_width(2)))?;
        }
        Ok(())
    })
}
