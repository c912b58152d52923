//! One segmentation fine-tune from a classification checkpoint, end to end: what
//! `sptune segment` runs.
//!
//! The checkpoint's ResNet becomes the backbone (its head dropped), dilated to the output
//! stride asked for, with a new FCN head for the data's classes; it is fine-tuned on
//! `DATA/train` (folder layout) with the scheme, evaluated on `DATA/test` (mIoU, per-class IoU,
//! pixel accuracy), optionally measured for forgetting (the source head back on the
//! fine-tuned backbone, on the source task's test images), and saved.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::{Backbone, SegAugment, SegNet, SegTrainConfig, evaluate, finetune, load_mask_folder};
use crate::eval::{Forgetting, forgetting};
use crate::fisher::Fisher;
use crate::models::Net;
use crate::models::checkpoint::{Checkpoint, finite_tensors, load_into, to_bytes};
use crate::regularizer::{FisherScaling, Scheme};
use crate::{Error, Result, params, util};

/// What `sptune segment` does.
#[derive(Clone, Debug)]
pub struct SegmentConfig {
    /// The classification checkpoint (a ResNet).
    pub init: PathBuf,
    /// The folder with `train/` and `test/` in the folder layout.
    pub data: PathBuf,
    /// Where the segmentation network is saved (safetensors), if anywhere.
    pub out: Option<PathBuf>,
    /// Stride of the backbone's output: with torchvision's stem 8, 16 or 32 (no dilation),
    /// with the small stem 2, 4 or 8.
    pub output_stride: usize,
    /// The fine-tune.
    pub train: SegTrainConfig,
    /// The source task's data and classes, for forgetting (`None`: not measured).
    pub source: Option<(String, String)>,
    /// The source model's Fisher diagonal (`sptune fisher`), for the Fisher schemes; used
    /// with its mean normalized to 1 (`FisherScaling::default`).
    pub fisher: Option<PathBuf>,
}

/// What came out.
#[derive(Clone, Debug)]
pub struct SegmentOutcome {
    /// Class names of the data.
    pub classes: Vec<String>,
    /// Per-class IoU on the test scenes (`None`: class absent from truth and prediction).
    pub iou: Vec<Option<f64>>,
    /// Mean IoU.
    pub miou: f64,
    /// Pixel accuracy.
    pub pixel_accuracy: f64,
    /// Forgetting of the source task, when asked for.
    pub forgetting: Option<Forgetting>,
    /// Mean per-pixel loss of each epoch.
    pub losses: Vec<f64>,
}

/// The dilation flags of stages 2-4 that give `output_stride`, for a stem of stride `stem`
/// (torchvision's: 4, output strides 32, 16, 8; the small stem: 1, output strides 8, 4, 2).
fn dilation_for(output_stride: usize, stem: usize) -> Result<[bool; 3]> {
    let plain = stem * 8;
    let allowed = [plain, plain / 2, plain / 4];
    match allowed.iter().position(|&s| s == output_stride) {
        Some(0) => Ok([false, false, false]),
        Some(1) => Ok([false, false, true]),
        Some(2) => Ok([false, true, true]),
        _ => Err(Error::invalid(
            "--output-stride",
            format!(
                "{output_stride} (this backbone's stem allows {}, {} or {})",
                allowed[0], allowed[1], allowed[2]
            ),
        )),
    }
}

