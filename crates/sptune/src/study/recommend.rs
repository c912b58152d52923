//! The study's answer in plain words: which scheme and point to use for the objective, what its
//! final runs reached, and what keeping the source costs against the point a target-only search
//! would have chosen (its own final runs, the `reference` phase, paired by seed).

use std::collections::BTreeMap;

use super::config::{Objective, StudyConfig};
use super::objective::Goal;
use super::results::{Choice, Interval, Reference, SchemeRow};
use super::store::{Status, Trial};
use super::{Chosen, best_scheme, point_of, stats};
use crate::util::Choice as _;

/// `mean ± half (n runs)`, or `mean (n=1)`.
pub fn interval(iv: &Interval, unit: &str) -> String {
    if iv.half_width.is_finite() {
        format!(
            "{:.1} ± {:.1}{unit} ({} runs)",
            iv.mean, iv.half_width, iv.n
        )
    } else {
        format!("{:.1}{unit} (n={})", iv.mean, iv.n)
    }
}

/// Per (source, seed), a metric of a phase's done trials of `scheme` (`scale`d).
fn per_seed(
    trials: &[Trial],
    phase: &str,
    scheme: &str,
    key: &str,
    scale: f64,
) -> BTreeMap<(u64, u64), f64> {
    trials
        .iter()
        .filter(|t| t.phase == phase && t.scheme == scheme && t.status == Status::Done)
        .filter_map(|t| {
            let v = t.metrics.as_ref()?[key].as_f64()?;
            Some((super::unit_of(t), scale * v))
        })
        .collect()
}

/// `a − b` paired by (source, seed), over the pairs both have.
fn paired(a: &BTreeMap<(u64, u64), f64>, b: &BTreeMap<(u64, u64), f64>) -> Option<Interval> {
    let seeds: Vec<(u64, u64)> = a.keys().filter(|s| b.contains_key(s)).copied().collect();
    let x: Vec<f64> = seeds.iter().map(|s| a[s]).collect();
    let y: Vec<f64> = seeds.iter().map(|s| b[s]).collect();
    stats::paired_diff(&x, &y)
}

/// Whether a 95 % interval excludes 0 (None when it cannot say: one seed).
fn significant(iv: &Interval) -> Option<bool> {
    iv.half_width
        .is_finite()
        .then(|| iv.mean.abs() > iv.half_width)
}

