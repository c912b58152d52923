//! Fine-tuning a [`SegNet`] with a regularization scheme, and its evaluation.
//!
//! The loss is the mean per-pixel cross-entropy over the labelled pixels (mask values other
//! than [`IGNORE`]): `−1/N Σ_pixels log softmax(logits)_{true class}`. The schemes are the
//! classification path's ([`crate::regularizer::Penalty`]): the starting point `w0` is the
//! classification checkpoint under the backbone's names (`backbone.` + its names), so the
//! backbone is the shared part `S` and the new head `classifier.*` is `S̄` with plain L2 (β).
//! SGD with momentum, the step schedule; each batch is drawn without replacement, each image
//! augmented by [`augment`] to the crop size (normalized by the source model's mean and std).

use std::collections::BTreeMap;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::{Confusion, IGNORE, SegAugment, SegDataset, SegImage, SegNet, augment};
use crate::fisher::Fisher;
use crate::models::checkpoint::Checkpoint;
use crate::regularizer::{Anchor, FisherScaling, Penalty, PenaltyConfig, Scheme, StartingPoint};
use crate::train::schedule::Schedule;
use crate::train::{BnMode, Sgd, apply_freeze};
use crate::{Error, Result};

/// How a segmentation network is fine-tuned.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SegTrainConfig {
    /// The scheme on the backbone.
    pub scheme: Scheme,
    /// Its weight α.
    pub alpha: f64,
    /// L2 weight β on the head.
    pub beta: f64,
    /// Base learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Epochs (the step schedule drops the rate 10x at 50 % and 75 %).
    pub epochs: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// The augmentation; its crop is the training size (required).
    pub augment: SegAugment,
    /// Per-channel mean and std the inputs are normalized with (the source model's).
    pub mean: Vec<f32>,
    /// See `mean`.
    pub std: Vec<f32>,
    /// Seed of the order and the augmentation.
    pub seed: u64,
    /// Freeze the stem and the first K stages of the backbone (`0..=4`; no updates, no
    /// penalty, BatchNorm statistics fixed), as `finetune --freeze` does.
    pub freeze: Option<usize>,
    /// BatchNorm during training: `Train` (batch statistics, running averages updated) or
    /// `Frozen` (running statistics used and kept); `Auto` is `Train` here (`segment` resolves
    /// it by the backbone first: `Frozen` for EfficientNet-Lite0, see [`BnMode::Auto`]).
    /// `Recalibrate` is not offered for segmentation (refused).
    pub bn: BnMode,
}

/// One epoch of a fine-tune.
#[derive(Clone, Debug, PartialEq)]
pub struct SegEpoch {
    /// Mean per-pixel cross-entropy over the epoch's batches.
    pub loss: f64,
    /// α·Ω(w_S) at the epoch's last batch.
    pub penalty_shared: f64,
}

/// The classification checkpoint `source` as a starting point for a segmentation network:
/// its tensors under `backbone.` (its head `fc.*` left out).
pub fn starting_point(source: &Checkpoint) -> StartingPoint {
    let renamed = Checkpoint {
        path: source.path.clone(),
        tensors: under_backbone(&source.tensors),
        metadata: source.metadata.clone(),
    };
    StartingPoint::new(renamed, &[])
}

/// [`starting_point`] with the source's Fisher diagonal (for the Fisher schemes), renamed the
/// same way; the file must describe the source model (the error names the tensor).
pub fn starting_point_with_fisher(
    source: &Checkpoint,
    fisher: Fisher,
    scaling: FisherScaling,
) -> Result<StartingPoint> {
    let fisher = Fisher {
        tensors: under_backbone(&fisher.tensors),
        ..fisher
    };
    starting_point(source).with_fisher(fisher, scaling)
}

/// The classification heads of the backbones segmentation takes: ResNet's `fc.*`,
/// EfficientNet-Lite0's `_fc.*`.
pub const CLASSIFIER_HEADS: [&str; 2] = ["fc.", "_fc."];

