//! What the plots share: the SVG frame with its axes and legend, markers, whiskers, colours
//! (Okabe–Ito), the scheme palette and tick formatting.

use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::study::results::*;

/// Every scheme name in order of first appearance (the table's order first), so that a scheme
/// has one colour and marker in every plot.
pub(super) struct Palette {
    pub(super) names: Vec<String>,
}

impl Palette {
    /// Legend entries of a line plot: one line (with or without markers) per scheme index.
    pub(super) fn line_legend<'a, T: 'a>(
        &self,
        series: impl IntoIterator<Item = &'a (usize, T)>,
        marker: bool,
    ) -> Vec<(String, Key)> {
        series
            .into_iter()
            .map(|(i, _)| (self.names[*i].clone(), Key::Line { i: *i, marker }))
            .collect()
    }

    pub(super) fn of(r: &StudyResults) -> Self {
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

    pub(super) fn index(&self, name: &str) -> usize {
        self.names.iter().position(|n| n == name).unwrap_or(0)
    }
}

pub(super) const W: u32 = 640;
pub(super) const H: u32 = 360;
/// The legend's column at the right of each plot.
pub(super) const LEGEND_W: u32 = 150;
pub(super) const FONT: &str = "sans-serif";
// plotters writes `font-size = size / 1.24` into the SVG: these are about 13, 14.5 and 13 px.
pub(super) const TICK_SIZE: f64 = 16.0;
pub(super) const DESC_SIZE: f64 = 18.0;
pub(super) const LEGEND_SIZE: f64 = 16.0;
pub(super) const TEXT: RGBColor = RGBColor(0x22, 0x22, 0x22);
pub(super) const GRID: RGBColor = RGBColor(0xe4, 0xe4, 0xe4);
pub(super) const MUTED: RGBColor = RGBColor(0x77, 0x77, 0x77);
/// Okabe–Ito colours (colour-blind safe) and two more.
pub(super) const COLORS: [RGBColor; 9] = [
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
pub(super) const SHAPES: usize = 5;

pub(super) type PlotResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;
pub(super) type Root<'a> = DrawingArea<SVGBackend<'a>, Shift>;
pub(super) type Px = (i32, i32);

pub(super) fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

pub(super) enum XAxis {
    Linear { lo: f64, hi: f64, ticks: Vec<f64> },
    Log { lo: f64, hi: f64, ticks: Vec<f64> },
}

/// A linear or log axis with fixed ticks (plotters' own key points skip the formatter for
/// decorated ranges).
pub(super) struct Axis {
    pub(super) lo: f64,
    pub(super) hi: f64,
    pub(super) log: bool,
    pub(super) ticks: Vec<f64>,
}

impl Axis {
    pub(super) fn t(&self, v: f64) -> f64 {
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

pub(super) enum Key {
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

pub(super) struct Frame<'a> {
    pub(super) x: XAxis,
    pub(super) y: (f64, f64),
    pub(super) x_desc: &'a str,
    pub(super) y_desc: &'a str,
    pub(super) x_fmt: &'a dyn Fn(&f64) -> String,
    pub(super) legend: Vec<(String, Key)>,
}

/// Draws the axes of `frame` into a 640x360 SVG with the legend at the right, then calls `draw`
/// with the root area and the map from data to pixel coordinates.
pub(super) fn plot(
    frame: Frame,
    draw: impl FnOnce(&Root, &dyn Fn(f64, f64) -> Px) -> PlotResult<()>,
) -> std::result::Result<String, String> {
    let mut svg = String::new();
    plot_into(&mut svg, frame, draw).map_err(|e| e.to_string())?;
    Ok(svg)
}

pub(super) fn plot_into(
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

pub(super) fn draw_legend(root: &Root, entries: &[(String, Key)]) -> PlotResult<()> {
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
pub(super) fn marker(
    root: &Root,
    (x, y): Px,
    i: usize,
    c: RGBColor,
    filled: bool,
    r: i32,
) -> PlotResult<()> {
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
pub(super) fn whisker(root: &Root, x: i32, lo: i32, hi: i32, c: RGBColor) -> PlotResult<()> {
    let s = c.stroke_width(2);
    root.draw(&PathElement::new(vec![(x, lo), (x, hi)], s))?;
    root.draw(&PathElement::new(vec![(x - 5, lo), (x + 5, lo)], s))?;
    root.draw(&PathElement::new(vec![(x - 5, hi), (x + 5, hi)], s))?;
    Ok(())
}

/// The whisker of an interval, if it has a finite half-width.
pub(super) fn draw_ci(
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

pub(super) fn line(root: &Root, pts: Vec<Px>, c: RGBColor) -> PlotResult<()> {
    if pts.len() > 1 {
        root.draw(&PathElement::new(pts, c.stroke_width(2)))?;
    }
    Ok(())
}

pub(super) struct CatItem {
    pub(super) name: String,
    pub(super) color: usize,
    pub(super) iv: Interval,
    pub(super) seeds: Vec<f64>,
}

/// One column per scheme: the mean (filled marker), its interval (whisker), the seeds (hollow).
pub(super) fn category_plot(
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

/// The data range of the finite `values`, at least `min_span` wide, padded by 6 % each side.
pub(super) fn padded(values: &[f64], min_span: f64) -> (f64, f64) {
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
pub(super) fn nice_ticks(lo: f64, hi: f64, n: usize, integer: bool) -> Vec<f64> {
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
pub(super) fn decimals(ticks: &[f64]) -> usize {
    (0..8)
        .find(|&d| {
            let f = 10f64.powi(d as i32);
            ticks
                .iter()
                .all(|t| ((t * f).round() - t * f).abs() < 1e-6 * f.max(1.0))
        })
        .unwrap_or(8)
}

pub(super) fn fmt_fixed(v: f64, dec: usize) -> String {
    let s = format!("{:.*}", dec, v);
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s
    }
}

/// `0.01`, `1`, `100` for α between 10^-2 and 10^3, else `1e-4`.
pub(super) fn alpha_tick(v: f64) -> String {
    let e = v.log10().round() as i32;
    if (-2..=3).contains(&e) {
        hyper(10f64.powi(e))
    } else {
        format!("1e{e}")
    }
}

pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The tensors in network order (order of first appearance).
pub(super) fn layer_order(r: &StudyResults) -> Vec<String> {
    let mut layers: Vec<String> = Vec::new();
    for d in &r.distances {
        if !layers.contains(&d.layer) {
            layers.push(d.layer.clone());
        }
    }
    layers
}

/// A hyperparameter: plain decimals between 0.001 and 10 000, else `3e-4`.
pub(super) fn hyper(v: f64) -> String {
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

/// What a cell without a value shows.
pub(super) const DASH: &str = "—";
