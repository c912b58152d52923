//! What a study found, in the shape the report draws: one row per scheme (the chosen
//! hyperparameters, test accuracy and forgetting over seeds with their intervals, the paired
//! difference to L2), the search's trials, per-layer distances to `w0`, the freeze sweep and
//! the training curves.

use serde::{Deserialize, Serialize};

/// A mean with its two-sided 95 % interval (Student t over `n` values).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The mean.
    pub mean: f64,
    /// Half the interval's width (NaN when `n < 2`).
    pub half_width: f64,
    /// Number of values.
    pub n: usize,
}

/// One scheme's final runs (the chosen hyperparameters, one run per seed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchemeRow {
    /// `l2`, `l2-sp`, ...
    pub scheme: String,
    /// The chosen α.
    pub alpha: f64,
    /// The chosen β.
    pub beta: f64,
    /// The chosen learning rate.
    pub lr: f64,
    /// The chosen backbone learning-rate multiplier.
    pub backbone_lr_mult: f64,
    /// Best validation accuracy of the chosen hyperparameters in the search (0..1).
    pub val_acc: f64,
    /// Target test accuracy per seed, in percent (seed order).
    pub acc: Vec<f64>,
    /// Source forgetting per seed, in points (seed order); empty when not measured.
    pub forgetting: Vec<f64>,
    /// Mean and interval of `acc`.
    pub acc_ci: Interval,
    /// Mean and interval of `forgetting` (None when not measured).
    pub forgetting_ci: Option<Interval>,
    /// Paired by seed: this scheme's accuracy minus L2's (None for L2 or without L2).
    pub acc_minus_l2: Option<Interval>,
    /// Paired by seed: this scheme's forgetting minus L2's.
    pub forgetting_minus_l2: Option<Interval>,
    /// The chosen BatchNorm mode, when the search chose it.
    #[serde(default)]
    pub bn: Option<String>,
    /// The chosen frozen stages, when the search chose them.
    #[serde(default)]
    pub freeze: Option<usize>,
    /// Source-validation forgetting of the chosen point in the search (points).
    #[serde(default)]
    pub val_forgetting: Option<f64>,
    /// The part of `forgetting` that the BatchNorm running statistics cost (points; the rest
    /// is the weights'), over seeds.
    #[serde(default)]
    pub forgetting_statistics: Option<Interval>,
    /// Whether the chosen point met the forgetting budget (true without one).
    #[serde(default = "yes")]
    pub feasible: bool,
    /// Sources the finals started from (`[source] seeds`; 1 for one source).
    #[serde(default)]
    pub sources: usize,
    /// With several sources: the share of the target accuracy's variance that lies between
    /// sources ([`super::stats::between_group_share`]).
    #[serde(default)]
    pub acc_between_sources: Option<f64>,
    /// The same for forgetting.
    #[serde(default)]
    pub forgetting_between_sources: Option<f64>,
    /// Warnings about the final runs (`seed 3: test accuracy 20.6 % is near chance`).
    #[serde(default)]
    pub flags: Vec<String>,
}

fn yes() -> bool {
    true
}

/// One search trial.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchPoint {
    /// The scheme.
    pub scheme: String,
    /// α tried.
    pub alpha: f64,
    /// β tried.
    pub beta: f64,
    /// Learning rate tried.
    pub lr: f64,
    /// Backbone learning-rate multiplier tried.
    pub backbone_lr_mult: f64,
    /// Best validation accuracy reached (0..1).
    pub val_acc: f64,
    /// Epochs run (fewer than planned when successive halving stopped it).
    pub epochs: usize,
    /// Whether successive halving stopped it early.
    pub stopped: bool,
    /// Source-validation forgetting at its last epoch (points), when measured.
    #[serde(default)]
    pub val_forgetting: Option<f64>,
    /// Its BatchNorm mode, when searched.
    #[serde(default)]
    pub bn: Option<String>,
    /// Its frozen stages, when searched.
    #[serde(default)]
    pub freeze: Option<usize>,
    /// Whether it is its scheme's chosen point.
    #[serde(default)]
    pub chosen: bool,
}

