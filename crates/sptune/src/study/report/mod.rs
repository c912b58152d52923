//! The study's report: one self-contained HTML page (inline CSS and SVG plots drawn with
//! `plotters`' SVG backend; no scripts, fonts or external links), the main table as Markdown,
//! and the raw numbers as CSV files.
//!
//! Sections of the page, each a `<section id="...">`: `setup`, `tradeoff` (the recommendation
//! and target accuracy against forgetting: [`tradeoff`]), `table`, `accuracy`, `search`,
//! `forgetting`, `distance`, `freeze`, `curves`. A section whose data is empty says so in one
//! sentence instead of drawing an empty plot. Intervals are the 95 % intervals of
//! [`Interval`]; a NaN half-width (one seed) draws no whisker and prints `(n=1)`.
//!
//! One file per plot, so a new plot goes in one place: [`tradeoff`] (the recommendation, the
//! search's and the finals' accuracy against forgetting), [`accuracy`], [`search`] (validation
//! accuracy against α), [`forgetting`], [`distance`] (distance to `w0` per layer), [`freeze`],
//! [`curves`] (training curves); [`tables`] holds the main table, the Markdown and the CSV
//! files, [`chart`] the drawing the plots share (axes, legend, markers, whiskers, colours).

mod accuracy;
mod chart;
mod curves;
mod distance;
mod forgetting;
mod freeze;
mod search;
mod tables;
#[cfg(test)]
mod tests;
mod tradeoff;

use tables::md_esc;
pub use tables::{csv, markdown};

use super::results::StudyResults;
use crate::util::write_atomic;
use crate::{Error, Result};
use chart::Palette;
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
    h.push_str(&tables::table_section(r));
    h.push_str(&accuracy::accuracy_section(r, &pal));
    h.push_str(&search::search_section(r, &pal));
    h.push_str(&forgetting::forgetting_section(r, &pal));
    h.push_str(&distance::distance_section(r, &pal));
    h.push_str(&freeze::freeze_section(r, &pal));
    h.push_str(&curves::curves_section(r, &pal));
    h.push_str("</main>\n</body>\n</html>\n");
    h
}

/// What [`write`] writes for `out`: `out` itself, its `.md` sibling and its `_csv/` folder.
pub fn outputs(out: &Path) -> Result<[PathBuf; 3]> {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::invalid("report path", format!("{}: no file name", out.display())))?;
    Ok([
        out.to_path_buf(),
        out.with_file_name(format!("{stem}.md")),
        out.with_file_name(format!("{stem}_csv")),
    ])
}

/// Writes the HTML to `out` and beside it `<stem>.md` (title, setup and the main table) and
/// the CSV files in `<stem>_csv/`, each atomically (temporary file, then rename); creates the
/// folders it needs. Returns the paths written, the HTML first.
pub fn write(r: &StudyResults, out: &Path) -> Result<Vec<PathBuf>> {
    let [out, md_path, csv_dir] = outputs(out)?;
    let out = out.as_path();
    if let Some(dir) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let mut written = Vec::new();
    write_atomic(out, html(r).as_bytes())?;
    written.push(out.to_path_buf());

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
        std::fs::create_dir_all(&csv_dir).map_err(|e| Error::io(&csv_dir, e))?;
        for (name, text) in files {
            let p = csv_dir.join(name);
            write_atomic(&p, text.as_bytes())?;
            written.push(p);
        }
    }
    Ok(written)
}

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

pub(super) fn section(id: &str, title: &str, body: &str) -> String {
    format!(
        "<section id=\"{id}\">\n<h2>{}</h2>\n{body}</section>\n",
        esc(title)
    )
}

pub(super) fn empty(sentence: &str) -> String {
    format!("<p class=\"empty\">{}</p>\n", esc(sentence))
}

pub(super) fn figure(svg: std::result::Result<String, String>, caption: &str) -> String {
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

pub(super) fn esc(s: &str) -> String {
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
