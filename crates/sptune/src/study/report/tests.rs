use super::chart::hyper;
use super::chart::{alpha_tick, decimals, fmt_fixed, nice_ticks};
use super::tables::csv_line;
use super::*;
use crate::study::results::{Curve, FreezePoint, Interval, LayerDistance, SchemeRow, SearchPoint};

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
        sources: if l2 { 1 } else { 2 },
        acc_between_sources: (!l2).then_some(0.125),
        forgetting_between_sources: (!l2).then_some(0.875),
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
    // the rows with two sources get the between-sources table, the one-source row does not
    let between = &h[h.find("<h3>Between sources</h3>").expect("the table")..];
    let between = &between[..between.find("</table>").unwrap()];
    assert!(between.contains("<td>l2-sp</td><td class=\"num\">2</td><td class=\"num\">2</td><td class=\"num\">12 %</td><td class=\"num\">88 %</td>"), "{between}");
    assert!(!between.contains("<td>l2</td>"));
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
    assert!(rows[0].contains("target acc ± CI") && rows[0].contains("forgetting − L2 (paired)"));
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
    assert!(schemes.contains("\n\"odd <&> name\",0.1,") || schemes.contains("\nodd <&> name,0.1,"));
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
