//! Choosing from the search: each scheme's point under the study's objective ([`Chosen`],
//! [`chosen`]), the scheme that wins ([`best_scheme`]), the point a target-only search would
//! have chosen ([`reference_point`]), and successive halving's comparison at a milestone
//! ([`halving_continues`]: trials of the same scheme and learning rate, scored by the
//! objective).

use std::collections::BTreeMap;

use super::config::{self, StudyConfig};
use super::objective::{Goal, Measure};
use super::point_of;
use super::search::{self, Point};
use super::store::{Status, Trial};
use crate::regularizer::Scheme;
use crate::util::Choice;

/// Per epoch (index 0 = epoch 1), the figures of the finished search trials of `scheme` run
/// with learning rate `lr`; forgetting where the source validation accuracy was measured at
/// that epoch (`before`: the source model's own).
pub fn recorded_measures(
    trials: &[Trial],
    scheme: &str,
    lr: f64,
    before: Option<f64>,
) -> Vec<Vec<Measure>> {
    trials
        .iter()
        .filter(|t| t.phase == "search" && t.scheme == scheme)
        .filter(|t| matches!(t.status, Status::Done | Status::Stopped))
        .filter(|t| point_of(t).is_ok_and(|p| p.lr == lr))
        .filter_map(|t| t.epochs.as_ref())
        .map(|e| {
            e.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| {
                            let acc = e["val_acc"].as_f64()?;
                            Some(measure(acc, e["source_val_acc"].as_f64(), before))
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect()
}

/// Successive halving's decision for a trial whose figures at milestone `epoch` are `here`,
/// against the figures `recorded` by earlier trials of its scheme and learning rate
/// ([`recorded_measures`]), all scored by `goal`.
pub fn halving_continues(
    goal: &Goal,
    recorded: &[Vec<Measure>],
    epoch: usize,
    here: Measure,
    eta: usize,
) -> bool {
    let at: Vec<f64> = recorded
        .iter()
        .filter_map(|r| r.get(epoch - 1).copied())
        .map(|m| goal.score(m))
        .collect();
    search::continues(goal.score(here), &at, eta)
}

/// A trial's figures: forgetting in points when both source accuracies are known.
pub(crate) fn measure(val_acc: f64, source_val_acc: Option<f64>, before: Option<f64>) -> Measure {
    Measure {
        val_acc,
        forgetting: source_val_acc
            .zip(before)
            .map(|(after, before)| 100.0 * (before - after)),
    }
}

/// A scheme's chosen search point and its figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Chosen {
    /// The point.
    pub point: Point,
    /// Its final target validation accuracy (0..1).
    pub val_acc: f64,
    /// Its final validation loss (∞ when not finite).
    pub val_loss: f64,
    /// Its source-validation forgetting (points), when measured.
    pub forgetting: Option<f64>,
    /// Its score under the study's objective ([`objective`]).
    pub score: f64,
    /// Whether it meets the forgetting budget (always true for the other objectives).
    pub feasible: bool,
}

impl Chosen {
    /// Whether `self` ranks above `other`: the higher score, then the lower validation loss
    /// (the earlier trial stays on a full tie).
    fn beats(&self, other: &Chosen) -> bool {
        self.score > other.score || (self.score == other.score && self.val_loss < other.val_loss)
    }
}

/// A finished search trial's figures (None for stopped, failed or unreadable ones).
fn candidate(t: &Trial, goal: &Goal) -> Option<Chosen> {
    if t.phase != "search" || t.status != Status::Done {
        return None;
    }
    let m = t.metrics.as_ref()?;
    let p = point_of(t).ok()?;
    let val_acc = m["val_acc"].as_f64()?;
    let val_loss = m["val_loss"]
        .as_f64()
        .filter(|l| l.is_finite())
        .unwrap_or(f64::INFINITY);
    let forgetting = m["val_forgetting"].as_f64();
    let me = Measure {
        val_acc,
        forgetting,
    };
    Some(Chosen {
        point: p,
        val_acc,
        val_loss,
        forgetting,
        score: goal.score(me),
        feasible: goal.feasible(me),
    })
}

/// The chosen point of each scheme under `goal`: the finished (not stopped) search trial of
/// best score ([`objective`]; under `target`, the best final validation accuracy); between
/// equal scores (a validation split of a few images makes them common) the lower final
/// validation loss wins, then the earlier trial.
pub fn chosen(trials: &[Trial], goal: &Goal) -> BTreeMap<String, Chosen> {
    let mut best: BTreeMap<String, Chosen> = BTreeMap::new();
    for t in trials {
        let Some(c) = candidate(t, goal) else {
            continue;
        };
        if best.get(&t.scheme).is_none_or(|b| c.beats(b)) {
            best.insert(t.scheme.clone(), c);
        }
    }
    best
}

/// The scheme whose chosen point ranks first under the goal the points were chosen with (the
/// first in the study's order on a tie).
pub fn best_scheme(cfg: &StudyConfig, choice: &BTreeMap<String, Chosen>) -> Option<Scheme> {
    let mut best: Option<(Scheme, &Chosen)> = None;
    for &s in &cfg.schemes {
        if let Some(c) = choice.get(s.name())
            && best.is_none_or(|(_, b)| c.beats(b))
        {
            best = Some((s, c));
        }
    }
    best.map(|(s, _)| s)
}

/// The scheme and point a target-only search would have chosen, when the study's objective
/// chose another (None under `target`, without forgetting figures, or when both agree).
pub fn reference_point(cfg: &StudyConfig, trials: &[Trial]) -> Option<(Scheme, Point)> {
    let goal = Goal::of(&cfg.search);
    if goal.objective == config::Objective::Target {
        return None;
    }
    let mine = chosen(trials, &goal);
    if mine.values().all(|c| c.forgetting.is_none()) {
        return None;
    }
    let winner = best_scheme(cfg, &mine)?;
    let plain = chosen(trials, &Goal::target());
    let reference = best_scheme(cfg, &plain)?;
    let p = plain[reference.name()].point;
    (reference != winner || p != mine[winner.name()].point).then_some((reference, p))
}
