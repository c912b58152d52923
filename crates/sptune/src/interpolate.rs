//! Weight-space interpolation between the starting point and a fine-tune (WiSE-FT, Wortsman et
//! al., CVPR 2022): a free trade-off between target accuracy and keeping the source, for any
//! fine-tune, without training again.
//!
//! `θ(a) = (1 − a)·θ0 + a·θ_ft` on the shared part S (every tensor the fine-tune has in common
//! with the starting point, same name and shape); the new head S̄ (a head the fine-tune replaced
//! for other classes) is the fine-tune's at every `a`. The sum is taken in f64 and rounded to
//! f32 once, so `a = 0` gives θ0's tensors and `a = 1` the fine-tune's, bit for bit.
//!
//! BatchNorm running statistics are not interpolated: averaged statistics do not describe the
//! averaged network's activations (interpolated BatchNorm networks are known to break), so
//! [`interpolate`] recalibrates every BatchNorm on the target training images after
//! interpolating ([`crate::train::recalibrate_bn`]: the mean of the batch statistics, PyTorch's
//! `momentum=None`), unless the fine-tune kept the starting point's statistics
//! ([`kept_statistics`]: a `--bn frozen` fine-tune). Then both ends share them, so does every
//! `θ(a)`, and they are kept: `a = 0` is the starting point itself and `a = 1` the fine-tune as
//! it was trained. (Recalibrating there would replace the source's statistics by the target's:
//! measured on Fashion-MNIST 0-4 -> 5-9, that alone forgot 11.1 points at `a = 0`.)
//! [`interpolate_tensors`] is the plain combination, statistics taken from the fine-tune.
//!
//! [`sweep`] evaluates a list of `a`: target test accuracy and, with the source's test images,
//! the source accuracy of the interpolated body carrying the source head (as forgetting is
//! measured, [`crate::eval::forgetting`]).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use serde::Serialize;

use crate::data::Dataset;
use crate::models::checkpoint::{Checkpoint, checkpoint_of, load_into};
use crate::models::{ModelSpec, Net};
use crate::{Error, Result};

/// Images per batch of the BatchNorm recalibration.
const RECALIBRATION_BATCH: usize = 64;

/// The tensors of S, those the fine-tune `ft` shares with the starting point `w0` (same name
/// and shape, not BatchNorm statistics, not a head `ft` replaced).
pub fn shared_names(w0: &Checkpoint, ft: &Checkpoint) -> Vec<String> {
    let replaced = match (w0.spec(), ft.spec()) {
        (Ok(s0), Ok(s)) if s0.classes != s.classes => s0.head_names(),
        _ => vec![],
    };
    ft.tensors
        .iter()
        .filter(|(n, (shape, _))| {
            !crate::params::is_buffer_name(n)
                && !replaced.contains(n)
                && w0.tensors.get(*n).is_some_and(|(s0, _)| s0 == shape)
        })
        .map(|(n, _)| n.clone())
        .collect()
}

fn check_a(a: f64) -> Result<()> {
    if !(a.is_finite() && (0.0..=1.0).contains(&a)) {
        return Err(Error::invalid(
            "--at",
            format!("{a} is outside [0, 1] (0: the starting point, 1: the fine-tune)"),
        ));
    }
    Ok(())
}

/// `θ(a)` as a checkpoint: S interpolated, everything else (the new head, BatchNorm
/// statistics) the fine-tune's; its description is the fine-tune's.
pub fn interpolate_tensors(w0: &Checkpoint, ft: &Checkpoint, a: f64) -> Result<Checkpoint> {
    check_a(a)?;
    crate::eval::distance::check_comparable(w0, ft)?;
    let mut out = ft.clone();
    out.path = PathBuf::from(format!("({} at a = {a})", ft.path.display()));
    for name in shared_names(w0, ft) {
        let (_, x0) = &w0.tensors[&name];
        let (_, x1) = out.tensors.get_mut(&name).expect("a name of ft");
        for (v, &v0) in x1.iter_mut().zip(x0) {
            *v = ((1.0 - a) * v0 as f64 + a * *v as f64) as f32;
        }
    }
    Ok(out)
}

