//! Training: pretraining from scratch and fine-tuning from a starting point.
//!
//! [`fit`] runs epochs of SGD over a [`Dataset`]: forward, cross-entropy, backward, then
//! [`sgd::Sgd::step_penalized`]: the regularizer's gradient added to the task gradient and
//! SGD's momentum update, fused into one pass per tensor on the CPU.
//! Each epoch yields an
//! [`EpochLog`] (task loss, penalty on `S`, penalty on `S̄`, train/val accuracy) that the CLI
//! writes to `summary.csv`.

pub mod prefix_cache;
pub mod resume;
pub mod schedule;
pub mod sgd;

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::{self, Dataset};
use crate::eval;
use crate::models::{ModelSpec, Net};
use crate::regularizer::{Anchor, Penalties, Penalty, PenaltyConfig, Scheme, StartingPoint};
use crate::util::Choice;
use crate::{Error, Result};

pub use resume::{EpochState, TrainState};
pub use schedule::Schedule;

/// The divergence guard's loss factor: a step whose loss exceeds this many times
/// max(first step's loss, ln(classes)) stops the run ([`Error::Diverged`]).
pub const DIVERGENCE_LOSS_FACTOR: f64 = 100.0;
/// The divergence guard's weight bound: a trained parameter whose magnitude exceeds this at an
/// epoch end stops the run (trained networks stay orders of magnitude below).
pub const DIVERGENCE_WEIGHT_BOUND: f64 = 1e5;
pub use sgd::Sgd;

/// Optimization and regularization settings shared by `pretrain` and `finetune`.
///
/// The defaults differ by command, and live here only: [`TrainConfig::finetune`] and
/// [`TrainConfig::pretrain`].
///
/// | field | finetune | pretrain | range |
/// |---|---|---|---|
/// | `epochs` | 10 | 10 | 1 ..= [`MAX_EPOCHS`] |
/// | `batch_size` | 64 | 64 | 1 ..= [`MAX_BATCH_SIZE`] |
/// | `lr` | 0.01 | 0.01 | > 0 |
/// | `momentum` | 0.9 | 0.9 | [0, 1) |
/// | `schedule` | step | step | step, cosine, constant |
/// | `gamma` | 0.1 | 0.1 | (0, 1] |
/// | `reg` | l2-sp | none | none, l2, l2-sp, l1-sp, gl-sp, l2-sp-fisher, gl-sp-fisher (pretrain: none, l2) |
/// | `alpha` | 0.01 | 0.01 | ≥ 0 |
/// | `beta` | 0.01 | 0.0005 | ≥ 0 |
/// | `anchor` | all | all | all, weights |
/// | `freeze` | none | none | 0 ..= the architecture's stages |
/// | `bn` | auto | train | train, frozen, auto, recalibrate |
/// | `augment` | false | false | |
/// | `seed` | 0 | 0 | |
/// | `backbone_lr_mult` | 1 | 1 | > 0: the lr of everything but the new head is scaled by it |
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Base learning rate.
    pub lr: f64,
    /// SGD momentum (dampening 0).
    pub momentum: f64,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Factor of each step of the step schedule.
    pub gamma: f64,
    /// Penalty on the shared part `S`.
    pub reg: Scheme,
    /// Weight of the penalty on `S`.
    pub alpha: f64,
    /// Weight of plain L2 on the new part `S̄`.
    pub beta: f64,
    /// Which tensors of `S` are regularized.
    pub anchor: Anchor,
    /// Freeze the stem and the first K stages (no updates, BatchNorm statistics fixed).
    pub freeze: Option<usize>,
    /// BatchNorm statistics during training: `train` (batch statistics, running averages
    /// updated: PyTorch's `model.train()`) or `frozen` (running statistics of the starting point
    /// used and kept; affine parameters still trained).
    pub bn: BnMode,
    /// Random crop (padding 2) and horizontal flip on training batches.
    pub augment: bool,
    /// Seed of initialization, shuffling and augmentation.
    pub seed: u64,
    /// Learning-rate factor of every trained tensor but the new head `S̄` (peers fine-tune the
    /// backbone at 0.1x); 1 = one learning rate for all.
    pub backbone_lr_mult: f64,
}

impl Default for TrainConfig {
    /// The fine-tuning defaults ([`TrainConfig::finetune`]).
    fn default() -> Self {
        TrainConfig::finetune()
    }
}

