//! The findings of a study's stored trials ([`aggregate`]): per scheme the chosen point and its
//! finals' test accuracy and forgetting with intervals, paired differences to L2, per-layer
//! distances, curves, the search's points, the freeze sweep, the interpolation curves and the
//! recommendation ([`super::recommend`]).

use std::collections::BTreeMap;

use super::choose::chosen;
use super::config::{self, StudyConfig};
use super::objective::Goal;
use super::results::{
    self, Curve, FreezePoint, LayerDistance, SchemeRow, SearchPoint, StudyResults,
};
use super::store::{Status, Trial};
use super::{f64_series, point_of, recommend, stats, unit_of, val_series};
use crate::util::Choice;

/// The findings of a study's stored trials.
pub fn aggregate(cfg: &StudyConfig, trials: &[Trial]) -> StudyResults {
    let goal = Goal::of(&cfg.search);
    let choice = chosen(trials, &goal);
    let finals = |scheme: &str| -> Vec<&Trial> {
        let mut v: Vec<&Trial> = trials
            .iter()
            .filter(|t| t.phase == "final" && t.scheme == scheme && t.status == Status::Done)
            .collect();
        v.sort_by_key(|t| unit_of(t));
        v
    };
    let metric = |t: &Trial, k: &str| t.metrics.as_ref().and_then(|m| m[k].as_f64());
    let l2 = finals("l2");
    // keyed by (source, seed): the pairing unit
    let per_seed = |ts: &[&Trial], k: &str, scale: f64| -> BTreeMap<(u64, u64), f64> {
        ts.iter()
            .filter_map(|t| metric(t, k).map(|v| (unit_of(t), scale * v)))
            .collect()
    };
    // the share of a metric's variance that lies between sources
    let between = |v: &BTreeMap<(u64, u64), f64>| -> Option<f64> {
        let mut groups: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
        for (&(k, _), &x) in v {
            groups.entry(k).or_default().push(x);
        }
        (groups.len() > 1)
            .then(|| stats::between_group_share(&groups.into_values().collect::<Vec<_>>()))
            .flatten()
    };
    let l2_acc = per_seed(&l2, "test_acc", 100.0);
    let l2_forget = per_seed(&l2, "forgetting", 1.0);
    let paired = |mine: &BTreeMap<(u64, u64), f64>, base: &BTreeMap<(u64, u64), f64>| {
        let seeds: Vec<(u64, u64)> = mine
            .keys()
            .filter(|s| base.contains_key(s))
            .copied()
            .collect();
        let a: Vec<f64> = seeds.iter().map(|s| mine[s]).collect();
        let b: Vec<f64> = seeds.iter().map(|s| base[s]).collect();
        stats::paired_diff(&a, &b)
    };
    let mut schemes = vec![];
    let mut distances = vec![];
    let mut curves = vec![];
    for scheme in cfg.schemes.iter().map(|s| s.name()) {
        let Some(c) = choice.get(scheme) else {
            continue;
        };
        let (p, val) = (&c.point, &c.val_acc);
        let ts = finals(scheme);
        let acc = per_seed(&ts, "test_acc", 100.0);
        let forget = per_seed(&ts, "forgetting", 1.0);
        let is_l2 = scheme == "l2";
        schemes.push(SchemeRow {
            scheme: scheme.into(),
            alpha: p.alpha,
            beta: p.beta,
            lr: p.lr,
            backbone_lr_mult: p.backbone_lr_mult,
            val_acc: *val,
            acc: acc.values().copied().collect(),
            forgetting: forget.values().copied().collect(),
            acc_ci: stats::mean_ci95(&acc.values().copied().collect::<Vec<_>>()),
            forgetting_ci: (!forget.is_empty())
                .then(|| stats::mean_ci95(&forget.values().copied().collect::<Vec<_>>())),
            acc_minus_l2: (!is_l2).then(|| paired(&acc, &l2_acc)).flatten(),
            forgetting_minus_l2: (!is_l2 && !forget.is_empty())
                .then(|| paired(&forget, &l2_forget))
                .flatten(),
            bn: p.bn.map(|b| b.name().to_string()),
            freeze: p.freeze,
            forgetting_statistics: (!forget.is_empty())
                .then(|| {
                    let v = per_seed(&ts, "forgetting_statistics", 1.0);
                    (!v.is_empty())
                        .then(|| stats::mean_ci95(&v.values().copied().collect::<Vec<_>>()))
                })
                .flatten(),
            val_forgetting: c.forgetting,
            feasible: c.feasible,
            sources: ts
                .iter()
                .map(|t| super::source_of(t))
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            acc_between_sources: between(&acc),
            forgetting_between_sources: between(&forget),
            flags: ts
                .iter()
                .flat_map(|t| {
                    let seed = match super::source_of(t) {
                        0 => t.seed.to_string(),
                        k => format!("{} of source {k}", t.seed),
                    };
                    t.metrics
                        .as_ref()
                        .and_then(|m| m["flags"].as_array().cloned())
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(move |f| f.as_str().map(|f| format!("seed {seed}: {f}")))
                })
                .collect(),
        });
        // per-layer distances, mean over seeds, in network order
        let mut order: Vec<String> = vec![];
        let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        for t in &ts {
            if let Some(d) = t.metrics.as_ref().and_then(|m| m["distances"].as_array()) {
                for e in d {
                    let (Some(name), Some(rel)) = (e[0].as_str(), e[1].as_f64()) else {
                        continue;
                    };
                    if !sums.contains_key(name) {
                        order.push(name.to_string());
                    }
                    let s = sums.entry(name.to_string()).or_insert((0.0, 0));
                    s.0 += rel;
                    s.1 += 1;
                }
            }
        }
        for name in order {
            let (s, n) = sums[&name];
            distances.push(LayerDistance {
                scheme: scheme.into(),
                layer: name,
                rel: s / n as f64,
            });
        }
        for t in &ts {
            if let Some(e) = &t.epochs {
                curves.push(Curve {
                    scheme: scheme.into(),
                    seed: t.seed,
                    train_acc: f64_series(e, "train_acc"),
                    val_acc: val_series(e),
                    task_loss: f64_series(e, "task_loss"),
                });
            }
        }
    }
    let search = trials
        .iter()
        .filter(|t| t.phase == "search" && matches!(t.status, Status::Done | Status::Stopped))
        .filter_map(|t| {
            let p = point_of(t).ok()?;
            let m = t.metrics.as_ref()?;
            Some(SearchPoint {
                scheme: t.scheme.clone(),
                alpha: p.alpha,
                beta: p.beta,
                lr: p.lr,
                backbone_lr_mult: p.backbone_lr_mult,
                val_acc: m["val_acc"].as_f64()?,
                epochs: m["epochs"].as_u64()? as usize,
                stopped: m["stopped"].as_bool()?,
                val_forgetting: m["val_forgetting"].as_f64(),
                bn: p.bn.map(|b| b.name().to_string()),
                freeze: p.freeze,
                chosen: t.status == Status::Done
                    && choice
                        .get(&t.scheme)
                        .is_some_and(|c| c.point == p && m["val_acc"].as_f64() == Some(c.val_acc)),
            })
        })
        .collect();
    let mut freeze_acc: BTreeMap<(String, usize), Vec<f64>> = BTreeMap::new();
    for t in trials
        .iter()
        .filter(|t| t.phase == "freeze" && t.status == Status::Done)
    {
        if let (Some(k), Some(a)) = (t.params["freeze"].as_u64(), metric(t, "test_acc")) {
            freeze_acc
                .entry((t.scheme.clone(), k as usize))
                .or_default()
                .push(100.0 * a);
        }
    }
    let freeze = freeze_acc
        .into_iter()
        .map(|((scheme, k), v)| FreezePoint {
            scheme,
            k,
            acc: stats::mean_ci95(&v),
        })
        .collect();
    let source = match (&cfg.source.init, &cfg.source.pretrain) {
        (Some(p), _) => format!("source checkpoint {}", p.display()),
        (None, Some(pre)) => format!(
            "source {} (width {}) pretrained on {} classes {} ({} epochs)",
            pre.model.arch, pre.model.width, pre.data.data, pre.data.classes, pre.train.epochs
        ),
        _ => "no source".into(),
    };
    let setup = format!(
        "{source}; target {} classes {}, {} training images per class, {} epochs, batch {}; \
         hyperparameters chosen per scheme by {} search ({} points, successive halving {}) on a \
         {:.0} % validation split (seed 0), then {} final runs per scheme (seeds 1..={}) on all \
         training images{}; intervals are two-sided 95 % Student-t over {}, differences to L2 \
         paired by {}.",
        cfg.target.data,
        cfg.target.classes,
        cfg.target
            .per_class
            .map(|n| n.to_string())
            .unwrap_or_else(|| "all".into()),
        cfg.train.epochs,
        cfg.train.batch_size,
        match cfg.search.method {
            config::Method::Random => "random",
            config::Method::Grid => "grid",
        },
        match cfg.search.method {
            config::Method::Random => cfg.search.trials,
            config::Method::Grid => cfg.search.grid_points,
        },
        if cfg.search.halving {
            format!("η = {}", cfg.search.eta)
        } else {
            "off".into()
        },
        100.0 * cfg.search.val_fraction,
        cfg.seeds,
        cfg.seeds,
        if cfg.source.seeds > 1 {
            format!(
                ", from each of {} sources (pretraining seeds {}..={})",
                cfg.source.seeds,
                cfg.source.pretrain.as_ref().map_or(0, |p| p.train.seed),
                cfg.source.pretrain.as_ref().map_or(0, |p| p.train.seed) + cfg.source.seeds as u64
                    - 1
            )
        } else {
            String::new()
        },
        if cfg.source.seeds > 1 {
            "(source, seed) runs"
        } else {
            "seeds"
        },
        if cfg.source.seeds > 1 { "run" } else { "seed" },
    );
    let choice = recommend::choice(cfg, trials, &goal, &choice, &schemes);
    let interpolation = interpolation_curves(cfg, trials);
    StudyResults {
        title: cfg.name.clone(),
        setup,
        schemes,
        search,
        distances,
        freeze,
        curves,
        choice,
        interpolation,
    }
}

