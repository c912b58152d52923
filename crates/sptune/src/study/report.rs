//! The study's report: one self-contained HTML page (inline CSS and SVG plots drawn with
//! `plotters`' SVG backend; no scripts, fonts or external links), the main table as Markdown,
//! and the raw numbers as CSV files.
//!
//! Sections of the page, each a `<section id="...">`: `setup`, `tradeoff` (the recommendation
//! and target accuracy against forgetting: [`tradeoff`]), `table`, `accuracy`, `search`,
//! `forgetting`, `distance`, `freeze`, `curves`. A section whose data is empty says so in one
//! sentence instead of drawing an empty plot. Intervals are the 95 % intervals of
//! [`Interval`]; a NaN half-width (one seed) draws no whisker and prints `(n=1)`.

mod tradeoff;

use super::results::{Interval, SchemeRow, StudyResults};
use crate::util::write_atomic;
use crate::{Error, Result};
use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The report as one HTML page (inline SVG and CSS, no scripts, no external links).
pub fn html(r: &StudyResults) -> String {
    let pal = Palette::of(r);
    let title = if r.title.trim().is_empty() {
        "Study report".to_string()
    } else {
        r.title.clone()
    };
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{t}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n<h1>{t}</h1>\n",
        t = esc(&title)
    );
    h.push_str(&setup_section(r));
    h.push_str(&tradeoff::section_html(r, &pal));
    h.push_str(&table_section(r));
    h.push_str(&accuracy_section(r, &pal));
    h.push_str(&search_section(r, &pal));
    h.push_str(&forgetting_section(r, &pal));
    h.push_str(&distance_section(r, &pal));
    h.push_str(&freeze_section(r, &pal));
    h.push_str(&curves_section(r, &pal));
    h.push_str("</main>\n</body>\n</html>\n");
    h
}

/// The main table as Markdown (scheme | α | β | lr | val acc | target acc ± CI | forgetting ± CI
/// | acc − L2 (paired) | forgetting − L2 (paired)), followed by one line on the units.
pub fn markdown(r: &StudyResults) -> String {
    let mut m = String::new();
    m.push('|');
    for c in COLUMNS {
        let _ = write!(m, " {c} |");
    }
    m.push_str("\n|");
    for (i, _) in COLUMNS.iter().enumerate() {
        m.push_str(if i == 0 { " --- |" } else { " ---: |" });
    }
    m.push('\n');
    for row in &r.schemes {
        let cells = table_cells(row);
        m.push('|');
        for (i, c) in cells.iter().enumerate() {
            let c = if i == 0 { md_esc(c) } else { c.clone() };
            let _ = write!(m, " {c} |");
        }
        m.push('\n');
    }
    m.push('\n');
    m.push_str(UNITS_NOTE);
    m.push('\n');
    if !r.choice.recommendation.is_empty() {
        m.push('\n');
        for line in &r.choice.recommendation {
            m.push_str(line);
            m.push('\n');
        }
    }
    m
}