/// Whether a classification checkpoint's tensor belongs to its head ([`CLASSIFIER_HEADS`]).
pub fn is_classifier_head(name: &str) -> bool {
    CLASSIFIER_HEADS.iter().any(|h| name.starts_with(h))
}

/// Classification tensors renamed to a segmentation network's backbone (the head dropped).
fn under_backbone(
    tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    tensors
        .iter()
        .filter(|(n, _)| !is_classifier_head(n))
        .map(|(n, v)| (format!("backbone.{n}"), v.clone()))
        .collect()
}

/// `net` (built on `device`, an autodiff device) fine-tuned on `train`, starting from `start`
/// (none: every tensor is new, plain L2 with β). Returns the network in eval mode and the
/// epochs.
pub fn finetune(
    net: SegNet,
    start: Option<&StartingPoint>,
    train: &SegDataset,
    cfg: &SegTrainConfig,
    device: &Device,
) -> Result<(SegNet, Vec<SegEpoch>)> {
    let Some((ch, cw)) = cfg.augment.crop else {
        return Err(Error::invalid(
            "crop",
            "segmentation training needs a crop size (batches of one size)",
        ));
    };
    if train.is_empty() || cfg.batch_size == 0 || cfg.epochs == 0 {
        return Err(Error::invalid(
            "segmentation training",
            "needs images, a batch size and epochs of at least 1",
        ));
    }
    if cfg.mean.len() != train.channels || cfg.std.len() != train.channels {
        return Err(Error::invalid(
            "mean/std",
            format!("one per channel ({} channels)", train.channels),
        ));
    }
    let stages = net.backbone.stages();
    if let Some(k) = cfg.freeze.filter(|k| *k > stages) {
        return Err(Error::invalid(
            "--freeze",
            format!("{k}, but this backbone has {stages} stages"),
        ));
    }
    let bn_frozen = match cfg.bn {
        BnMode::Train | BnMode::Auto => false,
        BnMode::Frozen => true,
        BnMode::Recalibrate => {
            return Err(Error::invalid(
                "--bn",
                "recalibrate is not available for segmentation (use train or frozen)",
            ));
        }
    };
    let frozen = |name: &str| {
        super::Backbone::stage_of(name).is_some_and(|s| cfg.freeze.is_some_and(|k| s <= k))
    };
    let pc = PenaltyConfig {
        scheme: cfg.scheme,
        alpha: cfg.alpha,
        beta: cfg.beta,
        anchor: Anchor::All,
    };
    let mut net = apply_freeze(net, &frozen, bn_frozen);
    let penalty = Penalty::new(&net, start, pc, &frozen, device)?;
    let mut sgd = Sgd::new(cfg.momentum);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut log = Vec::with_capacity(cfg.epochs);
    for epoch in 0..cfg.epochs {
        let lr = Schedule::Step.lr(cfg.lr, 0.1, epoch, cfg.epochs);
        order.shuffle(&mut rng);
        let (mut total, mut batches, mut shared) = (0f64, 0usize, 0f64);
        let n_batches = order.len().div_ceil(cfg.batch_size);
        for (bi, idx) in order.chunks(cfg.batch_size).enumerate() {
            let crops: Vec<SegImage> = idx
                .iter()
                .map(|&i| augment(&train.images[i], train.channels, &cfg.augment, &mut rng))
                .collect();
            let (x, onehot, labelled) = batch(&crops, train, cfg, [ch, cw], device);
            if labelled == 0 {
                continue;
            }
            let logits = net.forward(x);
            let loss = -(log_softmax(logits, 1) * onehot)
                .sum()
                .div_scalar(labelled as f64);
            let value = loss.clone().into_scalar::<f32>() as f64;
            if !value.is_finite() {
                return Err(Error::Diverged(format!(
                    "segmentation loss {value} at epoch {}, lower the learning rate",
                    epoch + 1
                )));
            }
            let grads = loss.backward();
            let grads = GradientsParams::from_grads(grads, &net);
            if bi + 1 == n_batches {
                shared = penalty.values(&net).shared;
            }
            net = sgd.step_penalized(lr, net, grads, &penalty);
            total += value;
            batches += 1;
        }
        log.push(SegEpoch {
            loss: total / batches.max(1) as f64,
            penalty_shared: shared,
        });
    }
    Ok((net.valid(), log))
}

