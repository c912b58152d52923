//! What the search chooses on: one score per trial (higher is better) from its target
//! validation accuracy and, when the source's data is known, its source-validation forgetting.
//!
//! | objective | score |
//! |---|---|
//! | `target` | `100·val_acc` |
//! | `budget` | `100·val_acc` when `forgetting ≤ max_forgetting`, else `−(forgetting − max_forgetting)` |
//! | `tradeoff` | `100·val_acc − λ·forgetting` |
//!
//! Accuracies are fractions, forgetting is in points (percent of source accuracy lost), so
//! under `budget` every point within the budget (score ≥ 0) ranks above every point outside it
//! (score < 0), and outside it the point that forgets least ranks first: that is the study's
//! answer when no point meets the budget. A trial without a forgetting figure (no source
//! validation images) is scored by its target accuracy alone under every objective.
//!
//! The same score ranks the trials at successive halving's milestones ([`super::search`]) and
//! chooses each scheme's point ([`super::chosen`]); ties go to the lower validation loss.

use super::config::{Objective, SearchConfig};

/// A trial's figures at one epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measure {
    /// Target validation accuracy (0..1).
    pub val_acc: f64,
    /// Source-validation forgetting in points, when measured.
    pub forgetting: Option<f64>,
}

/// The objective with its parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Goal {
    /// Which objective.
    pub objective: Objective,
    /// `budget`'s limit (points).
    pub max_forgetting: f64,
    /// `tradeoff`'s λ.
    pub lambda: f64,
}

impl Goal {
    /// The goal of a study's search section.
    pub fn of(s: &SearchConfig) -> Goal {
        Goal {
            objective: s.objective,
            max_forgetting: s.max_forgetting,
            lambda: s.tradeoff_lambda,
        }
    }

    /// Target accuracy alone (the choice a target-only search makes).
    pub fn target() -> Goal {
        Goal {
            objective: Objective::Target,
            max_forgetting: f64::INFINITY,
            lambda: 0.0,
        }
    }

    /// The score of `m` (higher is better; NaN accuracy scores −∞).
    pub fn score(&self, m: Measure) -> f64 {
        if !m.val_acc.is_finite() {
            return f64::NEG_INFINITY;
        }
        let acc = 100.0 * m.val_acc;
        let Some(f) = m.forgetting.filter(|f| f.is_finite()) else {
            return acc;
        };
        match self.objective {
            Objective::Target => acc,
            Objective::Budget if f <= self.max_forgetting => acc,
            Objective::Budget => -(f - self.max_forgetting),
            Objective::Tradeoff => acc - self.lambda * f,
        }
    }

    /// Whether `m` meets the budget (always, for the other objectives).
    pub fn feasible(&self, m: Measure) -> bool {
        match (self.objective, m.forgetting) {
            (Objective::Budget, Some(f)) => f <= self.max_forgetting,
            _ => true,
        }
    }

    /// The objective in words, for the report and `auto`.
    pub fn describe(&self) -> String {
        match self.objective {
            Objective::Target => "the best target validation accuracy".into(),
            Objective::Budget => format!(
                "the best target validation accuracy among points forgetting at most {} points \
                 of source validation accuracy",
                self.max_forgetting
            ),
            Objective::Tradeoff => format!(
                "the best target validation accuracy − {} × source-validation forgetting",
                self.lambda
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(acc: f64, f: f64) -> Measure {
        Measure {
            val_acc: acc,
            forgetting: Some(f),
        }
    }

    #[test]
    fn budget_ranks_every_feasible_point_above_every_infeasible_one() {
        let g = Goal {
            objective: Objective::Budget,
            max_forgetting: 3.0,
            lambda: 1.0,
        };
        // 10 % target accuracy within the budget beats 99 % outside it
        assert!(g.score(m(0.10, 2.9)) > g.score(m(0.99, 3.1)));
        // outside it, the point that forgets less ranks first whatever its accuracy
        assert!(g.score(m(0.10, 4.0)) > g.score(m(0.99, 9.0)));
        // on the boundary: feasible
        assert!(g.feasible(m(0.5, 3.0)) && !g.feasible(m(0.5, 3.0001)));
        // within the budget, accuracy alone decides
        assert!(g.score(m(0.81, 2.0)) > g.score(m(0.80, 0.0)));
    }

    #[test]
    fn tradeoff_is_accuracy_points_minus_lambda_forgetting() {
        let g = Goal {
            objective: Objective::Tradeoff,
            max_forgetting: 0.0,
            lambda: 0.5,
        };
        // 80 − 0.5·10 = 75 against 78 − 0.5·2 = 77
        assert_eq!(g.score(m(0.80, 10.0)), 75.0);
        assert_eq!(g.score(m(0.78, 2.0)), 77.0);
    }

    #[test]
    fn without_forgetting_every_objective_is_target_accuracy() {
        for objective in [Objective::Target, Objective::Budget, Objective::Tradeoff] {
            let g = Goal {
                objective,
                max_forgetting: 0.0,
                lambda: 10.0,
            };
            let x = Measure {
                val_acc: 0.7,
                forgetting: None,
            };
            assert_eq!(g.score(x), 70.0);
            assert!(g.feasible(x));
        }
        assert_eq!(
            Goal::target().score(Measure {
                val_acc: f64::NAN,
                forgetting: None
            }),
            f64::NEG_INFINITY
        );
    }
}
