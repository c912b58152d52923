//! The trade-off section (the report's first plot): target accuracy against source forgetting.
//!
//! 1. The search: every trial's target validation accuracy against its source-validation
//!    forgetting, one colour and shape per scheme (hollow: stopped early by halving), each
//!    scheme's Pareto front as a line (the points no other point of the scheme beats on both
//!    axes), the chosen points ringed, and the forgetting budget as a dashed vertical line.
//! 2. The finals: each scheme's test accuracy against its test forgetting, the mean over seeds
//!    with its 95 % intervals on both axes and every seed's run (hollow), the target-only
//!    choice's runs (grey) when the objective chose another point, and the budget line.

use std::fmt::Write as _;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::chart::{
    FONT, Frame, Key, LEGEND_SIZE, MUTED, Palette, PlotResult, Px, Root, XAxis, color, decimals,
    fmt_fixed, line, marker, nice_ticks, padded, plot, whisker,
};
use super::{empty, esc, figure, section};
use crate::study::results::{Interval, SearchPoint, StudyResults};

/// The section: both plots, or the sentence that says why they are absent.
pub(super) fn section_html(r: &StudyResults, pal: &Palette) -> String {
    let measured: Vec<&SearchPoint> = r
        .search
        .iter()
        .filter(|p| p.val_acc.is_finite() && p.val_forgetting.is_some_and(f64::is_finite))
        .collect();
    let mut body = String::new();
    if !r.choice.recommendation.is_empty() {
        body.push_str("<div class=\"recommendation\">\n");
        for line in &r.choice.recommendation {
            let _ = writeln!(body, "<p>{}</p>", esc(line));
        }
        body.push_str("</div>\n");
    }
    if measured.is_empty() {
        let why = if r.choice.source_val.is_empty() {
            "the search measured no source validation accuracy".to_string()
        } else {
            r.choice.source_val.clone()
        };
        body.push_str(&empty(&format!(
            "No trade-off to draw: forgetting is absent from the search ({why})."
        )));
    } else {
        let mut caption = format!(
            "Search: target validation accuracy against source-validation forgetting (points \
             of source accuracy lost; left is better) of every trial; hollow markers were \
             stopped early by successive halving, lines join each scheme's Pareto front, rings \
             mark the chosen points ({}).",
            r.choice.describe
        );
        if let Some(b) = r.choice.max_forgetting {
            let _ = write!(caption, " The dashed line is the budget of {b} points.");
        }
        body.push_str(&figure(search_plot(r, &measured, pal), &caption));
        if r.choice.trial_seconds > 0.0 {
            let _ = writeln!(
                body,
                "<p class=\"note\">Measuring the source validation images took {:.0} s of \
                 the study's {:.0} s of trials ({:.1} %).</p>",
                r.choice.source_val_seconds,
                r.choice.trial_seconds,
                100.0 * r.choice.source_val_seconds / r.choice.trial_seconds
            );
        }
    }
    let finals: Vec<_> = r
        .schemes
        .iter()
        .filter(|s| s.acc_ci.mean.is_finite() && s.forgetting_ci.is_some())
        .collect();
    if !finals.is_empty() {
        body.push_str(&figure(
            finals_plot(r, pal),
            "Final runs: target test accuracy against forgetting on the source test images, \
             each scheme's mean over seeds (filled) with its 95 % intervals on both axes and \
             each seed's run (hollow); grey: the runs of the point a target-only search chose, \
             where the objective chose another; thin lines with dots, where [final] \
             interpolate is set: the finals interpolated toward the source (WiSE-FT, \
             θ(a) = (1 − a)·θ0 + a·θ, BatchNorm recalibrated), mean over seeds per a.",
        ));
    }
    body.push_str(&decomposition(r));
    body.push_str(&between_sources(r));
    section("tradeoff", "Target accuracy against forgetting", &body)
}