impl TrainConfig {
    /// Defaults of `finetune`: L2-SP, BatchNorm mode `auto`.
    pub fn finetune() -> Self {
        TrainConfig {
            epochs: 10,
            batch_size: 64,
            lr: 0.01,
            momentum: 0.9,
            schedule: Schedule::Step,
            gamma: 0.1,
            reg: Scheme::L2Sp,
            alpha: 0.01,
            beta: 0.01,
            anchor: Anchor::All,
            freeze: None,
            bn: BnMode::Auto,
            augment: false,
            seed: 0,
            backbone_lr_mult: 1.0,
        }
    }

    /// Defaults of `pretrain`: no penalty but weight decay β = 5e-4 on every parameter,
    /// BatchNorm in training mode.
    pub fn pretrain() -> Self {
        TrainConfig {
            reg: Scheme::None,
            beta: 5e-4,
            bn: BnMode::Train,
            ..TrainConfig::finetune()
        }
    }
}

/// The most epochs a run may ask for (`--epochs`, `train.epochs`).
pub const MAX_EPOCHS: usize = 100_000;
/// The largest batch (`--batch-size`, `train.batch_size`).
pub const MAX_BATCH_SIZE: usize = 65_536;

impl TrainConfig {
    /// Checks ranges; the error names the option and the value.
    pub fn validate(&self) -> Result<()> {
        let bad = |w: &str, m: String| Err(Error::invalid(w, m));
        if self.epochs == 0 || self.epochs > MAX_EPOCHS {
            return bad(
                "--epochs",
                format!("{} is outside 1..={MAX_EPOCHS}", self.epochs),
            );
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH_SIZE {
            return bad(
                "--batch-size",
                format!("{} is outside 1..={MAX_BATCH_SIZE}", self.batch_size),
            );
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("--lr", format!("{} is not a positive number", self.lr));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad("--momentum", format!("{} is outside [0, 1)", self.momentum));
        }
        if !(self.gamma > 0.0 && self.gamma <= 1.0) {
            return bad("--gamma", format!("{} is outside (0, 1]", self.gamma));
        }
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return bad(
                "--alpha",
                format!("{} is not a non-negative number", self.alpha),
            );
        }
        if !(self.backbone_lr_mult.is_finite() && self.backbone_lr_mult > 0.0) {
            return bad(
                "--backbone-lr-mult",
                format!("{} is not a positive number", self.backbone_lr_mult),
            );
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return bad(
                "--beta",
                format!("{} is not a non-negative number", self.beta),
            );
        }
        Ok(())
    }
}

/// How BatchNorm layers behave while training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum BnMode {
    /// Normalize with batch statistics and update the running averages.
    #[default]
    Train,
    /// Normalize with the running statistics and never update them.
    Frozen,
    /// `Frozen` when fine-tuning (a starting point is given) an architecture whose BatchNorm
    /// momentum is below 0.05, `Train` otherwise. EfficientNet-Lite's momentum is 0.01: in a
    /// short fine-tune its running statistics hardly leave their ImageNet values while the
    /// batches are normalized with the target's statistics, and eval-mode accuracy collapses
    /// (measured: 84-88 % train, 25-33 % test on Fashion-MNIST; 57 % test with `frozen`).
    /// ResNets (momentum 0.1) keep `Train`, PyTorch's default.
    Auto,
    /// `Train` during training, then one pass over the training images (no augmentation, file
    /// order) that replaces every trainable BatchNorm's running statistics by the average of
    /// the batch statistics ([`recalibrate_bn`], PyTorch's `momentum=None`).
    Recalibrate,
}

impl crate::util::Choice for BnMode {
    const ALL: &'static [Self] = &[
        BnMode::Train,
        BnMode::Frozen,
        BnMode::Auto,
        BnMode::Recalibrate,
    ];
    fn name(self) -> &'static str {
        match self {
            BnMode::Train => "train",
            BnMode::Frozen => "frozen",
            BnMode::Auto => "auto",
            BnMode::Recalibrate => "recalibrate",
        }
    }
}