/// The normalized images `[b, c, h, w]`, the one-hot targets `[b, classes, h, w]` (zero on
/// ignored pixels) and the number of labelled pixels.
fn batch(
    crops: &[SegImage],
    ds: &SegDataset,
    cfg: &SegTrainConfig,
    [h, w]: [usize; 2],
    device: &Device,
) -> (Tensor<4>, Tensor<4>, usize) {
    let (b, c, k, p) = (crops.len(), ds.channels, ds.classes.len(), h * w);
    let mut pixels = Vec::with_capacity(b * c * p);
    let mut onehot = vec![0f32; b * k * p];
    let mut labelled = 0;
    for (i, im) in crops.iter().enumerate() {
        for ch in 0..c {
            let (m, s) = (cfg.mean[ch], cfg.std[ch]);
            pixels.extend(im.pixels[ch * p..(ch + 1) * p].iter().map(|v| (v - m) / s));
        }
        for (j, &t) in im.mask.iter().enumerate() {
            if t != IGNORE {
                onehot[(i * k + t as usize) * p + j] = 1.0;
                labelled += 1;
            }
        }
    }
    (
        Tensor::<4>::from_data(TensorData::new(pixels, [b, c, h, w]), device),
        Tensor::<4>::from_data(TensorData::new(onehot, [b, k, h, w]), device),
        labelled,
    )
}

/// The confusion matrix of `net` (in eval mode) on `ds`, one image at a time (images keep
/// their sizes), inputs normalized by `mean` and `std`.
pub fn evaluate(
    net: &SegNet,
    ds: &SegDataset,
    mean: &[f32],
    std: &[f32],
    device: &Device,
) -> Result<Confusion> {
    let mut conf = Confusion::new(ds.classes.len());
    for im in &ds.images {
        let pred = predict_pixels(
            net,
            &im.pixels,
            ds.channels,
            [im.height, im.width],
            mean,
            std,
            device,
        );
        conf.add(&im.mask, &pred)?;
    }
    Ok(conf)
}

/// The most likely class of every pixel of one image given as pixels in `[0, 1]` (CHW,
/// `channels × h × w`), normalized by `mean` and `std` here.
pub fn predict_pixels(
    net: &SegNet,
    pixels: &[f32],
    channels: usize,
    [h, w]: [usize; 2],
    mean: &[f32],
    std: &[f32],
    device: &Device,
) -> Vec<u8> {
    let p = h * w;
    let x: Vec<f32> = (0..channels)
        .flat_map(|c| {
            pixels[c * p..(c + 1) * p]
                .iter()
                .map(move |v| (v - mean[c]) / std[c])
        })
        .collect();
    predict(
        net,
        Tensor::<4>::from_data(TensorData::new(x, [1, channels, h, w]), device),
    )
}

/// The most likely class of every pixel of one normalized image `[1, c, h, w]`.
pub fn predict(net: &SegNet, x: Tensor<4>) -> Vec<u8> {
    let logits = net.forward(x);
    let [_, k, h, w] = logits.dims();
    let v: Vec<f32> = logits
        .into_data()
        .convert::<f32>()
        .try_to_vec()
        .expect("f32 logits");
    let p = h * w;
    (0..p)
        .map(|j| {
            (0..k)
                .max_by(|&a, &b| v[a * p + j].total_cmp(&v[b * p + j]))
                .unwrap_or(0) as u8
        })
        .collect()
}