/// Forgetting split into what the BatchNorm running statistics and what the weights cost.
fn decomposition(r: &StudyResults) -> String {
    let rows: Vec<_> = r
        .schemes
        .iter()
        .filter_map(|s| Some((s, s.forgetting_ci?, s.forgetting_statistics?)))
        .filter(|(_, f, st)| f.mean.is_finite() && st.mean.is_finite())
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut t = String::from(
        "<h3>Forgetting, decomposed</h3>\n<div class=\"scroll\"><table>\n<tr><th>scheme</th>\
         <th>forgetting (points)</th><th>of which BatchNorm statistics</th>\
         <th>of which weights</th></tr>\n",
    );
    let pm = |iv: &Interval| {
        if iv.half_width.is_finite() {
            format!("{:.2} ± {:.2}", iv.mean, iv.half_width)
        } else {
            format!("{:.2}", iv.mean)
        }
    };
    for (s, f, st) in rows {
        let _ = writeln!(
            t,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{:.2}</td></tr>",
            esc(&s.scheme),
            pm(&f),
            pm(&st),
            f.mean - st.mean
        );
    }
    t.push_str(
        "</table></div>\n<p class=\"note\">The statistics' part is the source accuracy regained \
         when the source's own BatchNorm running statistics are put back on the fine-tuned \
         weights; the weights' part is the rest. No weight penalty acts on the statistics: \
         a large statistics part calls for --bn frozen (or searching it: [search] bn).</p>\n",
    );
    t
}

/// With several pretrained sources (`[source] seeds`): how much of each scheme's spread lies
/// between sources rather than between fine-tuning seeds.
fn between_sources(r: &StudyResults) -> String {
    let rows: Vec<_> = r.schemes.iter().filter(|s| s.sources > 1).collect();
    if rows.is_empty() {
        return String::new();
    }
    let share = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{:.0} %", 100.0 * x));
    let mut t = String::from(
        "<h3>Between sources</h3>\n<div class=\"scroll\"><table>\n<tr><th>scheme</th>\
         <th>sources</th><th>runs</th><th>target accuracy: share between sources</th>\
         <th>forgetting: share between sources</th></tr>\n",
    );
    for s in rows {
        let _ = writeln!(
            t,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&s.scheme),
            s.sources,
            s.acc.len(),
            share(s.acc_between_sources),
            share(s.forgetting_between_sources)
        );
    }
    t.push_str(
        "</table></div>\n<p class=\"note\">Each final ran from every pretrained source (the \
         same images, another pretraining seed) with every fine-tuning seed; the intervals \
         above are over these (source, seed) runs, and the differences are paired by run. \
         The share is the variance between sources over the total (one-way random-effects \
         ANOVA, ICC(1)): near 100 %, the source decides more than the fine-tuning seed, and \
         one source's intervals understate how much a figure moves.</p>\n",
    );
    t
}

/// Indices of the Pareto front of `(forgetting, accuracy)` points (lower forgetting and higher
/// accuracy are better), ordered by forgetting.
pub(super) fn pareto(points: &[(f64, f64)]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..points.len()).collect();
    idx.sort_by(|&a, &b| {
        points[a]
            .0
            .total_cmp(&points[b].0)
            .then(points[b].1.total_cmp(&points[a].1))
    });
    let mut front = vec![];
    let mut best = f64::NEG_INFINITY;
    for i in idx {
        if points[i].1 > best {
            best = points[i].1;
            front.push(i);
        }
    }
    front
}

/// A linear x axis over `values` (with the budget, if any, inside it).
fn x_axis(values: &[f64]) -> (XAxis, (f64, f64)) {
    let (lo, hi) = padded(values, 2.0);
    let ticks = nice_ticks(lo, hi, 6, false);
    (XAxis::Linear { lo, hi, ticks }, (lo, hi))
}

/// A dashed vertical line at `x` with a label at its top.
fn budget_line(root: &Root, map: &dyn Fn(f64, f64) -> Px, x: f64, y: (f64, f64)) -> PlotResult<()> {
    let (px, top) = map(x, y.1);
    let (_, bottom) = map(x, y.0);
    let mut yy = top;
    while yy < bottom {
        let end = (yy + 6).min(bottom);
        root.draw(&PathElement::new(
            vec![(px, yy), (px, end)],
            MUTED.stroke_width(2),
        ))?;
        yy += 10;
    }
    let style = (FONT, LEGEND_SIZE)
        .into_font()
        .color(&MUTED)
        .pos(Pos::new(HPos::Left, VPos::Top));
    root.draw(&Text::new(format!("budget {x}"), (px + 4, top + 2), style))?;
    Ok(())
}