/// CSV files: (`schemes.csv`, text) with one row per scheme including the per-seed values,
/// `search.csv`, `distances.csv`, `freeze.csv` and `curves.csv`; only the non-empty ones.
/// Accuracies are as stored (search and curves 0..1, the rest percent); NaN is an empty field.
pub fn csv(r: &StudyResults) -> Vec<(String, String)> {
    let mut files = Vec::new();
    if !r.schemes.is_empty() {
        let seeds = r.schemes.iter().map(|s| s.acc.len()).max().unwrap_or(0);
        let fseeds = r
            .schemes
            .iter()
            .map(|s| s.forgetting.len())
            .max()
            .unwrap_or(0);
        let mut head: Vec<String> = [
            "scheme",
            "alpha",
            "beta",
            "lr",
            "backbone_lr_mult",
            "val_acc",
            "acc_mean",
            "acc_ci95",
            "acc_n",
            "forgetting_mean",
            "forgetting_ci95",
            "forgetting_n",
            "acc_minus_l2_mean",
            "acc_minus_l2_ci95",
            "acc_minus_l2_n",
            "forgetting_minus_l2_mean",
            "forgetting_minus_l2_ci95",
            "forgetting_minus_l2_n",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        head.extend((1..=seeds).map(|i| format!("acc_{i}")));
        head.extend((1..=fseeds).map(|i| format!("forgetting_{i}")));
        let mut t = csv_line(&head);
        for s in &r.schemes {
            let mut f = vec![
                s.scheme.clone(),
                num(s.alpha),
                num(s.beta),
                num(s.lr),
                num(s.backbone_lr_mult),
                num(s.val_acc),
            ];
            for iv in [
                Some(s.acc_ci),
                s.forgetting_ci,
                s.acc_minus_l2,
                s.forgetting_minus_l2,
            ] {
                match iv {
                    Some(iv) => f.extend([num(iv.mean), num(iv.half_width), iv.n.to_string()]),
                    None => f.extend([String::new(), String::new(), String::new()]),
                }
            }
            f.extend((0..seeds).map(|i| s.acc.get(i).map_or(String::new(), |v| num(*v))));
            f.extend((0..fseeds).map(|i| s.forgetting.get(i).map_or(String::new(), |v| num(*v))));
            t.push_str(&csv_line(&f));
        }
        files.push(("schemes.csv".to_string(), t));
    }
    if !r.search.is_empty() {
        let mut t = csv_line(&[
            "scheme",
            "alpha",
            "beta",
            "lr",
            "backbone_lr_mult",
            "val_acc",
            "epochs",
            "stopped",
        ]);
        for p in &r.search {
            t.push_str(&csv_line(&[
                p.scheme.clone(),
                num(p.alpha),
                num(p.beta),
                num(p.lr),
                num(p.backbone_lr_mult),
                num(p.val_acc),
                p.epochs.to_string(),
                p.stopped.to_string(),
            ]));
        }
        files.push(("search.csv".to_string(), t));
    }
    if !r.distances.is_empty() {
        let layers = layer_order(r);
        let mut t = csv_line(&["scheme", "layer_index", "layer", "rel"]);
        for d in &r.distances {
            let i = layers.iter().position(|l| *l == d.layer).unwrap_or(0);
            t.push_str(&csv_line(&[
                d.scheme.clone(),
                i.to_string(),
                d.layer.clone(),
                num(d.rel),
            ]));
        }
        files.push(("distances.csv".to_string(), t));
    }
    if !r.freeze.is_empty() {
        let mut t = csv_line(&["scheme", "k", "acc_mean", "acc_ci95", "acc_n"]);
        for p in &r.freeze {
            t.push_str(&csv_line(&[
                p.scheme.clone(),
                p.k.to_string(),
                num(p.acc.mean),
                num(p.acc.half_width),
                p.acc.n.to_string(),
            ]));
        }
        files.push(("freeze.csv".to_string(), t));
    }
    if !r.curves.is_empty() {
        let mut t = csv_line(&[
            "scheme",
            "seed",
            "epoch",
            "train_acc",
            "val_acc",
            "task_loss",
        ]);
        for c in &r.curves {
            let epochs = c
                .train_acc
                .len()
                .max(c.val_acc.len())
                .max(c.task_loss.len());
            for e in 0..epochs {
                let get = |v: &Vec<f64>| v.get(e).map_or(String::new(), |x| num(*x));
                t.push_str(&csv_line(&[
                    c.scheme.clone(),
                    c.seed.to_string(),
                    (e + 1).to_string(),
                    get(&c.train_acc),
                    get(&c.val_acc),
                    get(&c.task_loss),
                ]));
            }
        }
        files.push(("curves.csv".to_string(), t));
    }
    files
}

/// Writes the HTML to `out` and beside it `<stem>.md` (title, setup and the main table) and
/// the CSV files in `<stem>_csv/`, each atomically (temporary file, then rename); creates the
/// folders it needs. Returns the paths written, the HTML first.
pub fn write(r: &StudyResults, out: &Path) -> Result<Vec<PathBuf>> {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::invalid("report path", format!("{}: no file name", out.display())))?;
    if let Some(dir) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let mut written = Vec::new();
    write_atomic(out, html(r).as_bytes())?;
    written.push(out.to_path_buf());

    let md_path = out.with_file_name(format!("{stem}.md"));
    let mut md = String::new();
    if !r.title.trim().is_empty() {
        let _ = writeln!(md, "# {}\n", md_esc(&r.title));
    }
    if !r.setup.trim().is_empty() {
        let _ = writeln!(md, "{}\n", md_esc(&r.setup));
    }
    md.push_str(&markdown(r));
    write_atomic(&md_path, md.as_bytes())?;
    written.push(md_path);

    let files = csv(r);
    if !files.is_empty() {
        let dir = out.with_file_name(format!("{stem}_csv"));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        for (name, text) in files {
            let p = dir.join(name);
            write_atomic(&p, text.as_bytes())?;
            written.push(p);
        }
    }
    Ok(written)
}

// ---------------------------------------------------------------------------------------------
// Page parts