/// Whether the fine-tune `ft` kept the BatchNorm running statistics of the starting point `w0`
/// (a `--bn frozen` fine-tune): every running mean and variance of `ft` is `w0`'s, bit for bit.
/// False when `ft` has none (nothing to keep or recalibrate).
pub fn kept_statistics(w0: &Checkpoint, ft: &Checkpoint) -> bool {
    let mut stats = ft
        .tensors
        .iter()
        .filter(|(n, _)| n.ends_with("running_mean") || n.ends_with("running_var"))
        .peekable();
    stats.peek().is_some()
        && stats.all(|(n, (shape, v))| {
            w0.tensors.get(n).is_some_and(|(s0, v0)| {
                s0 == shape && v0.iter().zip(v).all(|(x, y)| x.to_bits() == y.to_bits())
            })
        })
}

/// `θ(a)` as a network with its BatchNorm statistics recalibrated on `train` (the target
/// training images; kept when [`kept_statistics`]), and its spec (the fine-tune's).
pub fn interpolate(
    w0: &Checkpoint,
    ft: &Checkpoint,
    a: f64,
    train: &Dataset,
    device: &Device,
) -> Result<(Net, ModelSpec)> {
    let mixed = interpolate_tensors(w0, ft, a)?;
    let spec = ft.spec()?;
    let ad = device.clone().autodiff();
    let (net, _) = load_into(spec.init(&ad)?, &spec, &mixed, false)?;
    if kept_statistics(w0, ft) {
        return Ok((net, spec));
    }
    let net = crate::train::recalibrate_bn(net, &spec, train, RECALIBRATION_BATCH, &ad)?;
    Ok((net, spec))
}

/// One point of a [`sweep`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SweepPoint {
    /// The weight of the fine-tune (0: the starting point).
    pub a: f64,
    /// Target test accuracy (0..1).
    pub target_acc: f64,
    /// Source accuracy with the source head (0..1), with source test images.
    pub source_acc: Option<f64>,
}

/// Target test accuracy and source accuracy of `θ(a)` for each of `at`, BatchNorm recalibrated
/// on `train` each time (kept when [`kept_statistics`]).
pub fn sweep(
    w0: &Checkpoint,
    ft: &Checkpoint,
    at: &[f64],
    train: &Dataset,
    target_test: &Dataset,
    source_test: Option<&Dataset>,
    device: &Device,
) -> Result<Vec<SweepPoint>> {
    let plain = device.clone().without_autodiff();
    at.iter()
        .map(|&a| {
            let (net, spec) = interpolate(w0, ft, a, train, device)?;
            let net = net.valid();
            let target_acc =
                crate::eval::accuracy(&net, &spec, target_test, spec.eval_batch(), &plain)?;
            let source_acc = match source_test {
                Some(st) => {
                    let ck = checkpoint_of(&net, &spec, Path::new("(interpolated)"))?;
                    Some(crate::eval::source_head_accuracy(w0, &ck, st, &plain)?)
                }
                None => None,
            };
            Ok(SweepPoint {
                a,
                target_acc,
                source_acc,
            })
        })
        .collect()
}

/// Parses `0,0.1,...,1`-style lists: comma-separated values, or `lo:step:hi`.
pub fn parse_sweep(s: &str) -> Result<Vec<f64>> {
    let bad = |why: String| Error::invalid("--sweep", format!("{s:?}: {why}"));
    let parts: Vec<&str> = s.split(':').collect();
    let values: Vec<f64> = if parts.len() == 3 {
        let num = |p: &str| {
            p.trim()
                .parse::<f64>()
                .map_err(|_| bad(format!("{p:?} is not a number")))
        };
        let (lo, step, hi) = (num(parts[0])?, num(parts[1])?, num(parts[2])?);
        if !(step > 0.0 && step.is_finite()) {
            return Err(bad("the step must be positive".into()));
        }
        let n = ((hi - lo) / step + 1e-9).floor();
        if !(0.0..=1000.0).contains(&n) {
            return Err(bad("between 1 and 1001 values".into()));
        }
        // rounded to 12 decimals, so `0:0.1:1` gives 0.3 and not 0.30000000000000004
        (0..=n as usize)
            .map(|k| ((lo + k as f64 * step) * 1e12).round() / 1e12)
            .collect()
    } else {
        s.split(',')
            .map(|p| {
                p.trim()
                    .parse::<f64>()
                    .map_err(|_| bad(format!("{p:?} is not a number")))
            })
            .collect::<Result<_>>()?
    };
    if values.is_empty() || values.len() > 1001 {
        return Err(bad("between 1 and 1001 values".into()));
    }
    for &a in &values {
        check_a(a).map_err(|_| bad(format!("{a} is outside [0, 1]")))?;
    }
    Ok(values)
}

