//! Studies end to end on a tiny synthetic task (an MLP source pretrained on classes 0-2 of an
//! 8x8 IDX set, target classes 3-5): a study interrupted at any point and resumed finds exactly
//! what an uninterrupted one finds, and bad study files are refused with the key named.

mod common;

/// A run seeds burn's device-wide random generator before initializing a network; tests that
/// train share it, so they take turns (otherwise two runs meant to be equal could differ).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

use burn::tensor::Device;
use sptune::regularizer::Scheme;
use sptune::run::PretrainConfig;
use sptune::study::store::{Status, Store};
use sptune::study::{self, RunOptions, StudyConfig};

fn tiny_study(data: &str) -> StudyConfig {
    let mut pre = PretrainConfig::default();
    pre.data.data = data.into();
    pre.data.classes = "0-2".into();
    pre.model.arch = "mlp".into();
    pre.model.hidden = vec![16];
    (pre.train.epochs, pre.train.batch_size, pre.train.lr) = (4, 16, 0.1);
    let mut c = StudyConfig {
        name: "tiny".into(),
        schemes: vec![Scheme::L2, Scheme::L2Sp],
        seeds: 2,
        ..StudyConfig::default()
    };
    c.source.pretrain = Some(pre);
    c.target.data = data.into();
    c.target.classes = "3-5".into();
    c.target.per_class = Some(12);
    (c.train.epochs, c.train.batch_size, c.train.lr) = (6, 8, 0.05);
    c.search.trials = 4;
    c.search.lr = vec![0.05];
    c.freeze_sweep = vec![Scheme::L2Sp];
    c
}

#[test]
fn a_resumed_study_finds_what_an_uninterrupted_one_finds() {
    let _turn = serial();
    let d = tempfile::tempdir().unwrap();
    common::tiny_idx(d.path());
    let data = d.path().to_str().unwrap().to_string();
    let cfg = tiny_study(&data);
    let device = Device::flex();

    let whole = d.path().join("whole");
    let a = study::run(&cfg, &whole, &device, RunOptions::default(), &mut |_| {}).unwrap();
    assert!(a.complete);
    let r = &a.results;
    assert_eq!(r.schemes.len(), 2);
    for row in &r.schemes {
        assert_eq!(row.acc.len(), 2, "{}: one accuracy per seed", row.scheme);
        assert_eq!(
            row.forgetting.len(),
            2,
            "{}: forgetting per seed",
            row.scheme
        );
        assert!(row.acc_ci.mean > 50.0, "{}: {:?}", row.scheme, row.acc_ci);
    }
    assert!(r.schemes[1].acc_minus_l2.is_some());
    assert_eq!(r.search.len(), 8);
    // the MLP has one hidden layer: K = 0 and 1, two seeds each
    assert_eq!(r.freeze.len(), 2);
    assert!(!r.distances.is_empty() && !r.curves.is_empty());
    let html = std::fs::read_to_string(whole.join("report.html")).unwrap();
    for id in [
        "setup",
        "table",
        "accuracy",
        "search",
        "forgetting",
        "distance",
        "freeze",
        "curves",
    ] {
        assert!(
            html.contains(&format!("<section id=\"{id}\"")),
            "no section {id}"
        );
    }
    assert!(html.matches("<svg").count() >= 6, "plots missing");
    assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
    assert!(whole.join("report.md").exists());

    // the same study cut after 3 trials, then a trial left "running" by a killed worker
    let cut = d.path().join("cut");
    let opts = RunOptions {
        max_trials: Some(3),
        ..RunOptions::default()
    };
    let b = study::run(&cfg, &cut, &device, opts, &mut |_| {}).unwrap();
    assert!(!b.complete);
    {
        let text = toml::to_string(&cfg).unwrap();
        let store = Store::open(&study::store_path(&cut), &text).unwrap();
        let t = store.claim("killed", None).unwrap().unwrap();
        assert_eq!(t.status, Status::Running);
    }
    let mut requeued = false;
    let c = study::run(&cfg, &cut, &device, RunOptions::default(), &mut |l| {
        requeued |= l.contains("requeued")
    })
    .unwrap();
    assert!(requeued, "the killed worker's trial was not requeued");
    assert!(c.complete);
    assert_eq!(
        c.results, a.results,
        "resumed study differs from the uninterrupted one"
    );
}

