//! A study that keeps the source: on a target whose labels contradict the source's, the
//! `budget` objective chooses a strong pull toward w0 that the target-only choice does not, and
//! a budget no point meets is said so, with the point that forgets least.
//!
//! The task (tests/common): 8x8 images whose class is the bright row. The source (an MLP) is
//! pretrained on classes 0-2 of the plain set; the target is the same three classes drawn one
//! row lower (class c has row c+1 bright), so the source's own head, kept by the fine-tune (the
//! class names are the same), must unlearn the source to fit the target: every point that fits
//! it forgets, and only a strong L2-SP keeps the source.

mod common;

use burn::tensor::Device;
use sptune::regularizer::Scheme;
use sptune::run::PretrainConfig;
use sptune::study::config::{Method, Objective};
use sptune::study::objective::Goal;
use sptune::study::store::Store;
use sptune::study::{self, RunOptions, StudyConfig};

fn study_config(source: &str, target: &str) -> StudyConfig {
    let mut pre = PretrainConfig::default();
    pre.data.data = source.into();
    pre.data.classes = "0-2".into();
    pre.data.per_class = Some(20);
    pre.model.arch = "mlp".into();
    pre.model.hidden = vec![16];
    (pre.train.epochs, pre.train.batch_size, pre.train.lr) = (6, 16, 0.1);
    let mut c = StudyConfig {
        name: "keep".into(),
        schemes: vec![Scheme::L2Sp],
        seeds: 2,
        ..StudyConfig::default()
    };
    c.source.pretrain = Some(pre);
    c.source.data = Some(source.into());
    c.source.classes = Some("0-2".into());
    c.source.val_images = 30;
    c.target.data = target.into();
    c.target.classes = "0-2".into();
    c.target.per_class = Some(16);
    (c.train.epochs, c.train.batch_size, c.train.lr) = (8, 8, 0.05);
    c.search.method = Method::Grid;
    c.search.grid_points = 3; // α = 1e-4, 0.032, 10
    c.search.alpha.insert("l2-sp".into(), [1e-4, 10.0]);
    c.search.lr = vec![0.05];
    c.search.halving = false;
    c.search.objective = Objective::Budget;
    c.search.max_forgetting = 3.0;
    c.finals.interpolate = vec![0.0, 0.5, 1.0];
    c
}

#[test]
fn budget_chooses_what_keeps_the_source_and_says_when_nothing_does() {
    let d = tempfile::tempdir().unwrap();
    let (src, tgt) = (d.path().join("src"), d.path().join("tgt"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&tgt).unwrap();
    common::tiny_idx(&src);
    common::tiny_idx_shifted(&tgt, 1);
    let cfg = study_config(src.to_str().unwrap(), tgt.to_str().unwrap());
    let dir = d.path().join("study");
    let o = study::run(
        &cfg,
        &dir,
        &Device::flex(),
        RunOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    assert!(o.complete);
    let trials = Store::open_existing(&study::store_path(&dir))
        .unwrap()
        .trials()
        .unwrap();
    // every search trial measured its forgetting on the 30 held-out source images
    let search: Vec<_> = trials.iter().filter(|t| t.phase == "search").collect();
    assert_eq!(search.len(), 3);
    let forgetting = |alpha: f64| {
        search
            .iter()
            .find(|t| (t.params["alpha"].as_f64().unwrap() - alpha).abs() < 1e-9 * alpha.max(1.0))
            .and_then(|t| t.metrics.as_ref()?["val_forgetting"].as_f64())
            .unwrap()
    };
    let (weak, strong) = (forgetting(1e-4), forgetting(10.0));
    assert!(
        weak > 3.0 && strong <= 3.0,
        "the task should make a weak pull forget and a strong one keep: {weak} / {strong}"
    );

    let target = study::chosen(&trials, &Goal::target())["l2-sp"];
    let budget = study::chosen(&trials, &Goal::of(&cfg.search))["l2-sp"];
    assert!(
        budget.point.alpha > target.point.alpha,
        "budget chose α = {}, target-only α = {}",
        budget.point.alpha,
        target.point.alpha
    );
    assert!(budget.feasible && budget.forgetting.unwrap() <= 3.0);
    assert!(target.forgetting.unwrap() > 3.0);
    // the study ran its finals at the budget's point, and the target-only point's as reference
    let row = &o.results.schemes[0];
    assert_eq!(row.alpha, budget.point.alpha);
    let reference = o.results.choice.reference.as_ref().expect("reference runs");
    assert_eq!(reference.acc_ci.n, 2);
    assert!(
        o.results.choice.recommendation[0].starts_with("Use l2-sp with alpha=1.000e1"),
        "{:?}",
        o.results.choice.recommendation
    );

    // the finals interpolated toward the source: at a = 1 the finals themselves (the MLP has
    // no BatchNorm to recalibrate), at a = 0 the source itself (the head is shared: no
    // forgetting at all)
    let curve: Vec<_> = o.results.interpolation.iter().collect();
    assert_eq!(curve.len(), 3);
    assert_eq!(curve[2].a, 1.0);
    assert!((curve[2].acc.mean - row.acc_ci.mean).abs() < 1e-9);
    assert!((curve[2].forgetting.unwrap().mean - row.forgetting_ci.unwrap().mean).abs() < 1e-9);
    assert_eq!(curve[0].a, 0.0);
    assert!(
        curve[0].forgetting.unwrap().mean.abs() < 1e-9,
        "{:?}",
        curve[0]
    );

    // a budget none of the weak points meets: said so, and the least-forgetting one is taken
    let weak_only: Vec<_> = trials
        .iter()
        .filter(|t| t.phase != "search" || t.params["alpha"].as_f64().unwrap() < 1.0)
        .cloned()
        .collect();
    let least = weak_only
        .iter()
        .filter(|t| t.phase == "search")
        .min_by(|a, b| {
            let f = |t: &&study::store::Trial| {
                t.metrics.as_ref().unwrap()["val_forgetting"]
                    .as_f64()
                    .unwrap()
            };
            f(a).total_cmp(&f(b))
        })
        .unwrap()
        .params["alpha"]
        .as_f64()
        .unwrap();
    let mut strict = cfg.clone();
    // just below what the least-forgetting weak point forgets
    strict.search.max_forgetting = weak.min(forgetting(0.0316227766)) - 0.5;
    let r = study::aggregate(&strict, &weak_only);
    assert_eq!(r.schemes[0].alpha, least);
    assert!(!r.schemes[0].feasible);
    assert!(
        r.choice
            .recommendation
            .iter()
            .any(|l| l.starts_with("No search point met the budget")),
        "{:?}",
        r.choice.recommendation
    );
}
