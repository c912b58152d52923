//! The main table (HTML and Markdown) and the CSV files.

use std::fmt::Write as _;

use super::chart::{DASH, hyper, layer_order};
use super::{empty, esc, section};
use crate::study::results::{Interval, SchemeRow, StudyResults};

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

pub(super) const COLUMNS: [&str; 9] = [
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

pub(super) const UNITS_NOTE: &str = "Accuracies in percent, forgetting in points of source accuracy lost; \
± is the half-width of the 95 % interval (Student t over seeds); paired differences are \
taken seed by seed against L2.";

pub(super) fn table_section(r: &StudyResults) -> String {
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

pub(super) fn table_cells(s: &SchemeRow) -> Vec<String> {
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

/// `84.20 ± 1.38`; `84.20 (n=1)` without a half-width; signed for differences.
pub(super) fn ci(iv: Option<Interval>, signed: bool) -> String {
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

/// Backslash-escapes Markdown punctuation (a table cell stays one cell, no inline HTML).
pub(super) fn md_esc(s: &str) -> String {
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
pub(super) fn num(v: f64) -> String {
    if v.is_nan() {
        String::new()
    } else {
        format!("{v}")
    }
}

pub(super) fn csv_line<S: AsRef<str>>(fields: &[S]) -> String {
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