impl BnMode {
    /// The mode `Auto` stands for, for `spec` (fine-tuning when `finetune`).
    pub fn resolve(self, spec: &ModelSpec, finetune: bool) -> BnMode {
        match self {
            BnMode::Auto if finetune && spec.bn_momentum().is_some_and(|m| m < 0.05) => {
                BnMode::Frozen
            }
            BnMode::Auto => BnMode::Train,
            m => m,
        }
    }
}

/// Merges every BatchNorm's pending running-statistics update into its stored value.
///
/// burn's `RunningState::update` keeps the newest value in a per-thread slot that is merged
/// only by the next update or by `value_sync`; `value()` (eval-mode BatchNorm), module
/// visitors (checkpoint saving) and mappers read the stored value. Without this, a model
/// evaluated or saved after training would carry the statistics from one step earlier.
pub fn sync_running_stats(mut net: Net) -> Net {
    for b in net.batch_norms_mut() {
        let _ = b.running_mean.value_sync();
        let _ = b.running_var.value_sync();
    }
    net
}

/// Replaces the running statistics of every BatchNorm still in training mode (frozen stages
/// keep theirs) by the average over `ds`'s batches, taken in file order with `batch` images each
/// and no augmentation: batch k is blended in with momentum 1/(k+1), so after the pass the
/// running mean is the mean of the batch means and the running variance the mean of the batch
/// variances (burn's batch variance is the biased one). `net` must be on an autodiff device;
/// nothing is back-propagated.
pub fn recalibrate_bn(
    mut net: Net,
    spec: &ModelSpec,
    ds: &Dataset,
    batch: usize,
    device: &Device,
) -> Result<Net> {
    if ds.is_empty() {
        return Err(Error::invalid("training set", "no images"));
    }
    let saved: Vec<f64> = net.batch_norms_mut().iter().map(|b| b.momentum).collect();
    let opts = spec.batch_options(false);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let idx: Vec<usize> = (0..ds.len()).collect();
    for (k, chunk) in idx.chunks(batch.max(1)).enumerate() {
        for b in net.batch_norms_mut() {
            b.momentum = 1.0 / (k + 1) as f64;
        }
        let (x, _) = data::make_batch(ds, chunk, &opts, &mut rng, device)?;
        drop(net.forward(x));
    }
    for (b, m) in net.batch_norms_mut().into_iter().zip(saved) {
        b.momentum = m;
    }
    Ok(sync_running_stats(net))
}

/// One epoch's figures.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EpochLog {
    /// 1-based epoch.
    pub epoch: usize,
    /// Learning rate used.
    pub lr: f64,
    /// Mean cross-entropy over the epoch's batches.
    pub task_loss: f64,
    /// α·Ω(w_S) at the epoch's last step.
    pub penalty_shared: f64,
    /// β·½‖w_S̄‖² at the epoch's last step.
    pub penalty_new: f64,
    /// Accuracy on the training batches (train-mode forward, augmented).
    pub train_acc: f64,
    /// Accuracy on the validation split, if any.
    pub val_acc: Option<f64>,
    /// Mean cross-entropy on the validation split, if any (eval mode).
    pub val_loss: Option<f64>,
    /// Wall time of the epoch.
    pub seconds: f64,
    /// Accuracy on the source task's validation images with the source head put back on this
    /// epoch's body, where a [`Hooks::probe`] measured it (a study's search trials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_val_acc: Option<f64>,
}

/// An independent copy of `net`. burn's `clone` shares each BatchNorm's running statistics
/// (an `Arc`), so training the original would also change the copy's statistics: the best
/// epoch's network would carry the last epoch's statistics.
pub fn snapshot(net: &Net) -> Net {
    net.valid().train()
}

/// The trained parameter of largest magnitude: (checkpoint name, max |w|); NaN counts as
/// infinite.
fn largest_weight(net: &Net) -> Option<(String, f64)> {
    crate::params::values(net)
        .into_iter()
        .filter(|(i, _)| i.kind == crate::params::Kind::Param)
        .map(|(i, v)| {
            let m = v
                .iter()
                .map(|x| if x.is_nan() { f32::INFINITY } else { x.abs() })
                .fold(0.0f32, f32::max);
            (i.name, m as f64)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// Names frozen by `--freeze K` for this spec.
pub fn frozen_predicate(spec: &ModelSpec, freeze: Option<usize>) -> impl Fn(&str) -> bool + '_ {
    move |name: &str| match freeze {
        None => false,
        Some(k) => {
            let s = spec.stage_of(name);
            s != usize::MAX && s <= k
        }
    }
}

struct Freezer<'a, F: Fn(&str) -> bool> {
    path: crate::params::PathTracker,
    frozen: &'a F,
    bn_frozen: bool,
}

impl<F: Fn(&str) -> bool> Freezer<'_, F> {
    /// Whether the tensor (or BatchNorm flag) at the current path is frozen; the stage is
    /// decided by the first path component, so the flag's own name does not matter.
    fn is_frozen(&self) -> bool {
        (self.frozen)(&self.path.name())
    }
}