#[test]
fn bad_study_files_name_the_key() {
    let d = tempfile::tempdir().unwrap();
    let w = |name: &str, text: &str| {
        let p = d.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let base = "[source]\ninit = \"a.safetensors\"\n[target]\nclasses = \"5-9\"\n";
    let cases = [
        (
            w("type.toml", &format!("seeds = \"five\"\n{base}")),
            vec!["line 1", "seeds"],
        ),
        (
            w(
                "scheme.toml",
                &format!("schemes = [\"l2\", \"l9-sp\"]\n{base}"),
            ),
            vec!["l9-sp", "line 1"],
        ),
        (
            w(
                "range.toml",
                &format!("{base}[search.alpha]\nl2-sp = [10.0, 0.1]\n"),
            ),
            vec!["search.alpha.l2-sp", "above"],
        ),
        (
            w("unknown.toml", &format!("{base}[search]\ntrails = 4\n")),
            vec!["trails", "line 6"],
        ),
        (
            w("nosource.toml", "[target]\nclasses = \"5-9\"\n"),
            vec!["source"],
        ),
    ];
    for (path, needles) in cases {
        let e = StudyConfig::from_toml(&path).unwrap_err().to_string();
        assert!(e.contains(path.to_str().unwrap()), "{e}");
        assert!(!e.contains('\n'), "{e}");
        for n in needles {
            assert!(e.contains(n), "{e} does not mention {n}");
        }
    }
}

#[test]
fn a_study_folder_of_another_config_is_refused_and_left_alone() {
    let _turn = serial();
    let d = tempfile::tempdir().unwrap();
    common::tiny_idx(d.path());
    let data = d.path().to_str().unwrap().to_string();
    let cfg = tiny_study(&data);
    let dir = d.path().join("s");
    let opts = RunOptions {
        max_trials: Some(1),
        ..RunOptions::default()
    };
    study::run(&cfg, &dir, &Device::flex(), opts.clone(), &mut |_| {}).unwrap();
    let file = study::store_path(&dir);
    let before = std::fs::read(&file).unwrap();
    let mut other = cfg.clone();
    other.seeds = 3;
    let e = study::run(&other, &dir, &Device::flex(), opts, &mut |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("study.sqlite") && e.contains("another study config"),
        "{e}"
    );
    assert_eq!(before, std::fs::read(&file).unwrap());
}

/// A hand-made objective: the target's labels contradict the source's (target class `c` is
/// drawn the way the source's class `c + 1` was), so a scheme that holds the weights at `w0`
/// cannot fit them, and one that lets them move can. L2-SP gets a strong α = 20 (lr·α = 1),
/// L2 a negligible α = 1e-4: validation favours L2, and `auto` must pick it.
#[test]
fn auto_picks_the_scheme_the_objective_favours() {
    let _turn = serial();
    let d = tempfile::tempdir().unwrap();
    let (src_dir, tgt_dir) = (d.path().join("src"), d.path().join("tgt"));
    std::fs::create_dir_all(&src_dir).unwrap();
    std::fs::create_dir_all(&tgt_dir).unwrap();
    common::tiny_idx(&src_dir);
    common::tiny_idx_shifted(&tgt_dir, 1);
    let mut cfg = tiny_study(tgt_dir.to_str().unwrap());
    if let Some(p) = cfg.source.pretrain.as_mut() {
        p.data.data = src_dir.to_str().unwrap().into();
        p.data.classes = "3-5".into();
        p.train.epochs = 6;
    }
    cfg.train.epochs = 10;
    cfg.search.trials = 1;
    cfg.search.halving = false;
    cfg.search.alpha.insert("l2".into(), [1e-4, 1e-4]);
    cfg.search.alpha.insert("l2-sp".into(), [20.0, 20.0]);
    let out = d.path().join("chosen.safetensors");
    let o = study::auto::auto(
        &cfg,
        &d.path().join("auto"),
        &out,
        &Device::flex(),
        &mut |_| {},
    )
    .unwrap();
    eprintln!("{}", o.table);
    assert_eq!(o.winner, Scheme::L2, "{}", o.table);
    assert!(o.val_acc > 0.9, "{}", o.table);
    assert!(o.table.contains("l2 **(chosen)**"), "{}", o.table);
    assert!(out.exists());
    // only the winner got a final run
    let store = Store::open_existing(&study::store_path(&d.path().join("auto"))).unwrap();
    let finals: Vec<String> = store
        .trials_of("final")
        .unwrap()
        .into_iter()
        .map(|t| t.key)
        .collect();
    assert_eq!(finals, vec!["final/l2/seed1"]);
}

/// Every preset and the documented example file are valid studies, and a study's stored text
/// reads back to the same study (what `--jobs` helpers rely on).
#[test]
fn presets_and_the_example_file_are_valid_and_read_back() {
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/study.toml");
    let mut all = vec![StudyConfig::from_toml(&example).unwrap()];
    for p in StudyConfig::PRESETS {
        all.push(StudyConfig::preset(p).unwrap());
    }
    for cfg in all {
        cfg.validate().unwrap();
        let text = study::config_text(&cfg).unwrap();
        let back = StudyConfig::from_toml_text(&text, std::path::Path::new("stored")).unwrap();
        assert_eq!(back, cfg, "{}", cfg.name);
        assert_eq!(study::config_text(&back).unwrap(), text);
    }
    // the example's partial [source.pretrain.train] keeps pretraining's defaults
    let ex = StudyConfig::from_toml(&example).unwrap();
    let pre = ex.source.pretrain.unwrap();
    assert_eq!(pre.train.reg, Scheme::None);
    assert_eq!(pre.train.epochs, 2);
}

/// The example file documents every study key: each `[table]` and `key =` that the
/// `fashion-mnist-keep` preset writes (with `[final] interpolate` and the source's `data` and
/// `classes` set, keys that are left out at their defaults) appears in examples/study.toml,
/// set or commented out, under its table.
#[test]
fn the_example_file_shows_every_study_key() {
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/study.toml"),
    )
    .unwrap();
    let mut cfg = StudyConfig::preset("fashion-mnist-keep").unwrap();
    cfg.finals.interpolate = vec![0.5];
    cfg.source.data = Some("fashion-mnist".into());
    cfg.source.classes = Some("0-4".into());
    let text = study::config_text(&cfg).unwrap();
    // (table, key) pairs, from the stored text and from the example (commented lines too)
    let pairs = |t: &str, commented: bool| {
        let mut table = String::new();
        let mut out = std::collections::BTreeSet::new();
        for line in t.lines() {
            let mut l = line.trim();
            if commented && let Some(rest) = l.strip_prefix('#') {
                l = rest.trim();
            }
            if let Some(name) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
                // pretraining's data and train tables take the target's and train's keys
                table = match name.trim_matches('[') {
                    "source.pretrain.data" => "target",
                    "source.pretrain.train" => "train",
                    t => t,
                }
                .to_string();
                out.insert((table.clone(), String::new()));
            } else if let Some((key, _)) = l.split_once('=')
                && !key.trim().is_empty()
                && key
                    .trim()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-\"".contains(c))
            {
                out.insert((table.clone(), key.trim().trim_matches('"').to_string()));
            }
        }
        out
    };
    let wanted = pairs(&text, false);
    let shown = pairs(&example, true);
    assert!(
        wanted.len() > 30,
        "only {} keys in the stored text",
        wanted.len()
    );
    let missing: Vec<_> = wanted
        .iter()
        .filter(|p| !shown.contains(p))
        .map(|(t, k)| format!("[{t}] {k}"))
        .collect();
    assert!(missing.is_empty(), "examples/study.toml lacks: {missing:?}");
}
