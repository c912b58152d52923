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

/// Runs seed burn's device-wide generator: the tests here take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

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

/// A temporary folder with the source task (`src/`) and the contradicting target (`tgt/`),
/// and the study over them.
fn tasks() -> (tempfile::TempDir, std::path::PathBuf, StudyConfig) {
    let d = tempfile::tempdir().unwrap();
    let (src, tgt) = (d.path().join("src"), d.path().join("tgt"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&tgt).unwrap();
    common::tiny_idx(&src);
    common::tiny_idx_shifted(&tgt, 1);
    let cfg = study_config(src.to_str().unwrap(), tgt.to_str().unwrap());
    (d, src, cfg)
}

#[test]
fn budget_chooses_what_keeps_the_source_and_says_when_nothing_does() {
    let _turn = serial();
    let (d, _, cfg) = tasks();
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

/// `[source] seeds = 2`: the study pretrains a second source with the next training seed and
/// runs every final (and the reference) from each; each final is measured against its own
/// source, and the intervals are over the four (source, seed) runs.
#[test]
fn several_sources_each_final_from_its_own_source() {
    let _turn = serial();
    let (d, src, mut cfg) = tasks();
    cfg.source.seeds = 2;
    cfg.finals.interpolate.clear();
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
    let read = |p: &std::path::Path| sptune::models::checkpoint::Checkpoint::read(p).unwrap();
    let (s0, s1) = (
        read(&dir.join("source.safetensors")),
        read(&dir.join("source-s1.safetensors")),
    );
    // squared distance over the tensors both have
    let dist = |a: &sptune::models::checkpoint::Checkpoint,
                b: &sptune::models::checkpoint::Checkpoint| {
        a.tensors
            .iter()
            .filter_map(|(n, (_, x))| b.tensors.get(n).map(|(_, y)| (x, y)))
            .flat_map(|(x, y)| x.iter().zip(y).map(|(u, v)| ((u - v) as f64).powi(2)))
            .sum::<f64>()
    };
    assert!(dist(&s0, &s1) > 0.0, "the two sources are the same network");

    let trials = Store::open_existing(&study::store_path(&dir))
        .unwrap()
        .trials()
        .unwrap();
    let mut finals: Vec<&str> = trials
        .iter()
        .filter(|t| t.phase == "final")
        .map(|t| t.key.as_str())
        .collect();
    finals.sort();
    assert_eq!(
        finals,
        [
            "final/l2-sp/seed1",
            "final/l2-sp/seed2",
            "final/l2-sp/source1/seed1",
            "final/l2-sp/source1/seed2"
        ]
    );
    // the source test images (all test images of classes 0-2) and each source's accuracy
    let test = sptune::task::load(
        &sptune::task::DataConfig {
            data: src.to_str().unwrap().into(),
            classes: "0-2".into(),
            ..Default::default()
        },
        1,
    )
    .unwrap()
    .test;
    let dev = Device::flex();
    for t in trials.iter().filter(|t| t.phase == "final") {
        let own = if t.key.contains("source1") { &s1 } else { &s0 };
        let other = if t.key.contains("source1") { &s0 } else { &s1 };
        let m = t.metrics.as_ref().unwrap();
        let tuned = read(std::path::Path::new(m["checkpoint"].as_str().unwrap()));
        // the strong chosen pull (α = 10) keeps each final next to the source it started from
        assert!(
            dist(&tuned, own) < dist(&tuned, other),
            "{}: nearer the other source",
            t.key
        );
        let f = sptune::eval::forgetting(own, &tuned, &test, &dev).unwrap();
        let stored = m["forgetting"].as_f64().unwrap();
        assert!(
            (stored - f.drop_points).abs() < 1e-9,
            "{}: stored forgetting {stored}, against its own source {}",
            t.key,
            f.drop_points
        );
    }
    let row = &o.results.schemes[0];
    assert_eq!(row.sources, 2);
    assert_eq!(row.acc.len(), 4);
    assert_eq!(row.acc_ci.n, 4);
    // the share between sources, from the stored trials grouped by their keys
    let group = |k: bool| -> Vec<f64> {
        trials
            .iter()
            .filter(|t| t.phase == "final" && t.key.contains("source1") == k)
            .map(|t| t.metrics.as_ref().unwrap()["forgetting"].as_f64().unwrap())
            .collect()
    };
    assert_eq!(
        row.forgetting_between_sources,
        sptune::study::stats::between_group_share(&[group(false), group(true)])
    );
    let reference = o.results.choice.reference.as_ref().expect("reference runs");
    assert_eq!(
        reference.acc_ci.n, 4,
        "the reference runs from both sources"
    );
    assert!(o.results.setup.contains("from each of 2 sources"));
}

/// `auto` under a budget also interpolates the target-only choice toward the source, choosing
/// the weight on the validation images, and returns the interpolated model when it beats the
/// budget's own choice there. At a = 0 the MLP is the source itself (the head is shared):
/// nothing forgotten; at a = 1 it is the search's own fine-tune of that point: the search's
/// validation accuracy.
#[test]
fn auto_interpolates_the_target_only_choice_within_the_budget() {
    let _turn = serial();
    let (d, _, cfg) = tasks();
    let (dir, out) = (d.path().join("auto"), d.path().join("m.safetensors"));
    let o = study::auto::auto(&cfg, &dir, &out, &Device::flex(), &mut |_| {}).unwrap();
    let ip = o
        .interpolated
        .as_ref()
        .expect("a target-only choice to interpolate");
    eprintln!("{ip:?}\nbudget choice: {:.3} val acc", o.val_acc);
    assert!(
        ip.point.alpha < 1.0,
        "the target-only choice is the weak pull"
    );
    assert_eq!(ip.sweep.len(), study::auto::AUTO_SWEEP.len());
    assert!(
        ip.sweep[0].2.abs() < 1e-9,
        "a = 0 forgets: {:?}",
        ip.sweep[0]
    );
    let trials = Store::open_existing(&study::store_path(&dir))
        .unwrap()
        .trials()
        .unwrap();
    let searched = trials
        .iter()
        .find(|t| {
            t.phase == "search"
                && (t.params["alpha"].as_f64().unwrap() - ip.point.alpha).abs() < 1e-12
        })
        .unwrap();
    let val_acc = searched.metrics.as_ref().unwrap()["val_acc"]
        .as_f64()
        .unwrap();
    assert!(
        (ip.sweep[10].1 - val_acc).abs() < 1e-9,
        "a = 1: {:?}, the search's trial: {val_acc}",
        ip.sweep[10]
    );
    assert!(ip.val_forgetting <= cfg.search.max_forgetting);
    let own_meets = o
        .val_forgetting
        .is_none_or(|f| f <= cfg.search.max_forgetting);
    assert_eq!(ip.returned, ip.val_acc > o.val_acc || !own_meets);
    let read = |p: &std::path::Path| sptune::models::checkpoint::Checkpoint::read(p).unwrap();
    let saved = read(&out);
    // on this task the weak fine-tune at a small weight fits the target and keeps the
    // source, where the budget's strong pull cannot fit the target
    assert!(ip.returned, "the interpolation should win here");
    {
        // (1 - a)·θ0 + a·θ of the reference final, in f64, tensor by tensor
        let (w0, w) = (
            read(&dir.join("source.safetensors")),
            read(&dir.join("reference/reference_l2-sp_seed1.safetensors")),
        );
        for (name, (_, x)) in &w.tensors {
            let x0 = &w0.tensors[name].1;
            for ((v, &v0), &v1) in saved.tensors[name].1.iter().zip(x0).zip(x) {
                let want = (1.0 - ip.a) * v0 as f64 + ip.a * v1 as f64;
                assert!((*v as f64 - want).abs() < 1e-6, "{name}: {v} vs {want}");
            }
        }
        assert!(
            o.recommendation
                .iter()
                .any(|l| l.starts_with("Returned instead"))
        );
    }
}

/// When no search point meets the budget, `auto` still gives what was asked for: the budget's
/// own choice (here the only point, the weak pull, which forgets more than 3 points and is
/// also the target-only choice) interpolated toward the source at the best weight within the
/// budget is returned, whatever its accuracy, and the recommendation says that no search point
/// met the budget. The returned model is `(1 - a)·θ0 + a·θ` of that point's final, checked
/// tensor by tensor. Before, no interpolation was tried when the two choices were the same
/// point, and one that met the budget was returned only when more accurate.
#[test]
fn auto_interpolates_its_own_choice_when_no_point_meets_the_budget() {
    let _turn = serial();
    let (d, _, mut cfg) = tasks();
    cfg.search.alpha.insert("l2-sp".into(), [1e-4, 1e-4]);
    let (dir, out) = (d.path().join("auto"), d.path().join("m.safetensors"));
    let o = study::auto::auto(&cfg, &dir, &out, &Device::flex(), &mut |_| {}).unwrap();
    let forgot = o.val_forgetting.expect("measured");
    assert!(
        forgot > cfg.search.max_forgetting,
        "the weak pull forgets {forgot}"
    );
    let ip = o
        .interpolated
        .as_ref()
        .expect("an interpolation of its own choice");
    assert_eq!(ip.point, o.point);
    assert!(ip.returned, "{ip:?}");
    assert!(
        ip.val_forgetting <= cfg.search.max_forgetting && ip.a < 1.0,
        "{ip:?}"
    );
    assert!(
        o.recommendation
            .iter()
            .any(|l| l.starts_with("Returned instead")
                && l.contains("no search point met the budget")),
        "{:?}",
        o.recommendation
    );
    let read = |p: &std::path::Path| sptune::models::checkpoint::Checkpoint::read(p).unwrap();
    let (saved, w0, w) = (
        read(&out),
        read(&dir.join("source.safetensors")),
        read(&study::final_checkpoint(&dir, Scheme::L2Sp, 1)),
    );
    for (name, (_, x)) in &w.tensors {
        for ((v, &v0), &v1) in saved.tensors[name].1.iter().zip(&w0.tensors[name].1).zip(x) {
            let want = (1.0 - ip.a) * v0 as f64 + ip.a * v1 as f64;
            assert!((*v as f64 - want).abs() < 1e-6, "{name}: {v} vs {want}");
        }
    }
}