/// Runs one segmentation fine-tune (see the module's documentation) on `device` (the plain
/// device; training uses its autodiff counterpart).
pub fn segment(cfg: &SegmentConfig, device: &Device) -> Result<SegmentOutcome> {
    if let Some(out) = &cfg.out {
        util::check_output(out, &[&cfg.init])?;
    }
    let source = Checkpoint::read(&cfg.init)?;
    let spec = source.spec()?;
    if !spec.arch.starts_with("resnet") {
        return Err(Error::invalid(
            "--init",
            format!(
                "{} is a {} checkpoint; segmentation takes a ResNet backbone",
                cfg.init.display(),
                spec.arch
            ),
        ));
    }
    let dilate = dilation_for(cfg.output_stride, if spec.small_stem { 1 } else { 4 })?;
    let channels = spec.input[0];
    let train = load_mask_folder(&cfg.data.join("train"), channels)?;
    let test = load_mask_folder(&cfg.data.join("test"), channels)?;
    if train.classes != test.classes {
        return Err(Error::format(
            cfg.data.join("test"),
            "its classes differ from train/'s",
        ));
    }
    let ad = device.clone().autodiff();
    let (net, _) = load_into(spec.init(&ad)?, &spec, &source, false)?;
    let Net::ResNet(resnet) = net else {
        unreachable!("a resnet spec builds a ResNet")
    };
    let backbone = Backbone::from_resnet(resnet).dilate(dilate);
    let net = SegNet::fcn(backbone, train.classes.len(), &ad);
    let start = match &cfg.fisher {
        Some(f) => super::train::starting_point_with_fisher(
            &source,
            Fisher::read(f)?,
            FisherScaling::default(),
        )?,
        None => super::starting_point(&source),
    };
    let tc = SegTrainConfig {
        mean: spec.mean.clone(),
        std: spec.std.clone(),
        ..cfg.train.clone()
    };
    let (net, log) = finetune(net, Some(&start), &train, &tc, &ad)?;
    let conf = evaluate(&net, &test, &spec.mean, &spec.std, &ad)?;
    let forgetting = match &cfg.source {
        Some((data, classes)) => {
            let dc = crate::task::DataConfig {
                data: data.clone(),
                classes: classes.clone(),
                ..Default::default()
            };
            let task = crate::task::load(&dc, channels)?;
            let tuned = as_classifier(&net, &source);
            Some(forgetting(&source, &tuned, &task.test, device)?)
        }
        None => None,
    };
    if let Some(out) = &cfg.out {
        save(&net, &train.classes, &source, out)?;
    }
    Ok(SegmentOutcome {
        classes: train.classes.clone(),
        iou: conf.iou(),
        miou: conf.miou(),
        pixel_accuracy: conf.pixel_accuracy(),
        forgetting,
        losses: log.iter().map(|e| e.loss).collect(),
    })
}

/// The fine-tuned backbone with the source's head, as a classification checkpoint of the
/// source's spec (what forgetting is measured on).
pub fn as_classifier(net: &SegNet, source: &Checkpoint) -> Checkpoint {
    let mut tensors: std::collections::BTreeMap<_, _> = params::values(net)
        .into_iter()
        .filter_map(|(i, v)| {
            i.name
                .strip_prefix("backbone.")
                .map(|n| (n.to_string(), (i.shape, v)))
        })
        .collect();
    for (n, t) in &source.tensors {
        if n.starts_with("fc.") {
            tensors.insert(n.clone(), t.clone());
        }
    }
    Checkpoint {
        path: PathBuf::from("the fine-tuned backbone with the source head"),
        tensors,
        metadata: source.metadata.clone(),
    }
}

/// Saves `net` (torchvision's segmentation names, BatchNorm counters included as in a
/// torchvision state dict) with its classes and the source's spec.
fn save(net: &SegNet, classes: &[String], source: &Checkpoint, path: &Path) -> Result<()> {
    let (tensors, nbt) = finite_tensors(net, path)?;
    let mut meta = HashMap::new();
    meta.insert("format".into(), "pt".into());
    meta.insert("arch".into(), "fcn".into());
    meta.insert(
        "classes".into(),
        serde_json::to_string(classes).expect("strings serialize"),
    );
    if let Some(s) = source.metadata.get("spec") {
        meta.insert("backbone_spec".into(), s.clone());
    }
    let bytes = to_bytes(&tensors, &nbt, meta)?;
    util::write_atomic(path, &bytes)
}

/// The default fine-tune of `sptune segment` for `scheme`.
pub fn default_train(scheme: Scheme) -> SegTrainConfig {
    SegTrainConfig {
        scheme,
        alpha: 0.01,
        beta: 0.01,
        lr: 0.01,
        momentum: 0.9,
        epochs: 20,
        batch_size: 16,
        augment: SegAugment {
            scale: (0.75, 1.25),
            crop: Some((64, 64)),
            flip: true,
        },
        mean: vec![],
        std: vec![],
        seed: 0,
    }
}