impl<F: Fn(&str) -> bool> ModuleMapper for Freezer<'_, F> {
    fn enter_module(&mut self, name: &str, container: &str) {
        self.path.enter(name, container);
    }
    fn exit_module(&mut self, _name: &str, container: &str) {
        self.path.exit(container);
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.is_frozen() {
            param.set_require_grad(false)
        } else {
            param
        }
    }
    fn map_flag(&mut self, flag: Param<burn::module::Flag>) -> Param<burn::module::Flag> {
        if self.bn_frozen || self.is_frozen() {
            flag.with_value(false)
        } else {
            flag
        }
    }
}

/// Stops gradients and BatchNorm statistic updates for the frozen part of `net`; with
/// `bn_frozen` every BatchNorm uses and keeps its running statistics.
pub fn apply_freeze<M: Module>(net: M, frozen: &impl Fn(&str) -> bool, bn_frozen: bool) -> M {
    let mut m = Freezer {
        path: Default::default(),
        frozen,
        bn_frozen,
    };
    net.map(&mut m)
}

/// Progress events for a progress bar.
pub enum Progress {
    /// Training starts: total number of steps.
    Start(u64),
    /// One step done.
    Step,
    /// An epoch finished.
    Epoch(EpochLog),
    /// Something the user should know (one line).
    Note(String),
}

/// Trains `net` (on an autodiff device) on `train`. `start` is the starting point `w0` of
/// the -SP schemes (it decides `S` vs `S̄` and carries the Fisher weights; `None` when
/// pretraining). Returns the trained network (still on the autodiff device) and the per-epoch
/// logs. A non-finite loss stops with [`Error::Diverged`].
#[allow(clippy::too_many_arguments)]
pub fn fit(
    net: Net,
    spec: &ModelSpec,
    start: Option<&StartingPoint>,
    train: &Dataset,
    val: Option<&Dataset>,
    cfg: &TrainConfig,
    device: &Device,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Net, Vec<EpochLog>)> {
    let f = fit_until(
        net,
        spec,
        start,
        train,
        val,
        cfg,
        device,
        progress,
        &mut |_| false,
    )?;
    Ok((f.net, f.logs))
}

/// What [`fit_until`] returns.
pub struct Fitted {
    /// The network after the last epoch run (on the autodiff device).
    pub net: Net,
    /// Per-epoch figures of the epochs run.
    pub logs: Vec<EpochLog>,
    /// The network after the epoch of best validation accuracy (1-based epoch), when a
    /// validation split was given.
    pub best: Option<(usize, Net)>,
    /// Whether `stop` ended training before the last epoch.
    pub stopped: bool,
}

/// [`fit`], keeping the network of the best validation epoch, and asking `stop` after each
/// epoch whether to end training there (successive halving's early stop).
#[allow(clippy::too_many_arguments)]
pub fn fit_until(
    net: Net,
    spec: &ModelSpec,
    start: Option<&StartingPoint>,
    train: &Dataset,
    val: Option<&Dataset>,
    cfg: &TrainConfig,
    device: &Device,
    progress: &mut dyn FnMut(Progress),
    stop: &mut dyn FnMut(&EpochLog) -> bool,
) -> Result<Fitted> {
    let hooks = Hooks {
        progress,
        stop,
        resume: None,
        save_state: None,
        probe: None,
    };
    fit_with(net, spec, start, train, val, cfg, device, hooks)
}

/// The epoch-end state writer of [`Hooks`].
pub type SaveState<'a> = dyn FnMut(&EpochState<'_>) -> Result<()> + 'a;

