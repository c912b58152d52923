//! The search: which hyperparameters to try for a scheme, and successive halving's early stop.
//!
//! Points are drawn before any trial runs, from a generator seeded by the scheme, so a resumed
//! study plans exactly the trials it planned before. Random search draws α and β
//! log-uniformly from their ranges and lr / the backbone multiplier uniformly from their lists;
//! grid search crosses `grid_points` log-spaced α values with the lists.
//!
//! Successive halving, asynchronous (ASHA): the milestones are `epochs / η^k` (k ≥ 1, down to
//! one epoch). A trial reaching a milestone continues only when its validation accuracy there
//! is among the best `⌈m/η⌉` of the `m` accuracies recorded at that milestone by its scheme's
//! trials so far, its own included; while fewer than η are recorded it always continues.

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::config::{Method, StudyConfig};
use crate::regularizer::Scheme;
use crate::train::BnMode;
use crate::util::Choice;

/// One point of the search space.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Weight of the scheme on `S`.
    pub alpha: f64,
    /// Weight of L2 on the new head.
    pub beta: f64,
    /// Learning rate.
    pub lr: f64,
    /// Learning-rate factor of the backbone.
    pub backbone_lr_mult: f64,
    /// BatchNorm mode (None: the train section's), when `[search] bn` lists modes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bn: Option<BnMode>,
    /// Frozen first stages (None: the train section's), when `[search] freeze` lists them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze: Option<usize>,
}

impl Point {
    /// The point in words: `alpha=… lr=… bn=frozen freeze=1` (the knobs the study searched).
    pub fn describe(&self) -> String {
        let mut s = format!(
            "alpha={:.3e} beta={:.3e} lr={} backbone_lr_mult={}",
            self.alpha, self.beta, self.lr, self.backbone_lr_mult
        );
        if let Some(b) = self.bn {
            s.push_str(&format!(" bn={}", b.name()));
        }
        if let Some(k) = self.freeze {
            s.push_str(&format!(" freeze={k}"));
        }
        s
    }
}

/// One value of `list` (None when it is empty; no draw when it holds one value, so studies
/// that do not search a knob plan the same points as before it could be searched).
fn pick<T: Copy>(rng: &mut impl Rng, list: &[T]) -> Option<T> {
    match list {
        [] => None,
        [one] => Some(*one),
        _ => Some(list[rng.random_range(0..list.len())]),
    }
}

fn or_none<T: Copy>(list: &[T]) -> Vec<Option<T>> {
    if list.is_empty() {
        vec![None]
    } else {
        list.iter().map(|v| Some(*v)).collect()
    }
}

fn log_uniform(rng: &mut impl Rng, [lo, hi]: [f64; 2]) -> f64 {
    if lo == hi {
        return lo;
    }
    (lo.ln() + rng.random::<f64>() * (hi.ln() - lo.ln())).exp()
}

fn log_spaced([lo, hi]: [f64; 2], n: usize) -> Vec<f64> {
    if lo == hi || n == 1 {
        return vec![(lo * hi).sqrt()];
    }
    (0..n)
        .map(|i| (lo.ln() + (hi.ln() - lo.ln()) * i as f64 / (n - 1) as f64).exp())
        .collect()
}

/// The points to try for `scheme` (a scheme without a weight, `none`, gets one α = 0 per
/// lr / β / multiplier combination).
pub fn points(cfg: &StudyConfig, scheme: Scheme) -> Vec<Point> {
    let s = &cfg.search;
    let lrs = cfg.lrs();
    let alpha = s.alpha_range(scheme);
    let seed = 0x5ea4_c400 ^ Scheme::ALL.iter().position(|x| *x == scheme).unwrap_or(0) as u64;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    match s.method {
        Method::Random => (0..s.trials)
            .map(|_| Point {
                alpha: log_uniform(&mut rng, alpha),
                beta: log_uniform(&mut rng, s.beta),
                lr: lrs[rng.random_range(0..lrs.len())],
                backbone_lr_mult: s.backbone_lr_mult[rng.random_range(0..s.backbone_lr_mult.len())],
                bn: pick(&mut rng, &s.bn),
                freeze: pick(&mut rng, &s.freeze),
            })
            .collect(),
        Method::Grid => {
            let mut v = vec![];
            let alphas = if alpha == [0.0, 0.0] {
                vec![0.0]
            } else {
                log_spaced(alpha, s.grid_points)
            };
            for &a in &alphas {
                for &lr in &lrs {
                    for &m in &s.backbone_lr_mult {
                        for bn in or_none(&s.bn) {
                            for freeze in or_none(&s.freeze) {
                                v.push(Point {
                                    alpha: a,
                                    beta: s.beta[0],
                                    lr,
                                    backbone_lr_mult: m,
                                    bn,
                                    freeze,
                                });
                            }
                        }
                    }
                }
            }
            v
        }
    }
}