/// How the search chose and what it recommends, from the stored trials.
pub fn choice(
    cfg: &StudyConfig,
    trials: &[Trial],
    goal: &Goal,
    chosen: &BTreeMap<String, Chosen>,
    rows: &[SchemeRow],
) -> Choice {
    let search: Vec<&Trial> = trials.iter().filter(|t| t.phase == "search").collect();
    let measured = search.iter().any(|t| {
        t.metrics
            .as_ref()
            .is_some_and(|m| m["val_forgetting"].is_number())
    });
    let source_val = search
        .iter()
        .find_map(|t| {
            t.metrics
                .as_ref()
                .and_then(|m| m["source_val"].as_str().map(str::to_string))
        })
        .unwrap_or_default();
    let mut lines = vec![];
    if !measured {
        lines.push(format!(
            "Forgetting is absent from the search{}: the choice is on target accuracy alone.",
            if source_val.is_empty() {
                String::new()
            } else {
                format!(" ({source_val})")
            }
        ));
    }
    let winner = best_scheme(cfg, chosen);
    let mut reference = None;
    if let Some(w) = winner {
        let c = &chosen[w.name()];
        let row = rows.iter().find(|r| r.scheme == w.name());
        if goal.objective == Objective::Budget && measured && !c.feasible {
            lines.push(format!(
                "No search point met the budget of {} points of source-validation forgetting; \
                 the point that forgets least is taken.",
                goal.max_forgetting
            ));
        }
        let mut s = format!("Use {} with {}", w.name(), c.point.describe());
        match c.forgetting {
            Some(f) => s.push_str(&format!(
                ": in the search it forgot {f:.1} points of source validation accuracy at \
                 {:.1} % target validation accuracy",
                100.0 * c.val_acc
            )),
            None => s.push_str(&format!(
                ": {:.1} % target validation accuracy in the search",
                100.0 * c.val_acc
            )),
        }
        if let Some(r) = row.filter(|r| r.acc_ci.n > 0) {
            s.push_str(&format!(
                "; its final runs reach {} target test accuracy",
                interval(&r.acc_ci, " %")
            ));
            if let Some(f) = &r.forgetting_ci {
                s.push_str(&format!(
                    " and forget {} of source test accuracy",
                    interval(f, " points")
                ));
            }
        }
        s.push('.');
        lines.push(s);
        // the target-only choice's own finals
        let refs: Vec<&Trial> = trials
            .iter()
            .filter(|t| t.phase == "reference" && t.status == Status::Done)
            .collect();
        if let Some(t0) = refs.first() {
            let scheme = t0.scheme.clone();
            let mine_acc = per_seed(trials, "final", w.name(), "test_acc", 100.0);
            let mine_f = per_seed(trials, "final", w.name(), "forgetting", 1.0);
            let ref_acc = per_seed(trials, "reference", &scheme, "test_acc", 100.0);
            let ref_f = per_seed(trials, "reference", &scheme, "forgetting", 1.0);
            let r = Reference {
                scheme: scheme.clone(),
                point: point_of(t0).map(|p| p.describe()).unwrap_or_default(),
                acc_ci: stats::mean_ci95(&ref_acc.values().copied().collect::<Vec<_>>()),
                forgetting_ci: (!ref_f.is_empty())
                    .then(|| stats::mean_ci95(&ref_f.values().copied().collect::<Vec<_>>())),
                acc_cost: paired(&ref_acc, &mine_acc),
                forgetting_saved: paired(&ref_f, &mine_f),
            };
            let mut s = format!(
                "The target-only choice, {} with {}, reaches {}",
                r.scheme,
                r.point,
                interval(&r.acc_ci, " %")
            );
            if let Some(f) = &r.forgetting_ci {
                s.push_str(&format!(" and forgets {}", interval(f, " points")));
            }
            if let Some(cost) = &r.acc_cost {
                s.push_str(&format!(
                    ": keeping the source costs {:.1} points of target accuracy",
                    cost.mean
                ));
                match significant(cost) {
                    Some(true) => s.push_str(&format!(
                        " (95 % interval ± {:.1}, paired by run: significant)",
                        cost.half_width
                    )),
                    Some(false) => s.push_str(&format!(
                        " (95 % interval ± {:.1}, paired by run: not significant)",
                        cost.half_width
                    )),
                    None => s.push_str(" (one seed: no interval)"),
                }
                if let Some(saved) = &r.forgetting_saved {
                    s.push_str(&format!(
                        " and saves {:.1} points of forgetting",
                        saved.mean
                    ));
                    if let Some(sig) = significant(saved) {
                        s.push_str(if sig {
                            " (significant)"
                        } else {
                            " (not significant)"
                        });
                    }
                }
            }
            s.push('.');
            lines.push(s);
            reference = Some(r);
        } else if goal.objective != Objective::Target && measured {
            lines.push(
                "A target-only search chooses the same point: keeping the source costs nothing \
                 here."
                    .into(),
            );
        } else if goal.objective == Objective::Target && measured {
            lines.push(
                "The search measured forgetting without weighing it: set objective = \"budget\" \
                 (--max-forgetting) or \"tradeoff\" to keep the source."
                    .into(),
            );
        }
    }
    for r in rows {
        for f in &r.flags {
            lines.push(format!(
                "Warning: {} {f}; that run is averaged with the others, check it.",
                r.scheme
            ));
        }
    }
    Choice {
        objective: goal.objective.name().into(),
        describe: goal.describe(),
        max_forgetting: (goal.objective == Objective::Budget).then_some(goal.max_forgetting),
        source_val,
        measured,
        recommendation: lines,
        reference,
        source_val_seconds: search
            .iter()
            .filter_map(|t| t.metrics.as_ref()?["source_val_seconds"].as_f64())
            .sum(),
        trial_seconds: trials.iter().filter_map(|t| t.seconds).sum(),
    }
}