/// How the search chose, and what it recommends. Equality ignores the two timings: they are
/// not findings (a resumed study has the same findings in other seconds).
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct Choice {
    /// `target`, `budget` or `tradeoff`.
    pub objective: String,
    /// The objective in words.
    pub describe: String,
    /// The forgetting budget (points), for `budget`.
    pub max_forgetting: Option<f64>,
    /// Where the source validation images came from, or why forgetting is absent from the
    /// search.
    pub source_val: String,
    /// Whether the search measured forgetting.
    pub measured: bool,
    /// The recommendation, in plain words with the numbers (one paragraph per line).
    pub recommendation: Vec<String>,
    /// The target-only choice's final runs (when the objective is not `target`): scheme,
    /// test accuracy and forgetting over seeds.
    pub reference: Option<Reference>,
    /// Seconds the search trials spent measuring source validation accuracy (for the report;
    /// not serialized, so that a study's results are the same whichever machine ran them).
    #[serde(skip)]
    pub source_val_seconds: f64,
    /// Seconds of all the study's trials (not serialized either).
    #[serde(skip)]
    pub trial_seconds: f64,
}

impl PartialEq for Choice {
    fn eq(&self, o: &Self) -> bool {
        self.objective == o.objective
            && self.describe == o.describe
            && self.max_forgetting == o.max_forgetting
            && self.source_val == o.source_val
            && self.measured == o.measured
            && self.recommendation == o.recommendation
            && self.reference == o.reference
    }
}

/// The final runs of the point a target-only search would have chosen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// Its scheme.
    pub scheme: String,
    /// Its point in words.
    pub point: String,
    /// Test accuracy over seeds (percent).
    pub acc_ci: Interval,
    /// Forgetting over seeds (points), when measured.
    pub forgetting_ci: Option<Interval>,
    /// Paired by seed: the recommended point's accuracy minus this one's.
    pub acc_cost: Option<Interval>,
    /// Paired by seed: the recommended point's forgetting minus this one's.
    pub forgetting_saved: Option<Interval>,
}

/// Relative distance `‖w − w0‖ / ‖w0‖` of one tensor after fine-tuning (mean over seeds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerDistance {
    /// The scheme.
    pub scheme: String,
    /// Checkpoint name of the tensor, network order.
    pub layer: String,
    /// Mean relative distance over the seeds.
    pub rel: f64,
}

/// Test accuracy with the first `k` stages frozen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FreezePoint {
    /// The scheme.
    pub scheme: String,
    /// Frozen stages.
    pub k: usize,
    /// Test accuracy over seeds, percent.
    pub acc: Interval,
}

/// Per-epoch figures of one final run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// The scheme.
    pub scheme: String,
    /// The seed.
    pub seed: u64,
    /// Training accuracy per epoch (0..1).
    pub train_acc: Vec<f64>,
    /// Validation accuracy per epoch (0..1), if a validation split was held out.
    pub val_acc: Vec<f64>,
    /// Mean task loss per epoch.
    pub task_loss: Vec<f64>,
}

/// Everything the report shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StudyResults {
    /// A title (the study's name).
    pub title: String,
    /// One paragraph on the setup: source, target, images per class, seeds, search budget.
    pub setup: String,
    /// One row per scheme, in the study's order.
    pub schemes: Vec<SchemeRow>,
    /// Every search trial.
    pub search: Vec<SearchPoint>,
    /// Per-layer distances (all schemes; the report compares L2 with L2-SP).
    pub distances: Vec<LayerDistance>,
    /// The freeze sweep (may be empty).
    pub freeze: Vec<FreezePoint>,
    /// Training curves of the final runs.
    pub curves: Vec<Curve>,
    /// The objective, the source validation images and the recommendation.
    #[serde(default)]
    pub choice: Choice,
    /// Weight-space interpolation of the finals toward the source (`[final] interpolate`).
    #[serde(default)]
    pub interpolation: Vec<InterpPoint>,
}

/// One scheme's finals interpolated at one weight `a` (means over seeds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InterpPoint {
    /// The scheme.
    pub scheme: String,
    /// The fine-tune's weight (0: the source).
    pub a: f64,
    /// Target test accuracy (percent).
    pub acc: Interval,
    /// Forgetting on the source test images (points), when measured.
    pub forgetting: Option<Interval>,
}