/// What [`fit_with`] does besides training.
pub struct Hooks<'a> {
    /// Progress events.
    pub progress: &'a mut dyn FnMut(Progress),
    /// Asked after each epoch but the last: end training there?
    pub stop: &'a mut dyn FnMut(&EpochLog) -> bool,
    /// Continue from this state (read with [`resume::read`]) instead of epoch 0.
    pub resume: Option<TrainState>,
    /// Called at every epoch end with the state to save (for example [`resume::save`]).
    pub save_state: Option<&'a mut SaveState<'a>>,
    /// Called at every epoch end, before `stop`, with the network and the 1-based epoch: a
    /// figure it returns goes into the epoch's [`EpochLog::source_val_acc`].
    pub probe: Option<&'a mut Probe<'a>>,
}

/// A [`Hooks::probe`]: the network at an epoch end and the epoch -> an extra figure.
pub type Probe<'a> = dyn FnMut(&Net, usize) -> Result<Option<f64>> + 'a;

/// [`fit_until`] with every hook: resuming from a saved state and saving one at each epoch end.
/// A run resumed from the state of epoch k ends with the same bits as one never stopped.
///
/// Divergence guard: a non-finite loss or penalty, a step loss above
/// [`DIVERGENCE_LOSS_FACTOR`] × max(first step's loss, ln(classes)), or a trained parameter
/// above [`DIVERGENCE_WEIGHT_BOUND`] in magnitude at an epoch end stops with
/// [`Error::Diverged`]; the state of the last good epoch is the last one saved.
#[allow(clippy::too_many_arguments)]
pub fn fit_with(
    net: Net,
    spec: &ModelSpec,
    start: Option<&StartingPoint>,
    train: &Dataset,
    val: Option<&Dataset>,
    cfg: &TrainConfig,
    device: &Device,
    mut hooks: Hooks<'_>,
) -> Result<Fitted> {
    cfg.validate()?;
    if cfg.reg.needs_starting_point() && start.is_none() {
        return Err(Error::invalid(
            "--reg",
            format!("{} needs a starting point (--init)", cfg.reg.name()),
        ));
    }
    if train.is_empty() {
        return Err(Error::invalid("training set", "no images"));
    }
    if let Some(k) = cfg.freeze.filter(|k| *k > spec.stages()) {
        return Err(Error::invalid(
            "--freeze",
            format!("{k}, but {} has {} stages", spec.arch, spec.stages()),
        ));
    }
    let frozen = frozen_predicate(spec, cfg.freeze);
    let bn = cfg.bn.resolve(spec, start.is_some());
    let mut net = apply_freeze(net, &frozen, bn == BnMode::Frozen);
    let penalty = Penalty::new(
        &net,
        start,
        PenaltyConfig {
            scheme: cfg.reg,
            alpha: cfg.alpha,
            beta: cfg.beta,
            anchor: cfg.anchor,
        },
        &frozen,
        device,
    )?;
    let mut opt = Sgd::new(cfg.momentum);
    if cfg.backbone_lr_mult != 1.0 {
        opt = opt.with_scaled_lr(penalty.backbone(), cfg.backbone_lr_mult);
    }
    let (mut best, mut best_acc, mut stopped) = (None, f64::NEG_INFINITY, false);
    // heavy-ball SGD on a quadratic of curvature h alone diverges when lr·h ≥ 2(1 + μ)
    let h = penalty.curvature();
    let limit = 2.0 * (1.0 + cfg.momentum);
    if cfg.lr * h >= limit {
        let hint = if cfg.reg.needs_fisher() {
            "lower --lr or --alpha, or cap the Fisher weights with --fisher-max"
        } else {
            "lower --lr, --alpha or --beta"
        };
        return Err(Error::Diverged(format!(
            "lr × penalty curvature = {:e} × {h:.4e} ≥ 2(1 + momentum) = {limit}: SGD would \
             diverge on the penalty alone ({}, alpha {}, beta {}); {hint}",
            cfg.lr,
            cfg.reg.name(),
            cfg.alpha,
            cfg.beta
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5eed_da7a);
    let mut logs = Vec::new();
    let mut first_loss = None;
    let mut first_epoch = 0;
    if let Some(st) = hooks.resume.take() {
        if st.epochs_done > cfg.epochs {
            return Err(Error::invalid(
                "--epochs",
                format!(
                    "{}, but the resumed run has done {} epochs",
                    cfg.epochs, st.epochs_done
                ),
            ));
        }
        let as_ckpt = |tensors: resume::Tensors| crate::models::checkpoint::Checkpoint {
            path: "resume state".into(),
            tensors,
            metadata: Default::default(),
        };
        net = crate::models::checkpoint::load_into(net, spec, &as_ckpt(st.weights), false)?.0;
        opt.import(
            &resume::names_by_id(&net),
            &st.momentum,
            &device.clone().inner(),
        )?;
        rng = st.rng.restore()?;
        if let Some(b) = st.best {
            let bn_net = crate::models::checkpoint::load_into(
                snapshot(&net),
                spec,
                &as_ckpt(b.weights),
                false,
            )?
            .0;
            best = Some((b.epoch, bn_net));
            best_acc = b.val_acc;
        }
        first_loss = st.first_loss;
        first_epoch = st.epochs_done;
        logs = st.logs;
    }
    let names = resume::names_by_id(&net);
    let loss_floor = (spec.classes.len().max(2) as f64).ln();
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let opts = spec.batch_options(cfg.augment);
    // the frozen prefix, computed once when it is the same in every epoch: for the training
    // images, then, in what is left of the budget, for the validation images
    let (cache, val_cache) = match cfg.freeze {
        Some(k) if !cfg.augment && crate::runtime::cache_budget_mb() > 0 => {
            let t0 = std::time::Instant::now();
            let budget = crate::runtime::cache_budget_mb();
            let build = |ds: &Dataset, batch: usize, budget: usize| {
                prefix_cache::PrefixCache::build(&net, k, ds, &opts, batch, budget, device)
            };
            match build(train, cfg.batch_size, budget)? {
                prefix_cache::Built::Cache(c) => {
                    let mut mib = c.mib();
                    let mut images = format!("{} training", train.len());
                    let mut val_cache = None;
                    let mut val_note = String::new();
                    if let Some(v) = val.filter(|v| !v.is_empty()) {
                        let left = budget.saturating_sub(mib.ceil() as usize);
                        match build(v, spec.eval_batch(), left)? {
                            prefix_cache::Built::Cache(vc) => {
                                mib += vc.mib();
                                images = format!("{images} and {} validation", v.len());
                                val_cache = Some(vc);
                            }
                            prefix_cache::Built::Skipped(_) => {
                                val_note = format!(
                                    "; the {} validation images' outputs do not fit in the \
                                     {left} MiB left of --cache-mb and are recomputed every epoch",
                                    v.len()
                                );
                            }
                        }
                    }
                    let size = match mib {
                        m if m >= 1.0 => format!("{m:.0} MiB"),
                        m => format!("{:.0} KiB", m * 1024.0),
                    };
                    (hooks.progress)(Progress::Note(format!(
                        "--freeze {k}: the frozen stages' outputs of the {images} images \
                         computed once ({size}, {:.1} s) and reused every epoch{val_note}",
                        t0.elapsed().as_secs_f64()
                    )));
                    (Some(c), val_cache)
                }
                prefix_cache::Built::Skipped(why) => {
                    (hooks.progress)(Progress::Note(format!("--freeze {k}: {why}")));
                    (None, None)
                }
            }
        }
        _ => (None, None),
    };
    let progress = &mut *hooks.progress;
    let steps_per_epoch = train.len().div_ceil(cfg.batch_size);
    progress(Progress::Start(
        (steps_per_epoch * (cfg.epochs - first_epoch)) as u64,
    ));
    for epoch in first_epoch..cfg.epochs {
        let t0 = std::time::Instant::now();
        let lr = cfg.schedule.lr(cfg.lr, cfg.gamma, epoch, cfg.epochs);
        let order = data::epoch_order(train.len(), &mut rng);
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let mut pen = Penalties::default();
        for (b, idx) in order.chunks(cfg.batch_size).enumerate() {
            let (logits, y) = match &cache {
                Some(c) => {
                    let (h, y) = c.batch(train, idx, device);
                    (net.suffix(h, c.k).expect("cache built for this net"), y)
                }
                None => {
                    let (x, y) = data::make_batch(train, idx, &opts, &mut rng, device)?;
                    (net.forward(x), y)
                }
            };
            let pred = logits.clone().inner().argmax(1).flatten::<1>(0, 1);
            correct += pred
                .equal(y.clone().inner())
                .int()
                .sum()
                .into_scalar::<i64>() as usize;
            let loss = loss_fn.forward(logits, y);
            let lv = loss.clone().inner().into_scalar::<f32>() as f64;
            let reference = *first_loss.get_or_insert(lv);
            if !lv.is_finite() || lv > DIVERGENCE_LOSS_FACTOR * reference.max(loss_floor) {
                return Err(Error::Diverged(format!(
                    "loss is {lv:.4e} at epoch {}, step {} (the first step's was {reference:.4}; \
                     the guard stops at {DIVERGENCE_LOSS_FACTOR}x); lower --lr (now {lr})",
                    epoch + 1,
                    b + 1
                )));
            }
            loss_sum += lv * idx.len() as f64;
            seen += idx.len();
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            // the penalty values are measured at the epoch's last step, for the log
            if b + 1 == steps_per_epoch {
                pen = penalty.values(&net);
            }
            net = opt.step_penalized(lr, net, grads, &penalty);
            progress(Progress::Step);
        }
        net = sync_running_stats(net);
        let (val_acc, val_loss) = match (val, &val_cache) {
            // the suffix on the stored prefix outputs, in the batches the store was built in
            (Some(v), Some(vc)) => {
                let (inner, plain) = (net.valid(), device.clone().inner());
                let (a, l) =
                    eval::score_batches(v.len(), spec.eval_batch(), true, &plain, |idx| {
                        let (h, y) = vc.batch(v, idx, &plain);
                        Ok((inner.suffix(h, vc.k).expect("store built for this net"), y))
                    })?;
                (Some(a), l)
            }
            (Some(v), None) if !v.is_empty() => {
                let (a, l) =
                    eval::accuracy_and_loss(&net.valid(), spec, v, spec.eval_batch(), device)?;
                (Some(a), Some(l))
            }
            _ => (None, None),
        };
        let mut log = EpochLog {
            epoch: epoch + 1,
            lr,
            task_loss: loss_sum / seen as f64,
            penalty_shared: pen.shared,
            penalty_new: pen.new,
            train_acc: correct as f64 / seen as f64,
            val_acc,
            val_loss,
            seconds: t0.elapsed().as_secs_f64(),
            source_val_acc: None,
        };
        if let Some(probe) = hooks.probe.as_mut() {
            log.source_val_acc = probe(&net, epoch + 1)?;
        }
        if !(log.penalty_shared.is_finite() && log.penalty_new.is_finite()) {
            return Err(Error::Diverged(format!(
                "penalty is not finite at epoch {} (S: {}, new: {})",
                epoch + 1,
                log.penalty_shared,
                log.penalty_new
            )));
        }
        if let Some((name, w)) = largest_weight(&net).filter(|(_, w)| *w > DIVERGENCE_WEIGHT_BOUND)
        {
            return Err(Error::Diverged(format!(
                "parameter {name} reached magnitude {w:.3e} at epoch {} (the guard stops at \
                 {DIVERGENCE_WEIGHT_BOUND:e}); lower --lr (now {lr})",
                epoch + 1
            )));
        }
        progress(Progress::Epoch(log.clone()));
        if let Some(v) = log.val_acc.filter(|v| *v > best_acc) {
            best_acc = v;
            best = Some((log.epoch, snapshot(&net)));
        }
        let halt = epoch + 1 < cfg.epochs && (hooks.stop)(&log);
        logs.push(log);
        if let Some(save) = hooks.save_state.as_mut() {
            save(&EpochState {
                epochs_done: epoch + 1,
                logs: &logs,
                rng: resume::RngState::of(&rng),
                net: &net,
                momentum: opt.export(&names),
                best: best
                    .as_ref()
                    .map(|(e, n)| (*e, best_acc, n, *e == epoch + 1)),
                first_loss,
            })?;
        }
        if halt {
            stopped = true;
            break;
        }
    }
    let (net, best) = if bn == BnMode::Recalibrate {
        let best = match best {
            Some((e, b)) => Some((e, recalibrate_bn(b, spec, train, cfg.batch_size, device)?)),
            None => None,
        };
        (
            recalibrate_bn(net, spec, train, cfg.batch_size, device)?,
            best,
        )
    } else {
        (net, best)
    };
    Ok(Fitted {
        net,
        logs,
        best,
        stopped,
    })
}