/// The epochs at which successive halving may stop a trial of `epochs` epochs: `epochs/η`,
/// `epochs/η²`, ... (at least 1, each once, ascending).
pub fn milestones(epochs: usize, eta: usize) -> Vec<usize> {
    let mut v = vec![];
    let mut m = epochs / eta.max(2);
    while m >= 1 {
        v.push(m);
        m /= eta.max(2);
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// Whether a trial whose validation accuracy at a milestone is `acc` continues, given the
/// accuracies `recorded` at that milestone by earlier trials of its scheme.
pub fn continues(acc: f64, recorded: &[f64], eta: usize) -> bool {
    let m = recorded.len() + 1;
    if m < eta {
        return true;
    }
    let keep = m.div_ceil(eta);
    let better = recorded.iter().filter(|r| **r > acc).count();
    better < keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn milestones_divide_by_eta() {
        assert_eq!(milestones(20, 3), vec![2, 6]);
        assert_eq!(milestones(27, 3), vec![1, 3, 9]);
        assert_eq!(milestones(2, 3), Vec::<usize>::new());
    }

    #[test]
    fn continues_keeps_the_top_third() {
        // 5 recorded + this one = 6: the best 2 continue
        let rec = [0.5, 0.6, 0.7, 0.8, 0.9];
        assert!(continues(0.95, &rec, 3));
        assert!(continues(0.85, &rec, 3)); // second best
        assert!(!continues(0.75, &rec, 3));
        // fewer than eta recorded: always continues
        assert!(continues(0.0, &[0.9], 3));
    }

    /// On a synthetic objective (the "validation accuracy" of arm i at epoch e is
    /// q_i·(1 − 1/(e+1)) plus noise that shrinks with e), asynchronous halving over arms in
    /// random order always lets the best arm run to the end and stops most of the others.
    #[test]
    fn halving_keeps_the_best_arm_on_a_synthetic_objective() {
        let epochs = 27;
        let eta = 3;
        let ms = milestones(epochs, eta);
        let mut total_finished = 0;
        for trial in 0..50u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(trial);
            let n = 12;
            // qualities 1/n, 2/n, ..., 1 in a random order: gaps (≥ 0.04 after the epoch
            // factor) larger than the noise (≤ 0.01), as between genuinely different arms
            let mut q: Vec<f64> = (1..=n).map(|i| i as f64 / n as f64).collect();
            for i in (1..n).rev() {
                q.swap(i, rng.random_range(0..=i));
            }
            let best = (0..n).max_by(|a, b| q[*a].total_cmp(&q[*b])).unwrap();
            let mut recorded: Vec<Vec<f64>> = vec![vec![]; ms.len()];
            let mut finished = vec![];
            for (i, &qi) in q.iter().enumerate() {
                let mut alive = true;
                for (k, &m) in ms.iter().enumerate() {
                    let noise = (rng.random::<f64>() - 0.5) * 0.02 / m as f64;
                    let acc = qi * (1.0 - 1.0 / (m as f64 + 1.0)) + noise;
                    let go = continues(acc, &recorded[k], eta);
                    recorded[k].push(acc);
                    if !go {
                        alive = false;
                        break;
                    }
                }
                if alive {
                    finished.push(i);
                }
            }
            assert!(
                finished.contains(&best),
                "trial {trial}: best arm {best} stopped"
            );
            assert!(finished.len() < n, "trial {trial}: no arm stopped");
            total_finished += finished.len();
        }
        // without halving all 600 arms would run to the end; with it, well under half do
        eprintln!("{total_finished} of 600 arms finished");
        assert!(
            total_finished < 300,
            "{total_finished} of 600 arms finished"
        );
    }

    #[test]
    fn random_points_stay_in_their_ranges_and_are_reproducible() {
        let mut cfg = StudyConfig::default();
        cfg.search.trials = 50;
        let a = points(&cfg, Scheme::L2Sp);
        assert_eq!(a, points(&cfg, Scheme::L2Sp));
        assert_eq!(a.len(), 50);
        let [lo, hi] = cfg.search.alpha_range(Scheme::L2Sp);
        assert!(a.iter().all(|p| p.alpha >= lo && p.alpha <= hi));
        // log-uniform: about half the draws below the geometric mean
        let below = a.iter().filter(|p| p.alpha < (lo * hi).sqrt()).count();
        assert!((15..=35).contains(&below), "{below}");
    }
}