const CSS: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;\
color:#1d1d1f;background:#fff;margin:0;line-height:1.45}\
main{max-width:960px;margin:0 auto;padding:1.5rem 1.25rem 3rem}\
h1{font-size:1.7rem;margin:.2rem 0 1rem}\
h2{font-size:1.25rem;margin:2rem 0 .6rem;padding-bottom:.2rem;border-bottom:1px solid #ddd}\
h3{font-size:1.05rem;margin:1rem 0 .4rem}\
table{border-collapse:collapse;font-size:.86rem;margin:.4rem 0}\
th,td{padding:.3rem .5rem;border-bottom:1px solid #e3e3e3}\
td{white-space:nowrap}\
th{background:#f4f5f7;text-align:left;font-weight:600;vertical-align:bottom}\
td.num{text-align:right;font-variant-numeric:tabular-nums}\
.scroll{overflow-x:auto}\
figure{margin:.5rem 0 1rem}\
figure svg{max-width:100%;height:auto;display:block;border:1px solid #eee}\
figcaption,.note{font-size:.88rem;color:#555;margin-top:.35rem}\
.empty{color:#555;font-style:italic}\
details{font-size:.85rem;color:#444}\
details ol{columns:2;margin:.3rem 0}\
.recommendation{background:#f3f7fb;border-left:4px solid #0072b2;padding:.3rem .9rem;margin:.5rem 0 1rem}";

const COLUMNS: [&str; 9] = [
    "scheme",
    "α",
    "β",
    "lr",
    "val acc",
    "target acc ± CI",
    "forgetting ± CI",
    "acc − L2 (paired)",
    "forgetting − L2 (paired)",
];

const UNITS_NOTE: &str = "Accuracies in percent, forgetting in points of source accuracy lost; \
± is the half-width of the 95 % interval (Student t over seeds); paired differences are \
taken seed by seed against L2.";

fn section(id: &str, title: &str, body: &str) -> String {
    format!(
        "<section id=\"{id}\">\n<h2>{}</h2>\n{body}</section>\n",
        esc(title)
    )
}

fn empty(sentence: &str) -> String {
    format!("<p class=\"empty\">{}</p>\n", esc(sentence))
}

fn figure(svg: std::result::Result<String, String>, caption: &str) -> String {
    match svg {
        Ok(svg) => format!(
            "<figure>\n{svg}<figcaption>{}</figcaption>\n</figure>\n",
            esc(caption)
        ),
        Err(e) => empty(&format!("The plot could not be drawn: {e}")),
    }
}

fn setup_section(r: &StudyResults) -> String {
    let mut b = String::new();
    if !r.setup.trim().is_empty() {
        let _ = writeln!(b, "<p>{}</p>", esc(&r.setup));
    }
    let seeds = r.schemes.iter().map(|s| s.acc.len()).max().unwrap_or(0);
    let stopped = r.search.iter().filter(|p| p.stopped).count();
    let _ = writeln!(
        b,
        "<p class=\"note\">{} scheme(s), {} seed(s) per final run, {} search trial(s) ({} stopped \
         early by successive halving).</p>",
        r.schemes.len(),
        seeds,
        r.search.len(),
        stopped
    );
    section("setup", "Setup", &b)
}

fn table_section(r: &StudyResults) -> String {
    if r.schemes.is_empty() {
        return section("table", "Results", &empty("No scheme was run."));
    }
    let mut b = String::from("<div class=\"scroll\"><table>\n<thead><tr>");
    for c in COLUMNS {
        let _ = write!(b, "<th>{}</th>", esc(c));
    }
    b.push_str("</tr></thead>\n<tbody>\n");
    for row in &r.schemes {
        b.push_str("<tr>");
        for (i, c) in table_cells(row).iter().enumerate() {
            let class = if i == 0 { "" } else { " class=\"num\"" };
            let _ = write!(b, "<td{class}>{}</td>", esc(c));
        }
        b.push_str("</tr>\n");
    }
    b.push_str("</tbody>\n</table></div>\n");
    let _ = writeln!(b, "<p class=\"note\">{}</p>", esc(UNITS_NOTE));
    section("table", "Results", &b)
}

fn table_cells(s: &SchemeRow) -> Vec<String> {
    let val = if s.val_acc.is_finite() {
        format!("{:.2}", s.val_acc * 100.0)
    } else {
        DASH.to_string()
    };
    vec![
        s.scheme.clone(),
        hyper(s.alpha),
        hyper(s.beta),
        hyper(s.lr),
        val,
        ci(Some(s.acc_ci), false),
        ci(s.forgetting_ci, false),
        ci(s.acc_minus_l2, true),
        ci(s.forgetting_minus_l2, true),
    ]
}

const DASH: &str = "—";

/// `84.20 ± 1.38`; `84.20 (n=1)` without a half-width; signed for differences.
fn ci(iv: Option<Interval>, signed: bool) -> String {
    let Some(iv) = iv else {
        return DASH.to_string();
    };
    if !iv.mean.is_finite() {
        return DASH.to_string();
    }
    let m = if signed {
        format!("{:+.2}", iv.mean)
    } else {
        format!("{:.2}", iv.mean)
    };
    if iv.half_width.is_finite() {
        format!("{m} ± {:.2}", iv.half_width)
    } else {
        format!("{m} (n={})", iv.n)
    }
}

/// A hyperparameter: plain decimals between 0.001 and 10 000, else `3e-4`.
fn hyper(v: f64) -> String {
    if !v.is_finite() {
        return DASH.to_string();
    }
    if v == 0.0 {
        return "0".to_string();
    }
    let a = v.abs();
    if (1e-3..1e4).contains(&a) {
        let s = format!("{:.4}", v);
        let s = s.trim_end_matches('0').trim_end_matches('.');
        return s.to_string();
    }
    let s = format!("{:.3e}", v);
    match s.split_once('e') {
        Some((m, e)) => {
            let m = m.trim_end_matches('0').trim_end_matches('.');
            format!("{m}e{e}")
        }
        None => s,
    }
}

fn accuracy_section(r: &StudyResults, pal: &Palette) -> String {
    let items: Vec<CatItem> = r
        .schemes
        .iter()
        .map(|s| CatItem {
            name: s.scheme.clone(),
            color: pal.index(&s.scheme),
            iv: s.acc_ci,
            seeds: s.acc.clone(),
        })
        .filter(|i| i.iv.mean.is_finite())
        .collect();
    let body = if items.is_empty() {
        empty("No final runs, so there is no target accuracy to show.")
    } else {
        figure(
            category_plot(&items, "target test accuracy (%)", false),
            "Target test accuracy per scheme: mean over seeds (filled marker) with its 95 % \
             interval (whisker) and each seed's value (hollow markers, right of the mean).",
        )
    };
    section("accuracy", "Target accuracy", &body)
}

fn forgetting_section(r: &StudyResults, pal: &Palette) -> String {
    let items: Vec<CatItem> = r
        .schemes
        .iter()
        .filter_map(|s| {
            let iv = s.forgetting_ci?;
            iv.mean.is_finite().then(|| CatItem {
                name: s.scheme.clone(),
                color: pal.index(&s.scheme),
                iv,
                seeds: s.forgetting.clone(),
            })
        })
        .collect();
    let body = if items.is_empty() {
        empty("Source forgetting was not measured in this study.")
    } else {
        figure(
            category_plot(&items, "forgetting (points of source acc.)", true),
            "Source forgetting per scheme: points of source-task accuracy lost after \
             fine-tuning (lower is better; below 0 the source accuracy improved). Mean over \
             seeds with its 95 % interval and each seed's value.",
        )
    };
    section("forgetting", "Source forgetting", &body)
}

fn search_section(r: &StudyResults, pal: &Palette) -> String {
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

fn distance_section(r: &StudyResults, pal: &Palette) -> String {
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

fn freeze_section(r: &StudyResults, pal: &Palette) -> String {
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

fn curves_section(r: &StudyResults, pal: &Palette) -> String {
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

// ---------------------------------------------------------------------------------------------
// Data helpers

/// Every scheme name in order of first appearance (the table's order first), so that a scheme
/// has one colour and marker in every plot.
struct Palette {
    names: Vec<String>,
}

impl Palette {
    /// Legend entries of a line plot: one line (with or without markers) per scheme index.
    fn line_legend<'a, T: 'a>(
        &self,
        series: impl IntoIterator<Item = &'a (usize, T)>,
        marker: bool,
    ) -> Vec<(String, Key)> {
        series
            .into_iter()
            .map(|(i, _)| (self.names[*i].clone(), Key::Line { i: *i, marker }))
            .collect()
    }

    fn of(r: &StudyResults) -> Self {
        let mut names: Vec<String> = Vec::new();
        let all = r
            .schemes
            .iter()
            .map(|s| &s.scheme)
            .chain(r.search.iter().map(|s| &s.scheme))
            .chain(r.distances.iter().map(|s| &s.scheme))
            .chain(r.freeze.iter().map(|s| &s.scheme))
            .chain(r.curves.iter().map(|s| &s.scheme));
        for n in all {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        Palette { names }
    }

    fn index(&self, name: &str) -> usize {
        self.names.iter().position(|n| n == name).unwrap_or(0)
    }
}

/// The tensors in network order (order of first appearance).
fn layer_order(r: &StudyResults) -> Vec<String> {
    let mut layers: Vec<String> = Vec::new();
    for d in &r.distances {
        if !layers.contains(&d.layer) {
            layers.push(d.layer.clone());
        }
    }
    layers
}

/// Per scheme (palette order): the mean over seeds of one per-epoch series, in percent.
fn mean_curves(
    r: &StudyResults,
    pal: &Palette,
    series: impl Fn(&super::results::Curve) -> &Vec<f64>,
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

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Backslash-escapes Markdown punctuation (a table cell stays one cell, no inline HTML).
fn md_esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '|' | '*' | '_' | '`' | '[' | ']' | '<' | '>' | '&' => {
                o.push('\\');
                o.push(c);
            }
            '\n' | '\r' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// A CSV number: shortest round-trip form, NaN as an empty field.
fn num(v: f64) -> String {
    if v.is_nan() {
        String::new()
    } else {
        format!("{v}")
    }
}

fn csv_line<S: AsRef<str>>(fields: &[S]) -> String {
    let mut l = String::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            l.push(',');
        }
        let f = f.as_ref();
        if f.contains([',', '"', '\n', '\r']) {
            l.push('"');
            l.push_str(&f.replace('"', "\"\""));
            l.push('"');
        } else {
            l.push_str(f);
        }
    }
    l.push('\n');
    l
}

// ---------------------------------------------------------------------------------------------
// Plots

const W: u32 = 640;
const H: u32 = 360;
/// The legend's column at the right of each plot.
const LEGEND_W: u32 = 150;
const FONT: &str = "sans-serif";
// plotters writes `font-size = size / 1.24` into the SVG: these are about 13, 14.5 and 13 px.
const TICK_SIZE: f64 = 16.0;
const DESC_SIZE: f64 = 18.0;
const LEGEND_SIZE: f64 = 16.0;
const TEXT: RGBColor = RGBColor(0x22, 0x22, 0x22);
const GRID: RGBColor = RGBColor(0xe4, 0xe4, 0xe4);
const MUTED: RGBColor = RGBColor(0x77, 0x77, 0x77);
/// Okabe–Ito colours (colour-blind safe) and two more.
const COLORS: [RGBColor; 9] = [
    RGBColor(0x00, 0x72, 0xB2),
    RGBColor(0xD5, 0x5E, 0x00),
    RGBColor(0x00, 0x9E, 0x73),
    RGBColor(0xCC, 0x79, 0xA7),
    RGBColor(0xE6, 0x9F, 0x00),
    RGBColor(0x56, 0xB4, 0xE9),
    RGBColor(0x00, 0x00, 0x00),
    RGBColor(0x8C, 0x56, 0x4B),
    RGBColor(0x7F, 0x7F, 0x7F),
];
const SHAPES: usize = 5;

type PlotResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;
type Root<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Px = (i32, i32);

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

enum XAxis {
    Linear { lo: f64, hi: f64, ticks: Vec<f64> },
    Log { lo: f64, hi: f64, ticks: Vec<f64> },
}

/// A linear or log axis with fixed ticks (plotters' own key points skip the formatter for
/// decorated ranges).
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    ticks: Vec<f64>,
}

impl Axis {
    fn t(&self, v: f64) -> f64 {
        if self.log {
            v.max(f64::MIN_POSITIVE).log10()
        } else {
            v
        }
    }
}

impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let (a, b) = (self.t(self.lo), self.t(self.hi));
        let f = if b == a {
            0.5
        } else {
            (self.t(*v) - a) / (b - a)
        };
        limit.0 + ((limit.1 - limit.0) as f64 * f).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        self.ticks.clone()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

enum Key {
    /// A marker of the scheme `i`'s shape.
    Marker { i: usize, filled: bool },
    /// A line with the scheme's marker.
    Line { i: usize, marker: bool },
    /// An interval whisker.
    Whisker,
    /// A ring (the chosen setting).
    Ring,
    /// A hollow grey circle.
    Hollow,
}

struct Frame<'a> {
    x: XAxis,
    y: (f64, f64),
    x_desc: &'a str,
    y_desc: &'a str,
    x_fmt: &'a dyn Fn(&f64) -> String,
    legend: Vec<(String, Key)>,
}

/// Draws the axes of `frame` into a 640x360 SVG with the legend at the right, then calls `draw`
/// with the root area and the map from data to pixel coordinates.
fn plot(
    frame: Frame,
    draw: impl FnOnce(&Root, &dyn Fn(f64, f64) -> Px) -> PlotResult<()>,
) -> std::result::Result<String, String> {
    let mut svg = String::new();
    plot_into(&mut svg, frame, draw).map_err(|e| e.to_string())?;
    Ok(svg)
}

fn plot_into(
    svg: &mut String,
    frame: Frame,
    draw: impl FnOnce(&Root, &dyn Fn(f64, f64) -> Px) -> PlotResult<()>,
) -> PlotResult<()> {
    let root = SVGBackend::with_string(svg, (W, H)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, _) = root.split_horizontally(W - LEGEND_W);
    let (ylo, yhi) = frame.y;
    let y_ticks = nice_ticks(ylo, yhi, 6, false);
    let y_dec = decimals(&y_ticks);
    let y_fmt = move |v: &f64| fmt_fixed(*v, y_dec);
    let desc_style = (FONT, DESC_SIZE).into_font().color(&TEXT);
    let tick_style = (FONT, TICK_SIZE).into_font().color(&TEXT);

    let x = match frame.x {
        XAxis::Linear { lo, hi, ticks } => Axis {
            lo,
            hi,
            log: false,
            ticks,
        },
        XAxis::Log { lo, hi, ticks } => Axis {
            lo,
            hi,
            log: true,
            ticks,
        },
    };
    let y = Axis {
        lo: ylo,
        hi: yhi,
        log: false,
        ticks: y_ticks,
    };
    let mut chart = ChartBuilder::on(&left)
        .margin_top(14)
        .margin_left(8)
        .margin_right(18)
        .margin_bottom(6)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc(frame.x_desc)
        .y_desc(frame.y_desc)
        .axis_desc_style(desc_style)
        .label_style(tick_style)
        .x_label_formatter(frame.x_fmt)
        .y_label_formatter(&y_fmt)
        .bold_line_style(GRID.stroke_width(1))
        .light_line_style(TRANSPARENT)
        .axis_style(MUTED.stroke_width(1))
        .draw()?;
    draw(&root, &|x, y| chart.backend_coord(&(x, y)))?;
    draw_legend(&root, &frame.legend)?;
    root.present()?;
    Ok(())
}

fn draw_legend(root: &Root, entries: &[(String, Key)]) -> PlotResult<()> {
    if entries.is_empty() {
        return Ok(());
    }
    const ROW: i32 = 22;
    const MAX_ROWS: usize = 14;
    let x0 = (W - LEGEND_W) as i32 + 4;
    let y0 = 14;
    let rows = entries.len().min(MAX_ROWS) as i32;
    root.draw(&Rectangle::new(
        [(x0, y0), (W as i32 - 8, y0 + rows * ROW + 8)],
        GRID.stroke_width(1),
    ))?;
    let style = (FONT, LEGEND_SIZE)
        .into_font()
        .color(&TEXT)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (n, (label, key)) in entries.iter().enumerate() {
        let y = y0 + 4 + ROW / 2 + n as i32 * ROW;
        let label = if n + 1 == MAX_ROWS && entries.len() > MAX_ROWS {
            format!("… {} more", entries.len() - n)
        } else {
            truncate(label, 15)
        };
        let kx = x0 + 18;
        match key {
            Key::Marker { i, filled } => marker(root, (kx, y), *i, color(*i), *filled, 5)?,
            Key::Line { i, marker: m } => {
                root.draw(&PathElement::new(
                    vec![(kx - 12, y), (kx + 12, y)],
                    color(*i).stroke_width(2),
                ))?;
                if *m {
                    marker(root, (kx, y), *i, color(*i), true, 4)?;
                }
            }
            Key::Whisker => whisker(root, kx, y - 8, y + 8, MUTED)?,
            Key::Ring => {
                root.draw(&Circle::new((kx, y), 8, MUTED.stroke_width(2)))?;
            }
            Key::Hollow => marker(root, (kx, y), 0, MUTED, false, 5)?,
        }
        root.draw(&Text::new(label, (x0 + 38, y), style.clone()))?;
        if n + 1 == MAX_ROWS {
            break;
        }
    }
    Ok(())
}

/// Scheme `i`'s marker (circle, square, triangle, diamond, inverted triangle), filled or hollow.
fn marker(root: &Root, (x, y): Px, i: usize, c: RGBColor, filled: bool, r: i32) -> PlotResult<()> {
    let style = if filled {
        c.filled()
    } else {
        c.stroke_width(2)
    };
    let poly = |pts: Vec<Px>| -> PlotResult<()> {
        if filled {
            root.draw(&Polygon::new(pts, style))?;
        } else {
            let mut closed = pts.clone();
            closed.push(pts[0]);
            if let Some(p) = pts.get(1) {
                closed.push(*p);
            }
            root.draw(&PathElement::new(closed, style))?;
        }
        Ok(())
    };
    match i % SHAPES {
        0 => root.draw(&Circle::new((x, y), r, style))?,
        1 => {
            let s = r * 9 / 10;
            root.draw(&Rectangle::new([(x - s, y - s), (x + s, y + s)], style))?
        }
        2 => poly(vec![(x, y - r - 1), (x + r + 1, y + r), (x - r - 1, y + r)])?,
        3 => poly(vec![
            (x, y - r - 1),
            (x + r + 1, y),
            (x, y + r + 1),
            (x - r - 1, y),
        ])?,
        _ => poly(vec![(x, y + r + 1), (x + r + 1, y - r), (x - r - 1, y - r)])?,
    }
    Ok(())
}

/// A vertical whisker from pixel row `lo` to `hi` with caps.
fn whisker(root: &Root, x: i32, lo: i32, hi: i32, c: RGBColor) -> PlotResult<()> {
    let s = c.stroke_width(2);
    root.draw(&PathElement::new(vec![(x, lo), (x, hi)], s))?;
    root.draw(&PathElement::new(vec![(x - 5, lo), (x + 5, lo)], s))?;
    root.draw(&PathElement::new(vec![(x - 5, hi), (x + 5, hi)], s))?;
    Ok(())
}

/// The whisker of an interval, if it has a finite half-width.
fn draw_ci(
    root: &Root,
    map: &dyn Fn(f64, f64) -> Px,
    x: f64,
    iv: &Interval,
    c: RGBColor,
) -> PlotResult<()> {
    if iv.half_width.is_finite() && iv.mean.is_finite() && iv.half_width > 0.0 {
        let (px, lo) = map(x, iv.mean - iv.half_width);
        let (_, hi) = map(x, iv.mean + iv.half_width);
        whisker(root, px, lo, hi, c)?;
    }
    Ok(())
}

fn line(root: &Root, pts: Vec<Px>, c: RGBColor) -> PlotResult<()> {
    if pts.len() > 1 {
        root.draw(&PathElement::new(pts, c.stroke_width(2)))?;
    }
    Ok(())
}

struct CatItem {
    name: String,
    color: usize,
    iv: Interval,
    seeds: Vec<f64>,
}

/// One column per scheme: the mean (filled marker), its interval (whisker), the seeds (hollow).
fn category_plot(
    items: &[CatItem],
    y_desc: &str,
    with_zero: bool,
) -> std::result::Result<String, String> {
    let n = items.len();
    let mut ys: Vec<f64> = Vec::new();
    for it in items {
        ys.push(it.iv.mean);
        if it.iv.half_width.is_finite() {
            ys.push(it.iv.mean - it.iv.half_width);
            ys.push(it.iv.mean + it.iv.half_width);
        }
        ys.extend(it.seeds.iter().copied());
    }
    if with_zero {
        ys.push(0.0);
    }
    let y = padded(&ys, 1.0);
    let plot_w = (W - LEGEND_W - 100) as usize;
    let chars = (plot_w / n.max(1) / 7).clamp(4, 18);
    // "l2-sp-fisher" and "gl-sp-fisher" as "l2-sp-F" and "gl-sp-F" when space is short, so that
    // no two labels shorten to the same text
    let names: Vec<String> = items
        .iter()
        .map(|i| {
            let name = if i.name.chars().count() > chars {
                i.name.replace("-fisher", "-F")
            } else {
                i.name.clone()
            };
            truncate(&name, chars)
        })
        .collect();
    let x_fmt = move |v: &f64| {
        let i = v.round();
        if i >= 0.0 && (i as usize) < names.len() && (v - i).abs() < 1e-6 {
            names[i as usize].clone()
        } else {
            String::new()
        }
    };
    let frame = Frame {
        x: XAxis::Linear {
            lo: -0.6,
            hi: n as f64 - 0.4,
            ticks: (0..n).map(|i| i as f64).collect(),
        },
        y,
        x_desc: "scheme",
        y_desc,
        x_fmt: &x_fmt,
        legend: vec![
            ("mean".into(), Key::Marker { i: 0, filled: true }),
            ("95 % interval".into(), Key::Whisker),
            ("one seed".into(), Key::Hollow),
        ],
    };
    plot(frame, |root, map| {
        if with_zero && y.0 < 0.0 && y.1 > 0.0 {
            let (x0, py) = map(-0.6, 0.0);
            let (x1, _) = map(n as f64 - 0.4, 0.0);
            root.draw(&PathElement::new(
                vec![(x0, py), (x1, py)],
                MUTED.stroke_width(1),
            ))?;
        }
        for (i, it) in items.iter().enumerate() {
            let c = color(it.color);
            let x = i as f64;
            draw_ci(root, map, x, &it.iv, c)?;
            marker(root, map(x, it.iv.mean), it.color, c, true, 6)?;
            let k = it.seeds.len();
            for (j, v) in it.seeds.iter().enumerate().filter(|(_, v)| v.is_finite()) {
                let dx = 0.22
                    + if k > 1 {
                        0.12 * j as f64 / (k - 1) as f64
                    } else {
                        0.0
                    };
                root.draw(&Circle::new(map(x + dx, *v), 3, c.mix(0.8).stroke_width(1)))?;
            }
        }
        Ok(())
    })
}

fn search_plot(
    r: &StudyResults,
    shown: &[&super::results::SearchPoint],
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

fn distance_plot(
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

fn freeze_plot(r: &StudyResults, pal: &Palette) -> std::result::Result<String, String> {
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

fn curve_plot(
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

/// The data range of the finite `values`, at least `min_span` wide, padded by 6 % each side.
fn padded(values: &[f64], min_span: f64) -> (f64, f64) {
    let (mut lo, mut hi) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < min_span {
        let c = (lo + hi) / 2.0;
        lo = c - min_span / 2.0;
        hi = c + min_span / 2.0;
    }
    let pad = (hi - lo) * 0.06;
    (lo - pad, hi + pad)
}

/// Ticks at multiples of 1, 2 or 5 × 10^k inside `lo..=hi`, the step whose count is nearest
/// to `n`.
fn nice_ticks(lo: f64, hi: f64, n: usize, integer: bool) -> Vec<f64> {
    let span = (hi - lo).abs().max(f64::MIN_POSITIVE);
    let mag = 10f64.powf((span / n.max(1) as f64).log10().floor());
    let count = |step: f64| ((hi / step).floor() - (lo / step).ceil() + 1.0).max(0.0);
    let mut best = f64::NAN;
    for m in [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0] {
        let mut step = mag * m;
        if integer {
            step = step.max(1.0).round();
        }
        let (c, b) = (count(step), count(best));
        let better = best.is_nan()
            || (c - n as f64).abs() < (b - n as f64).abs()
            || ((c - n as f64).abs() == (b - n as f64).abs() && c > b);
        if c >= 2.0 && better {
            best = step;
        }
    }
    let step = if best.is_nan() { span } else { best };
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last)
        .map(|k| {
            let t = k as f64 * step;
            if t.abs() < step * 1e-9 { 0.0 } else { t }
        })
        .collect()
}

/// The fewest decimals that print every tick exactly.
fn decimals(ticks: &[f64]) -> usize {
    (0..8)
        .find(|&d| {
            let f = 10f64.powi(d as i32);
            ticks
                .iter()
                .all(|t| ((t * f).round() - t * f).abs() < 1e-6 * f.max(1.0))
        })
        .unwrap_or(8)
}

fn fmt_fixed(v: f64, dec: usize) -> String {
    let s = format!("{:.*}", dec, v);
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s
    }
}

/// `0.01`, `1`, `100` for α between 10^-2 and 10^3, else `1e-4`.
fn alpha_tick(v: f64) -> String {
    let e = v.log10().round() as i32;
    if (-2..=3).contains(&e) {
        hyper(10f64.powi(e))
    } else {
        format!("1e{e}")
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::results::{Curve, FreezePoint, LayerDistance, SearchPoint};

    fn iv(mean: f64, half_width: f64, n: usize) -> Interval {
        Interval {
            mean,
            half_width,
            n,
        }
    }

    fn row(
        name: &str,
        alpha: f64,
        acc: [f64; 2],
        acc_ci: Interval,
        forg: Option<Interval>,
    ) -> SchemeRow {
        let l2 = name == "l2";
        SchemeRow {
            scheme: name.into(),
            alpha,
            beta: 0.0,
            lr: 0.01,
            backbone_lr_mult: 1.0,
            val_acc: 0.8125,
            acc: acc.to_vec(),
            forgetting: if forg.is_some() {
                vec![4.0, 6.5]
            } else {
                vec![]
            },
            acc_ci,
            forgetting_ci: forg,
            acc_minus_l2: (!l2).then(|| iv(1.5, 0.75, 2)),
            forgetting_minus_l2: (!l2 && forg.is_some()).then(|| iv(-2.25, 1.0, 2)),
            bn: None,
            freeze: None,
            val_forgetting: forg.map(|_| 2.5),
            forgetting_statistics: forg,
            feasible: true,
            flags: vec![],
        }
    }

    fn synthetic() -> StudyResults {
        let names = ["l2", "l2-sp", "odd <&> name"];
        let schemes = vec![
            row(
                "l2",
                1e-4,
                [82.0, 83.0],
                iv(82.5, 6.35, 2),
                Some(iv(9.0, 2.5, 2)),
            ),
            row(
                "l2-sp",
                0.01,
                [83.5, 84.9],
                iv(84.2, 1.38, 2),
                Some(iv(5.25, 1.6, 2)),
            ),
            row(names[2], 0.1, [80.0, 81.0], iv(80.5, f64::NAN, 1), None),
        ];
        let mut search = Vec::new();
        for (s, name) in names.iter().enumerate() {
            for (j, a) in [1e-4, 1e-3, 1e-2, 1e-1].iter().enumerate() {
                search.push(SearchPoint {
                    scheme: name.to_string(),
                    alpha: *a,
                    beta: 0.0,
                    lr: 0.01,
                    backbone_lr_mult: 1.0,
                    val_acc: 0.70 + 0.03 * j as f64 + 0.01 * s as f64,
                    epochs: if j == 0 { 2 } else { 6 },
                    stopped: j == 0,
                    val_forgetting: Some(1.0 + 4.0 * j as f64 + s as f64),
                    bn: None,
                    freeze: None,
                    chosen: j == 3,
                });
            }
        }
        let mut distances = Vec::new();
        for (s, name) in names.iter().enumerate() {
            for l in 0..5 {
                distances.push(LayerDistance {
                    scheme: name.to_string(),
                    layer: format!("features.{l}.weight"),
                    rel: 0.01 * (l + 1) as f64 * (3 - s) as f64,
                });
            }
        }
        let mut freeze = Vec::new();
        for name in &names[..2] {
            for (k, m) in [(0usize, 83.0), (2, 81.0)] {
                freeze.push(FreezePoint {
                    scheme: name.to_string(),
                    k,
                    acc: iv(m, if k == 2 { f64::NAN } else { 1.1 }, 2),
                });
            }
        }
        let mut curves = Vec::new();
        for (s, name) in names.iter().enumerate() {
            for seed in 0..2u64 {
                let t: Vec<f64> = (0..6)
                    .map(|e| 0.5 + 0.07 * e as f64 - 0.01 * s as f64)
                    .collect();
                curves.push(Curve {
                    scheme: name.to_string(),
                    seed,
                    train_acc: t.clone(),
                    val_acc: t.iter().map(|v| v - 0.05 - 0.01 * seed as f64).collect(),
                    task_loss: t.iter().map(|v| 1.0 - v).collect(),
                });
            }
        }
        StudyResults {
            title: "Synthetic study".into(),
            setup: "Source: synthetic; target: synthetic, 10 images per class; 2 seeds.".into(),
            schemes,
            search,
            distances,
            freeze,
            curves,
            choice: Default::default(),
            interpolation: vec![],
        }
    }

    const IDS: [&str; 9] = [
        "setup",
        "tradeoff",
        "table",
        "accuracy",
        "search",
        "forgetting",
        "distance",
        "freeze",
        "curves",
    ];

    fn svgs(h: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut rest = h;
        while let Some(i) = rest.find("<svg") {
            let tail = &rest[i..];
            let end = tail.find("</svg>").expect("unterminated <svg>") + "</svg>".len();
            out.push(&tail[..end]);
            rest = &tail[end..];
        }
        out
    }

    fn check_page(h: &str) {
        for id in IDS {
            assert!(
                h.contains(&format!("<section id=\"{id}\">")),
                "section {id} missing"
            );
        }
        for svg in svgs(h) {
            roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("bad SVG: {e}\n{svg}"));
        }
        let stripped = h.replace("http://www.w3.org/2000/svg", "");
        assert!(!stripped.contains("http://") && !stripped.contains("https://"));
        assert!(!h.contains("<script"));
    }

    #[test]
    fn html_has_every_section_and_well_formed_svg() {
        let r = synthetic();
        let h = html(&r);
        check_page(&h);
        // trade-off (search and finals), accuracy, search, forgetting, distance, freeze, train
        // and val curves
        assert_eq!(svgs(&h).len(), 9);
        assert!(!h.contains("class=\"empty\""), "no section should be empty");
        if let Ok(p) = std::env::var("SPTUNE_REPORT_PREVIEW") {
            std::fs::write(p, &h).unwrap();
        }
    }

    #[test]
    fn text_is_escaped() {
        let h = html(&synthetic());
        assert!(!h.contains("<&>"));
        assert!(h.contains("odd &lt;&amp;&gt; name"));
        let md = markdown(&synthetic());
        assert!(md.contains("odd \\<\\&\\> name"));
    }

    #[test]
    fn markdown_table_rows() {
        let md = markdown(&synthetic());
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
        assert_eq!(rows.len(), 2 + 3);
        assert!(
            rows[0].contains("target acc ± CI") && rows[0].contains("forgetting − L2 (paired)")
        );
        let cells = |l: &str| -> Vec<String> {
            l.trim_matches('|')
                .split(" |")
                .map(|c| c.trim().to_string())
                .collect()
        };
        assert_eq!(
            cells(rows[3]),
            [
                "l2-sp",
                "0.01",
                "0",
                "0.01",
                "81.25",
                "84.20 ± 1.38",
                "5.25 ± 1.60",
                "+1.50 ± 0.75",
                "-2.25 ± 1.00"
            ]
        );
        assert_eq!(cells(rows[2])[1], "1e-4");
        assert_eq!(cells(rows[2])[7], "—");
        assert_eq!(cells(rows[4])[5], "80.50 (n=1)");
        assert_eq!(cells(rows[4])[6], "—");
    }

    #[test]
    fn empty_results_say_so() {
        let r = StudyResults {
            title: String::new(),
            setup: String::new(),
            schemes: vec![],
            search: vec![],
            distances: vec![],
            freeze: vec![],
            curves: vec![],
            choice: Default::default(),
            interpolation: vec![],
        };
        let h = html(&r);
        check_page(&h);
        assert!(svgs(&h).is_empty());
        assert_eq!(h.matches("class=\"empty\"").count(), 8);
        assert!(csv(&r).is_empty());
        // One scheme, one seed: no whiskers to draw, still a plot.
        let mut one = synthetic();
        one.schemes.truncate(1);
        one.schemes[0].acc.truncate(1);
        one.schemes[0].acc_ci = iv(82.0, f64::NAN, 1);
        one.search.truncate(1);
        one.distances.truncate(1);
        one.freeze.truncate(1);
        one.curves.truncate(1);
        one.curves[0].val_acc.clear();
        let h = html(&one);
        check_page(&h);
        // the six above, and the trade-off's two
        assert_eq!(svgs(&h).len(), 8);
    }

    #[test]
    fn csv_files_and_write() {
        let r = synthetic();
        let files = csv(&r);
        let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "schemes.csv",
                "search.csv",
                "distances.csv",
                "freeze.csv",
                "curves.csv"
            ]
        );
        let schemes = &files[0].1;
        assert!(
            schemes
                .lines()
                .next()
                .unwrap()
                .ends_with("acc_1,acc_2,forgetting_1,forgetting_2")
        );
        assert!(schemes.contains("l2-sp,0.01,0,0.01,1,0.8125,84.2,1.38,2,5.25,1.6,2,"));
        assert!(
            schemes.contains("\n\"odd <&> name\",0.1,") || schemes.contains("\nodd <&> name,0.1,")
        );
        // NaN half-width is an empty field.
        assert!(schemes.contains(",80.5,,1,"));
        assert_eq!(files[2].1.lines().count(), 1 + 15);

        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sub").join("study.html");
        let written = write(&r, &out).unwrap();
        assert_eq!(written[0], out);
        assert_eq!(written[1], dir.path().join("sub").join("study.md"));
        assert_eq!(written.len(), 2 + 5);
        for p in &written {
            assert!(p.is_file(), "{} missing", p.display());
        }
        assert!(dir.path().join("sub/study_csv/search.csv").is_file());
        let md = std::fs::read_to_string(&written[1]).unwrap();
        assert!(md.starts_with("# Synthetic study"));
        // No temporary files left behind.
        let leftovers = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn number_formats() {
        assert_eq!(
            nice_ticks(75.5, 89.5, 6, false),
            [76.0, 78.0, 80.0, 82.0, 84.0, 86.0, 88.0]
        );
        assert_eq!(
            nice_ticks(0.5, 6.5, 10, true),
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
        assert_eq!(decimals(&[77.5, 80.0]), 1);
        assert_eq!(decimals(&[0.0, 0.02, 0.04]), 2);
        assert_eq!(fmt_fixed(-0.0001, 2), "0.00");
        assert_eq!(hyper(3e-4), "3e-4");
        assert_eq!(hyper(0.001), "0.001");
        assert_eq!(hyper(12340.0), "1.234e4");
        assert_eq!(alpha_tick(1e-5), "1e-5");
        assert_eq!(alpha_tick(0.1), "0.1");
        assert_eq!(csv_line(&["a,b", "c\"d", "e"]), "\"a,b\",\"c\"\"d\",e\n");
    }
}
