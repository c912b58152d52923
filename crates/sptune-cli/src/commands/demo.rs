//! `sptune demo`: the main job on the embedded default data set.
//!
//! 1. pretrain a narrow ResNet-18 (small stem) on Fashion-MNIST classes 0-4 (the source task)
//!    and, for the Fisher schemes, compute its exact diagonal Fisher on source training images;
//! 2. fine-tune it on classes 5-9 with `--per-class` images per class, once per scheme and seed
//!    (same seeds for every scheme, so the comparison is paired);
//! 3. measure target test accuracy and the forgetting of the source task;
//! 4. print a table (mean ± 95 % CI over seeds) and write `demo.md` / `demo.json`.

use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;
use sptune::Choice;
use sptune::models::checkpoint::Checkpoint;
use sptune::regularizer::Scheme;
use sptune::run::{FinetuneConfig, FisherConfig, ModelConfig, PretrainConfig, StartConfig};
use sptune::task::{self, DataConfig};
use sptune::train::TrainConfig;

use super::Global;
use crate::args::DemoArgs;
use crate::report::Bar;

/// Mean and half-width of a 95 % t-interval.
pub fn mean_ci(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (m, f64::NAN);
    }
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    // two-sided 97.5 % quantiles of Student's t for 1..10 degrees of freedom
    const T: [f64; 10] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    ];
    let t = T.get(v.len() - 2).copied().unwrap_or(1.96);
    (m, t * (var / n).sqrt())
}