/// What `sptune interpolate` does: one model saved, or a sweep printed.
#[derive(Clone, Debug)]
pub struct InterpolateConfig {
    /// The starting point θ0.
    pub from: PathBuf,
    /// The fine-tune θ_ft.
    pub to: PathBuf,
    /// The `a` values to evaluate (one, with `out`, for a saved model).
    pub at: Vec<f64>,
    /// Where the model of the single `a` goes.
    pub out: Option<PathBuf>,
    /// Target data (`fashion-mnist` or a directory); the classes are the fine-tune's.
    pub data: String,
    /// Target training images per class the statistics are recalibrated on (as the fine-tune
    /// was given; None = all).
    pub per_class: Option<usize>,
    /// Seed of that subset.
    pub seed: u64,
    /// The source task's data (default: `data`); the classes are θ0's.
    pub source_data: Option<String>,
}

/// What [`run`] produced.
#[derive(Clone, Debug, Serialize)]
pub struct InterpolateOutcome {
    /// One point per `a`.
    pub points: Vec<SweepPoint>,
    /// θ0's own accuracy on the source test images, when they are at hand.
    pub source_before: Option<f64>,
    /// The model written, if any.
    pub out: Option<PathBuf>,
}

/// Loads the data and runs the sweep of `cfg` (and saves the model of its single `a`).
pub fn run(cfg: &InterpolateConfig, device: &Device) -> Result<InterpolateOutcome> {
    if let Some(out) = &cfg.out {
        if cfg.at.len() != 1 {
            return Err(Error::invalid(
                "--out",
                "saves one model: give --at A, not --sweep",
            ));
        }
        let mut inputs = vec![cfg.from.as_path(), cfg.to.as_path()];
        let data = crate::data::data_folder(&cfg.data);
        let source = cfg
            .source_data
            .as_deref()
            .and_then(crate::data::data_folder);
        inputs.extend(data.as_deref());
        inputs.extend(source.as_deref());
        crate::util::check_output(out, &inputs)?;
    }
    let w0 = Checkpoint::read(&cfg.from)?;
    let ft = Checkpoint::read(&cfg.to)?;
    let spec = ft.spec()?;
    let s0 = w0.spec_or_infer(None)?;
    let target = crate::task::load(
        &crate::task::DataConfig {
            data: cfg.data.clone(),
            classes: spec.classes.join(","),
            per_class: cfg.per_class,
            seed: cfg.seed,
            resize: crate::data::stored_side(spec.input[1]),
            ..Default::default()
        },
        spec.input[0],
    )?;
    let source_test = crate::task::load(
        &crate::task::DataConfig {
            data: cfg.source_data.clone().unwrap_or_else(|| cfg.data.clone()),
            classes: s0.classes.join(","),
            resize: crate::data::stored_side(s0.input[1]),
            ..Default::default()
        },
        s0.input[0],
    )
    .ok()
    .map(|t| t.test)
    .filter(|_| w0.metadata.contains_key("spec"));
    let points = sweep(
        &w0,
        &ft,
        &cfg.at,
        &target.train,
        &target.test,
        source_test.as_ref(),
        device,
    )?;
    let source_before = match &source_test {
        Some(st) => Some(crate::eval::forgetting(&w0, &w0, st, device)?.source_acc),
        None => None,
    };
    if let Some(out) = &cfg.out {
        let (net, spec) = interpolate(&w0, &ft, cfg.at[0], &target.train, device)?;
        crate::models::checkpoint::save_model(
            &net.valid(),
            &spec,
            out,
            &[
                ("sptune_command", "interpolate".into()),
                ("interpolated_at", cfg.at[0].to_string()),
                ("from", cfg.from.display().to_string()),
                ("to", cfg.to.display().to_string()),
            ],
        )?;
    }
    Ok(InterpolateOutcome {
        points,
        source_before,
        out: cfg.out.clone(),
    })
}