fn search_plot(
    r: &StudyResults,
    shown: &[&SearchPoint],
    pal: &Palette,
) -> std::result::Result<String, String> {
    let mut xs: Vec<f64> = shown.iter().filter_map(|p| p.val_forgetting).collect();
    xs.extend(r.choice.max_forgetting);
    let ys: Vec<f64> = shown.iter().map(|p| 100.0 * p.val_acc).collect();
    let (x, _) = x_axis(&xs);
    let y = padded(&ys, 2.0);
    let mut schemes: Vec<usize> = shown.iter().map(|p| pal.index(&p.scheme)).collect();
    schemes.sort_unstable();
    schemes.dedup();
    let mut legend: Vec<(String, Key)> = schemes
        .iter()
        .map(|&i| (pal.names[i].clone(), Key::Line { i, marker: true }))
        .collect();
    if shown.iter().any(|p| p.stopped) {
        legend.push(("stopped early".into(), Key::Hollow));
    }
    if shown.iter().any(|p| p.chosen) {
        legend.push(("chosen".into(), Key::Ring));
    }
    let x_fmt = x_formatter(&xs);
    let frame = Frame {
        x,
        y,
        x_desc: "source forgetting on validation (points)",
        y_desc: "target validation acc. (%)",
        x_fmt: &x_fmt,
        legend,
    };
    plot(frame, |root, map| {
        if let Some(b) = r.choice.max_forgetting {
            budget_line(root, map, b, y)?;
        }
        for &i in &schemes {
            // the front over the trials that ran to the end
            let pts: Vec<(f64, f64)> = shown
                .iter()
                .filter(|p| pal.index(&p.scheme) == i && !p.stopped)
                .map(|p| (p.val_forgetting.unwrap_or(f64::NAN), 100.0 * p.val_acc))
                .collect();
            let front: Vec<Px> = pareto(&pts)
                .into_iter()
                .map(|k| map(pts[k].0, pts[k].1))
                .collect();
            line(root, front, color(i))?;
        }
        for stopped in [true, false] {
            for p in shown.iter().filter(|p| p.stopped == stopped) {
                let i = pal.index(&p.scheme);
                let at = map(p.val_forgetting.unwrap_or(f64::NAN), 100.0 * p.val_acc);
                marker(root, at, i, color(i), !stopped, 5)?;
            }
        }
        for p in shown.iter().filter(|p| p.chosen) {
            let i = pal.index(&p.scheme);
            let at = map(p.val_forgetting.unwrap_or(f64::NAN), 100.0 * p.val_acc);
            root.draw(&Circle::new(at, 10, color(i).stroke_width(2)))?;
        }
        Ok(())
    })
}

/// Tick labels with the fewest decimals the ticks over `values` need.
fn x_formatter(values: &[f64]) -> impl Fn(&f64) -> String {
    let (lo, hi) = padded(values, 2.0);
    let dec = decimals(&nice_ticks(lo, hi, 6, false));
    move |v: &f64| fmt_fixed(*v, dec)
}

/// A horizontal whisker (an interval on the x axis).
fn hwhisker(root: &Root, lo: i32, hi: i32, y: i32, c: RGBColor) -> PlotResult<()> {
    let s = c.stroke_width(2);
    root.draw(&PathElement::new(vec![(lo, y), (hi, y)], s))?;
    root.draw(&PathElement::new(vec![(lo, y - 5), (lo, y + 5)], s))?;
    root.draw(&PathElement::new(vec![(hi, y - 5), (hi, y + 5)], s))?;
    Ok(())
}

/// Both whiskers of a (forgetting, accuracy) mean.
fn cross(
    root: &Root,
    map: &dyn Fn(f64, f64) -> Px,
    f: &Interval,
    a: &Interval,
    c: RGBColor,
) -> PlotResult<()> {
    if a.half_width.is_finite() && a.half_width > 0.0 {
        let (px, lo) = map(f.mean, a.mean - a.half_width);
        let (_, hi) = map(f.mean, a.mean + a.half_width);
        whisker(root, px, lo, hi, c)?;
    }
    if f.half_width.is_finite() && f.half_width > 0.0 {
        let (lo, py) = map(f.mean - f.half_width, a.mean);
        let (hi, _) = map(f.mean + f.half_width, a.mean);
        hwhisker(root, lo, hi, py, c)?;
    }
    Ok(())
}