/// Runs the demo.
pub fn run(a: DemoArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let schemes: Vec<Scheme> = a.schemes.clone();
    let mut alphas = std::collections::HashMap::new();
    for kv in a.alphas.split(',').filter(|s| !s.trim().is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("invalid value for --alphas: {kv:?} is not scheme=value"))?;
        let v: f64 = v
            .trim()
            .parse()
            .with_context(|| format!("invalid value for --alphas: {v:?} is not a number"))?;
        alphas.insert(Scheme::parse_for("--alphas", k.trim())?, v);
    }
    let alpha_of = |s: &Scheme| -> anyhow::Result<f64> {
        alphas
            .get(s)
            .copied()
            .with_context(|| format!("invalid value for --alphas: no alpha for {}", s.name()))
    };
    std::fs::create_dir_all(&a.out_dir)
        .with_context(|| format!("creating {}", a.out_dir.display()))?;
    let t0 = std::time::Instant::now();
    let source_path = a.out_dir.join("source.safetensors");
    let source_cfg = PretrainConfig {
        out: Some(source_path.clone()),
        run_dir: Some(a.out_dir.join("source.run")),
        model: ModelConfig {
            arch: "resnet18".into(),
            width: a.width,
            small_stem: Some(true),
            hidden: vec![],
        },
        data: DataConfig {
            data: a.data.clone(),
            classes: "0-4".into(),
            per_class: Some(a.source_per_class),
            test_limit: (a.test_limit > 0).then_some(a.test_limit),
            ..DataConfig::default()
        },
        train: TrainConfig {
            epochs: a.source_epochs,
            batch_size: 64,
            lr: 0.05,
            ..TrainConfig::pretrain()
        },
    };
    if !g.quiet {
        eprintln!("[1/2] pretraining the source model on classes 0-4 ...");
    }
    let mut bar = Bar::new("source", g.quiet);
    let src = sptune::run::pretrain(&source_cfg, &g.device, &mut |p| bar.event(p))?.report;
    bar.finish();
    if !g.quiet {
        eprintln!(
            "source model: test accuracy {:.2}% on classes 0-4",
            100.0 * src.test_acc
        );
    }
    let source = Checkpoint::read(&source_path)?;
    let source_spec = source.spec()?;
    let source_test = task::load(
        &DataConfig {
            data: a.data.clone(),
            classes: "0-4".into(),
            test_limit: (a.test_limit > 0).then_some(a.test_limit),
            ..DataConfig::default()
        },
        source_spec.input[0],
    )?
    .test;
    // the source model's own accuracy on these images, measured once by the pretrain run
    let source_acc = 100.0 * src.test_acc;
    let fisher_path = a.out_dir.join("source.fisher.safetensors");
    let mut fisher_note = String::new();
    if schemes.iter().any(|s| s.needs_fisher()) {
        if !g.quiet {
            eprintln!(
                "[1/2] exact Fisher of the source model on {} source training images ...",
                a.fisher_samples
            );
        }
        let c = super::fisher::fisher_file(
            &FisherConfig {
                model: source_path.clone(),
                data: DataConfig {
                    data: a.data.clone(),
                    classes: "0-4".into(),
                    ..DataConfig::default()
                },
                samples: a.fisher_samples,
                out: Some(fisher_path.clone()),
                ..FisherConfig::default()
            },
            g,
        )?;
        fisher_note = format!(
            "Fisher: exact, on the first {} source training images ({:.0} s), normalized to mean 1 over S, capped at {}; \
             the Fisher schemes use the alpha of their plain counterpart.\n",
            c.fisher.samples, c.seconds, a.fisher_max
        );
    }
    let mut rows = Vec::new();
    for scheme in &schemes {
        let (mut accs, mut drops) = (vec![], vec![]);
        for seed in 0..a.seeds as u64 {
            let name = format!("{}-seed{seed}", scheme.name());
            let cfg = FinetuneConfig {
                out: Some(a.out_dir.join(format!("{name}.safetensors"))),
                run_dir: Some(a.out_dir.join(format!("{name}.run"))),
                start: StartConfig {
                    init: source_path.clone(),
                    fisher: scheme.needs_fisher().then(|| fisher_path.clone()),
                    fisher_max: scheme.needs_fisher().then_some(a.fisher_max),
                    ..StartConfig::default()
                },
                data: DataConfig {
                    data: a.data.clone(),
                    classes: "5-9".into(),
                    per_class: Some(a.per_class),
                    seed,
                    test_limit: (a.test_limit > 0).then_some(a.test_limit),
                    ..DataConfig::default()
                },
                train: TrainConfig {
                    epochs: a.epochs,
                    batch_size: 32,
                    lr: a.lr,
                    reg: *scheme,
                    alpha: alpha_of(scheme)?,
                    beta: 0.01,
                    seed,
                    ..TrainConfig::finetune()
                },
            };
            if !g.quiet {
                eprintln!(
                    "[2/2] fine-tuning on classes 5-9 ({} per class): {name}",
                    a.per_class
                );
            }
            let mut bar = Bar::new(&name, g.quiet);
            let o = sptune::run::finetune(&cfg, &g.device, &mut |p| bar.event(p))?.report;
            bar.finish();
            let tuned = Checkpoint::read(o.out.as_ref().expect("written"))?;
            let after =
                sptune::eval::source_head_accuracy(&source, &tuned, &source_test, &g.device)?;
            accs.push(100.0 * o.test_acc);
            drops.push(source_acc - 100.0 * after);
            if !g.quiet {
                eprintln!(
                    "    target {:.2}%  source task {:.2}% -> {:.2}%",
                    100.0 * o.test_acc,
                    source_acc,
                    100.0 * after
                );
            }
        }
        rows.push((scheme.name(), alpha_of(scheme)?, accs, drops));
    }
    let mut md = format!(
        "Source: ResNet-18 (width {}, small stem) on Fashion-MNIST 0-4, test accuracy {:.2}%.\n\
         Target: classes 5-9, {} training images per class, {} epochs, lr {}, beta 0.01; {} seeds.\n\
         Test sets: {}.\n{}\n\
         | scheme | alpha | target accuracy (%) | source forgetting (points) | forgetting minus L2's, same seed |\n|---|---|---|---|---|\n",
        a.width,
        100.0 * src.test_acc,
        a.per_class,
        a.epochs,
        a.lr,
        a.seeds,
        if a.test_limit > 0 {
            format!("first {} test images of each task", a.test_limit)
        } else {
            "full".into()
        },
        fisher_note
    );
    let mut js = vec![];
    let l2_drops = rows.iter().find(|r| r.0 == "l2").map(|r| r.3.clone());
    for (name, alpha, accs, drops) in &rows {
        let (am, ac) = mean_ci(accs);
        let (dm, dc) = mean_ci(drops);
        // paired by seed: same target subset and initialization, so seed noise cancels
        let paired = l2_drops.as_ref().filter(|_| *name != "l2").map(|l2| {
            let d: Vec<f64> = drops.iter().zip(l2).map(|(a, b)| a - b).collect();
            mean_ci(&d)
        });
        let paired_txt = paired
            .map(|(m, c)| format!("{m:+.2} ± {c:.2}"))
            .unwrap_or_else(|| "-".into());
        md.push_str(&format!(
            "| {name} | {alpha} | {am:.2} ± {ac:.2} | {dm:.2} ± {dc:.2} | {paired_txt} |\n"
        ));
        js.push(json!({"scheme": name, "alpha": alpha, "target_acc": accs, "forgetting": drops,
            "target_acc_mean": am, "target_acc_ci95": ac, "forgetting_mean": dm, "forgetting_ci95": dc,
            "forgetting_minus_l2": paired.map(|p| p.0), "forgetting_minus_l2_ci95": paired.map(|p| p.1)}));
    }
    md.push_str(&format!(
        "\n(± is the 95 % t-interval over seeds; {:.0} s in all)\n",
        t0.elapsed().as_secs_f64()
    ));
    sptune::util::write_atomic(&a.out_dir.join("demo.md"), md.as_bytes())?;
    let all =
        json!({"source_test_acc": src.test_acc, "rows": js, "seconds": t0.elapsed().as_secs_f64()});
    sptune::util::write_atomic(
        &a.out_dir.join("demo.json"),
        serde_json::to_string_pretty(&all)?.as_bytes(),
    )?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        println!("{md}");
    }
    Ok(ExitCode::SUCCESS)
}