/// Per scheme and weight `a`, the finals' interpolated target accuracy and forgetting (the
/// source model's accuracy on its test images, `source_acc_after + forgetting/100` of the
/// same run, is the reference of the forgetting).
fn interpolation_curves(cfg: &StudyConfig, trials: &[Trial]) -> Vec<results::InterpPoint> {
    let mut out = vec![];
    for scheme in cfg.schemes.iter().map(|s| s.name()) {
        let mut by_a: BTreeMap<u64, (f64, Vec<f64>, Vec<f64>)> = BTreeMap::new();
        for t in trials
            .iter()
            .filter(|t| t.phase == "final" && t.scheme == scheme && t.status == Status::Done)
        {
            let Some(m) = t.metrics.as_ref() else {
                continue;
            };
            let before = match (m["source_acc_after"].as_f64(), m["forgetting"].as_f64()) {
                (Some(a), Some(f)) => Some(a + f / 100.0),
                _ => None,
            };
            for p in m["interpolation"].as_array().into_iter().flatten() {
                let (Some(a), Some(acc)) = (p[0].as_f64(), p[1].as_f64()) else {
                    continue;
                };
                let e = by_a.entry(a.to_bits()).or_insert((a, vec![], vec![]));
                e.1.push(100.0 * acc);
                if let (Some(b), Some(s)) = (before, p[2].as_f64()) {
                    e.2.push(100.0 * (b - s));
                }
            }
        }
        let mut pts: Vec<_> = by_a.into_values().collect();
        pts.sort_by(|x, y| x.0.total_cmp(&y.0));
        for (a, acc, f) in pts {
            out.push(results::InterpPoint {
                scheme: scheme.into(),
                a,
                acc: stats::mean_ci95(&acc),
                forgetting: (!f.is_empty()).then(|| stats::mean_ci95(&f)),
            });
        }
    }
    out
}