fn finals_plot(r: &StudyResults, pal: &Palette) -> std::result::Result<String, String> {
    let rows: Vec<_> = r
        .schemes
        .iter()
        .filter(|s| s.acc_ci.mean.is_finite() && s.forgetting_ci.is_some())
        .collect();
    let mut xs: Vec<f64> = vec![];
    let mut ys: Vec<f64> = vec![];
    for s in &rows {
        xs.extend(&s.forgetting);
        ys.extend(&s.acc);
        if let Some(f) = s.forgetting_ci {
            xs.extend([f.mean - f.half_width, f.mean + f.half_width]);
        }
        ys.extend([
            s.acc_ci.mean - s.acc_ci.half_width,
            s.acc_ci.mean + s.acc_ci.half_width,
        ]);
    }
    let reference = r.choice.reference.as_ref();
    if let Some(rf) = reference {
        xs.extend(rf.forgetting_ci.map(|f| f.mean));
        ys.push(rf.acc_ci.mean);
    }
    // the interpolation curves (WiSE-FT), where the finals were interpolated
    let curves: Vec<(usize, Vec<(f64, f64)>)> = rows
        .iter()
        .map(|s| {
            let pts: Vec<(f64, f64)> = r
                .interpolation
                .iter()
                .filter(|p| p.scheme == s.scheme)
                .filter_map(|p| Some((p.forgetting?.mean, p.acc.mean)))
                .filter(|(f, a)| f.is_finite() && a.is_finite())
                .collect();
            (pal.index(&s.scheme), pts)
        })
        .filter(|(_, pts)| pts.len() > 1)
        .collect();
    for (_, pts) in &curves {
        xs.extend(pts.iter().map(|p| p.0));
        ys.extend(pts.iter().map(|p| p.1));
    }
    xs.extend(r.choice.max_forgetting);
    xs.retain(|v| v.is_finite());
    ys.retain(|v| v.is_finite());
    let (x, _) = x_axis(&xs);
    let y = padded(&ys, 2.0);
    let mut legend: Vec<(String, Key)> = rows
        .iter()
        .map(|s| {
            let i = pal.index(&s.scheme);
            (s.scheme.clone(), Key::Marker { i, filled: true })
        })
        .collect();
    legend.push(("one seed".into(), Key::Hollow));
    if reference.is_some() {
        legend.push(("target-only".into(), Key::Whisker));
    }
    let x_fmt = x_formatter(&xs);
    let frame = Frame {
        x,
        y,
        x_desc: "source forgetting on test (points)",
        y_desc: "target test accuracy (%)",
        x_fmt: &x_fmt,
        legend,
    };
    plot(frame, |root, map| {
        if let Some(b) = r.choice.max_forgetting {
            budget_line(root, map, b, y)?;
        }
        for (i, pts) in &curves {
            let px: Vec<Px> = pts.iter().map(|&(f, a)| map(f, a)).collect();
            line(root, px.clone(), color(*i))?;
            for p in px {
                root.draw(&Circle::new(p, 3, color(*i).filled()))?;
            }
        }
        for s in &rows {
            let i = pal.index(&s.scheme);
            for (f, a) in s.forgetting.iter().zip(&s.acc) {
                marker(root, map(*f, *a), i, color(i), false, 4)?;
            }
        }
        if let Some(rf) = reference
            && let Some(f) = rf.forgetting_ci
        {
            cross(root, map, &f, &rf.acc_ci, MUTED)?;
            marker(root, map(f.mean, rf.acc_ci.mean), 0, MUTED, true, 6)?;
        }
        for s in &rows {
            let i = pal.index(&s.scheme);
            let f = s.forgetting_ci.expect("filtered above");
            cross(root, map, &f, &s.acc_ci, color(i))?;
            marker(root, map(f.mean, s.acc_ci.mean), i, color(i), true, 6)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::pareto;

    #[test]
    fn the_front_keeps_the_points_nothing_beats_on_both_axes() {
        // (forgetting, accuracy): (2, 80) and (5, 90) are the front; (3, 70) is beaten by
        // (2, 80), (6, 85) by (5, 90), and (1, 60) is on it (it forgets least)
        let pts = [
            (3.0, 70.0),
            (5.0, 90.0),
            (2.0, 80.0),
            (6.0, 85.0),
            (1.0, 60.0),
        ];
        assert_eq!(pareto(&pts), vec![4, 2, 1]);
        assert!(pareto(&[]).is_empty());
        // equal forgetting: only the more accurate one
        assert_eq!(pareto(&[(1.0, 50.0), (1.0, 60.0)]), vec![1]);
    }
}
