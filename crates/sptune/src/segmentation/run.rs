//! One segmentation fine-tune from a classification checkpoint, end to end: what
//! `sptune segment` runs.
//!
//! The checkpoint's network becomes the backbone (its head dropped), dilated to the output
//! stride asked for, with a new FCN head for the data's classes; it is fine-tuned on
//! `DATA/train` (folder layout) with the scheme, evaluated on `DATA/test` (mIoU, per-class IoU,
//! pixel accuracy), optionally measured for forgetting (the source head back on the
//! fine-tuned backbone, on the source task's test images), and saved.

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::model::HeadConfig;
use super::picture::Rgb;
use super::{SegAugment, SegDataset, SegNet, SegTrainConfig, evaluate, finetune, load_mask_folder};
use crate::eval::{Forgetting, forgetting};
use crate::fisher::Fisher;
use crate::models::checkpoint::{Checkpoint, load_into};
use crate::regularizer::{FisherScaling, Scheme};
use crate::{Error, Result, params, util};

/// What `sptune segment` does.
#[derive(Clone, Debug)]
pub struct SegmentConfig {
    /// The classification checkpoint (a ResNet or EfficientNet-Lite0).
    pub init: PathBuf,
    /// The folder with `train/` and `test/` in the folder layout.
    pub data: PathBuf,
    /// Where the segmentation network is saved (safetensors), if anywhere.
    pub out: Option<PathBuf>,
    /// Stride of the backbone's output: with torchvision's stem 8, 16 or 32 (no dilation),
    /// with the small stem 2, 4 or 8.
    pub output_stride: usize,
    /// The head.
    pub head: HeadConfig,
    /// The fine-tune.
    pub train: SegTrainConfig,
    /// The source task's data and classes, for forgetting (`None`: not measured).
    pub source: Option<(String, String)>,
    /// The source model's Fisher diagonal (`sptune fisher`), for the Fisher schemes; used
    /// with its mean normalized to 1 (`FisherScaling::default`).
    pub fisher: Option<PathBuf>,
    /// Candidate values of α (empty: `train.alpha`).
    pub alphas: Vec<f64>,
    /// Candidate base learning rates (empty: `train.lr`). With more than one pair in
    /// `alphas × lrs`, every pair is fine-tuned on the training scenes but a held-out share and
    /// scored on that share, the best pair chosen ([`choose`]), and the final network trained
    /// on all of `train/` with it.
    pub lrs: Vec<f64>,
    /// Share of the training scenes held out for that choice (every `1/share`-th scene, by
    /// file order, so every scheme and seed is validated on the same scenes).
    pub validation: f64,
}

/// One candidate of the choice by validation, and its score.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Trial {
    /// α.
    pub alpha: f64,
    /// The base learning rate.
    pub lr: f64,
    /// mIoU on the held-out training scenes after a fine-tune on the others (`NaN`, written
    /// `null`, when that fine-tune diverged).
    pub val_miou: f64,
    /// Whether the fine-tune diverged (a candidate left out of the choice, not an error).
    pub diverged: bool,
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
    /// The α the final network was trained with.
    pub alpha: f64,
    /// The base learning rate it was trained with.
    pub lr: f64,
    /// Every candidate's validation (empty when α and the rate were given).
    pub validation: Vec<Trial>,
}

/// Runs one segmentation fine-tune (see the module's documentation) on `device` (the plain
/// device; training uses its autodiff counterpart).
pub fn segment(cfg: &SegmentConfig, device: &Device) -> Result<SegmentOutcome> {
    if let Some(out) = &cfg.out {
        let mut inputs = vec![cfg.init.as_path(), cfg.data.as_path()];
        inputs.extend(cfg.fisher.as_deref());
        let source = cfg
            .source
            .as_ref()
            .and_then(|(d, _)| crate::data::data_folder(d));
        inputs.extend(source.as_deref());
        util::check_output(out, &inputs)?;
    }
    let source = Checkpoint::read(&cfg.init)?;
    let spec = source.spec()?;
    if !super::saved::is_backbone(&spec) {
        return Err(Error::invalid(
            "--init",
            format!(
                "{} is a {} checkpoint; segmentation takes a ResNet or EfficientNet-Lite0 \
                 backbone",
                cfg.init.display(),
                spec.arch
            ),
        ));
    }
    // the output stride checked before the data is read
    super::saved::dilation_for(cfg.output_stride, super::saved::plain_stride(&spec))?;
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
    // every fine-tune (each candidate, then the final one) starts from the same draws of the
    // device's generator (head initialization, dropout), so the chosen (α, lr) given alone
    // reproduces the final network, and candidates differ only by α and lr
    let build = || -> Result<SegNet> {
        ad.seed(cfg.train.seed);
        let (net, _) = load_into(spec.init(&ad)?, &spec, &source, false)?;
        let backbone = super::saved::backbone_of(&spec, net, cfg.output_stride)?;
        Ok(cfg.head.build(backbone, train.classes.len(), &ad))
    };
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
        bn: cfg.train.bn.resolve(&spec, true),
        ..cfg.train.clone()
    };
    let mut validation = Vec::new();
    let or = |v: &[f64], d: f64| if v.is_empty() { vec![d] } else { v.to_vec() };
    let grid: Vec<(f64, f64)> = or(&cfg.alphas, tc.alpha)
        .into_iter()
        .flat_map(|a| or(&cfg.lrs, tc.lr).into_iter().map(move |lr| (a, lr)))
        .collect();
    let (alpha, lr) = if let [one] = grid.as_slice() {
        *one
    } else {
        let (fit, val) = hold_out(&train, cfg.validation)?;
        for &(alpha, lr) in &grid {
            let tc = SegTrainConfig {
                alpha,
                lr,
                ..tc.clone()
            };
            let val_miou = match finetune(build()?, Some(&start), &fit, &tc, &ad) {
                Ok((net, _)) => evaluate(&net, &val, &spec.mean, &spec.std, &ad)?.miou(),
                // a rate or an α too large for this scheme: a candidate that lost
                Err(Error::Diverged(_)) => f64::NAN,
                Err(e) => return Err(e),
            };
            validation.push(Trial {
                alpha,
                lr,
                val_miou,
                diverged: val_miou.is_nan(),
            });
        }
        if validation.iter().all(|t| t.diverged) {
            return Err(Error::Diverged(format!(
                "every candidate (alpha, lr) diverged on {}, lower them",
                cfg.data.display()
            )));
        }
        choose(&validation)
    };
    let tc = SegTrainConfig { alpha, lr, ..tc };
    let (net, log) = finetune(build()?, Some(&start), &train, &tc, &ad)?;
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
        let run = serde_json::json!({
            "init": cfg.init, "data": cfg.data, "train": tc, "validation": validation,
            "validation_share": cfg.validation,
        });
        super::saved::save(
            &net,
            &cfg.head,
            &train.classes,
            &spec,
            cfg.output_stride,
            &run,
            out,
        )?;
    }
    Ok(SegmentOutcome {
        classes: train.classes.clone(),
        iou: conf.iou(),
        miou: conf.miou(),
        pixel_accuracy: conf.pixel_accuracy(),
        forgetting,
        losses: log.iter().map(|e| e.loss).collect(),
        alpha,
        lr,
        validation,
    })
}

/// The `(α, lr)` of the candidate with the highest validation mIoU (diverged ones left out);
/// a tie goes to the smaller α (the weaker constraint), then to the smaller rate, whatever the
/// candidates' order.
pub fn choose(trials: &[Trial]) -> (f64, f64) {
    let mut sorted: Vec<&Trial> = trials.iter().filter(|t| !t.diverged).collect();
    sorted.sort_by(|a, b| a.alpha.total_cmp(&b.alpha).then(a.lr.total_cmp(&b.lr)));
    sorted
        .iter()
        .fold(None::<&Trial>, |best, t| match best {
            Some(b) if b.val_miou >= t.val_miou => Some(b),
            _ => Some(t),
        })
        .map_or((f64::NAN, f64::NAN), |t| (t.alpha, t.lr))
}

/// `ds` split into the scenes kept for fitting and every `1/share`-th scene (rounded) held out
/// for validation; both must keep at least one scene.
pub fn hold_out(ds: &SegDataset, share: f64) -> Result<(SegDataset, SegDataset)> {
    if !(share > 0.0 && share < 1.0) {
        return Err(Error::invalid(
            "--validation",
            format!("{share} (a share strictly between 0 and 1)"),
        ));
    }
    let every = (1.0 / share).round().max(2.0) as usize;
    let empty = || SegDataset {
        images: Vec::new(),
        classes: ds.classes.clone(),
        channels: ds.channels,
    };
    let (mut fit, mut val) = (empty(), empty());
    for (i, im) in ds.images.iter().enumerate() {
        if i % every == every - 1 {
            val.images.push(im.clone());
        } else {
            fit.images.push(im.clone());
        }
    }
    if val.is_empty() || fit.is_empty() {
        return Err(Error::invalid(
            "--validation",
            format!(
                "{share} of {} training scenes leaves a split empty",
                ds.len()
            ),
        ));
    }
    Ok((fit, val))
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
        if super::train::is_classifier_head(n) {
            tensors.insert(n.clone(), t.clone());
        }
    }
    Checkpoint {
        path: PathBuf::from("the fine-tuned backbone with the source head"),
        tensors,
        metadata: source.metadata.clone(),
    }
}

/// What `sptune eval` does with a segmentation network.
#[derive(Clone, Debug)]
pub struct SegEvalConfig {
    /// The network ([`super::saved::save`]'s file).
    pub model: PathBuf,
    /// A folder in the folder layout (`images/`, `masks/`, `classes.txt`), or one holding such
    /// a folder as `test/` (what `sptune scenes` writes).
    pub data: PathBuf,
    /// The classification source (its head goes back on the fine-tuned backbone for
    /// forgetting), with the data set its classes are read from.
    pub source: Option<(PathBuf, String)>,
}

/// What `sptune eval` reports for a segmentation network.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SegEvaluation {
    /// The network evaluated.
    pub model: PathBuf,
    /// The folder its images came from.
    pub data: PathBuf,
    /// Images evaluated.
    pub images: usize,
    /// Class names.
    pub classes: Vec<String>,
    /// Per-class IoU (`None`: class absent from truth and prediction).
    pub iou: Vec<Option<f64>>,
    /// Mean IoU over the classes present.
    pub miou: f64,
    /// Pixel accuracy over the labelled pixels.
    pub pixel_accuracy: f64,
    /// Forgetting of the source task, when a source was given.
    pub forgetting: Option<Forgetting>,
}

/// The folder of a segmentation set given as `data`: `data` itself when it holds `images/`,
/// else `data/test` when that does.
fn test_folder(data: &Path) -> PathBuf {
    if !data.join("images").is_dir() && data.join("test").join("images").is_dir() {
        data.join("test")
    } else {
        data.to_path_buf()
    }
}

/// Evaluates a saved segmentation network (see [`SegEvalConfig`]) on `device`.
pub fn evaluate_saved(cfg: &SegEvalConfig, device: &Device) -> Result<SegEvaluation> {
    let ckpt = Checkpoint::read(&cfg.model)?;
    let saved = super::saved::from_checkpoint(&ckpt, device)?;
    let folder = test_folder(&cfg.data);
    let ds = load_mask_folder(&folder, saved.backbone.input[0])?;
    if ds.classes != saved.classes {
        return Err(Error::format(
            folder.join("classes.txt"),
            format!(
                "classes {} differ from the network's {}",
                ds.classes.join(","),
                saved.classes.join(",")
            ),
        ));
    }
    let spec = &saved.backbone;
    let conf = evaluate(&saved.net, &ds, &spec.mean, &spec.std, device)?;
    let forgetting = match &cfg.source {
        Some((path, data)) => {
            let source = Checkpoint::read(path)?;
            let sspec = source.spec()?;
            let dc = crate::task::DataConfig {
                data: data.clone(),
                classes: sspec.classes.join(","),
                ..Default::default()
            };
            let task = crate::task::load(&dc, sspec.input[0])?;
            let tuned = as_classifier(&saved.net, &source);
            Some(forgetting(&source, &tuned, &task.test, device)?)
        }
        None => None,
    };
    Ok(SegEvaluation {
        model: cfg.model.clone(),
        data: folder,
        images: ds.len(),
        classes: saved.classes,
        iou: conf.iou(),
        miou: conf.miou(),
        pixel_accuracy: conf.pixel_accuracy(),
        forgetting,
    })
}

/// One image's segmentation as `sptune predict` writes it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SegPrediction {
    /// The image.
    pub image: PathBuf,
    /// Its predicted mask: a palette PNG (values are class indices, colours VOC's).
    pub mask: PathBuf,
    /// The picture of the image, its true mask (when given) and the prediction, side by side.
    pub panel: Option<PathBuf>,
    /// Pixels predicted for each class.
    pub pixels: Vec<u64>,
}

/// What `sptune predict` does with a segmentation network.
#[derive(Clone, Debug)]
pub struct SegPredictConfig {
    /// The network.
    pub model: PathBuf,
    /// PNG or JPEG images, each segmented at its own size.
    pub images: Vec<PathBuf>,
    /// Folder the masks are written to (`<image stem>.png`; created if missing).
    pub out: PathBuf,
    /// Also write `<image stem>-panel.png`: image | true mask (from `truth`) | prediction,
    /// every pixel repeated `zoom` times.
    pub panel: Option<usize>,
    /// A folder of true masks (`<image stem>.png`), shown in the panels.
    pub truth: Option<PathBuf>,
}

/// Segments images with a saved network and writes their masks (see [`SegPredictConfig`]);
/// every file goes through a temporary name.
pub fn predict_saved(cfg: &SegPredictConfig, device: &Device) -> Result<Vec<SegPrediction>> {
    let mut inputs = vec![cfg.model.as_path()];
    inputs.extend(cfg.truth.as_deref());
    util::refuse_input_dir(&cfg.out, &inputs)?;
    let saved = super::saved::load(&cfg.model, device)?;
    let spec = &saved.backbone;
    let channels = spec.input[0];
    let mut stems = std::collections::HashMap::new();
    for im in &cfg.images {
        let stem = im
            .file_stem()
            .ok_or_else(|| Error::format(im, "has no file name"))?
            .to_string_lossy()
            .into_owned();
        if let Some(other) = stems.insert(stem.clone(), im.clone()) {
            return Err(Error::invalid(
                "images",
                format!(
                    "{} and {} would both write {stem}.png",
                    other.display(),
                    im.display()
                ),
            ));
        }
    }
    // every image (and true mask) is read once before anything is written, so a bad file
    // leaves no partial set of masks behind
    for path in &cfg.images {
        let (_, w, h) = crate::data::image_folder::decode_image_as_is(path, channels)?;
        if let (Some(dir), Some(_)) = (&cfg.truth, cfg.panel) {
            let stem = path.file_stem().unwrap_or_default().to_string_lossy();
            super::data::read_mask_of(&dir.join(format!("{stem}.png")), path, w, h)?;
        }
    }
    std::fs::create_dir_all(&cfg.out).map_err(|e| Error::io(&cfg.out, e))?;
    let mut out = Vec::new();
    for path in &cfg.images {
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        let mask_path = cfg.out.join(format!("{stem}.png"));
        let inputs: Vec<&Path> = cfg.images.iter().map(PathBuf::as_path).collect();
        util::check_output(&mask_path, &inputs)?;
        let (pixels, w, h) = crate::data::image_folder::decode_image_as_is(path, channels)?;
        let pred = super::train::predict_pixels(
            &saved.net,
            &pixels,
            channels,
            [h, w],
            &spec.mean,
            &spec.std,
            device,
        );
        let mut counts = vec![0u64; saved.classes.len()];
        for &v in &pred {
            counts[v as usize] += 1;
        }
        util::write_atomic(&mask_path, &super::data::encode_mask(&pred, w, h)?)?;
        let panel = match cfg.panel {
            Some(zoom) => {
                let mut parts = vec![Rgb::of_image(&pixels, channels, w, h)];
                if let Some(dir) = &cfg.truth {
                    let t =
                        super::data::read_mask_of(&dir.join(format!("{stem}.png")), path, w, h)?;
                    parts.push(Rgb::of_mask(&t, w, h));
                }
                parts.push(Rgb::of_mask(&pred, w, h));
                let panel_path = cfg.out.join(format!("{stem}-panel.png"));
                util::check_output(&panel_path, &inputs)?;
                util::write_atomic(&panel_path, &Rgb::panel(&parts, 2, zoom)?.png()?)?;
                Some(panel_path)
            }
            None => None,
        };
        out.push(SegPrediction {
            image: path.clone(),
            mask: mask_path,
            panel,
            pixels: counts,
        });
    }
    Ok(out)
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
        freeze: None,
        bn: crate::train::BnMode::Auto,
    }
}

#[cfg(test)]
mod tests {
    use super::{Trial, choose, hold_out};
    use crate::segmentation::{SegDataset, SegImage};

    fn t(alpha: f64, val_miou: f64) -> Trial {
        Trial {
            alpha,
            lr: 0.01,
            val_miou,
            diverged: val_miou.is_nan(),
        }
    }

    fn choose_alpha(trials: &[Trial]) -> f64 {
        choose(trials).0
    }

    /// The best validation mIoU wins; a tie goes to the smaller alpha whatever the order, then
    /// to the smaller rate.
    #[test]
    fn alpha_by_validation() {
        let lr = |alpha: f64, lr: f64, val_miou: f64| Trial {
            alpha,
            lr,
            val_miou,
            diverged: false,
        };
        assert_eq!(
            choose(&[lr(0.1, 0.05, 0.6), lr(0.1, 0.01, 0.6), lr(0.01, 0.05, 0.5)]),
            (0.1, 0.01)
        );
        assert_eq!(
            choose_alpha(&[t(0.1, 0.5), t(0.01, 0.7), t(1.0, 0.6)]),
            0.01
        );
        assert_eq!(choose_alpha(&[t(1.0, 0.7), t(0.1, 0.7), t(0.01, 0.2)]), 0.1);
        // a diverged candidate never wins
        assert_eq!(choose_alpha(&[t(0.001, f64::NAN), t(0.1, 0.2)]), 0.1);
    }

    /// A share of 0.2 holds out every 5th scene (file order): of 10, scenes 4 and 9.
    #[test]
    fn hold_out_every_nth() {
        let im = |v: u8| SegImage {
            pixels: vec![v as f32],
            mask: vec![0],
            height: 1,
            width: 1,
        };
        let ds = SegDataset {
            images: (0..10).map(im).collect(),
            classes: vec!["a".into()],
            channels: 1,
        };
        let (fit, val) = hold_out(&ds, 0.2).unwrap();
        let ids = |d: &SegDataset| d.images.iter().map(|i| i.pixels[0]).collect::<Vec<_>>();
        assert_eq!(ids(&val), [4.0, 9.0]);
        assert_eq!(ids(&fit), [0.0, 1.0, 2.0, 3.0, 5.0, 6.0, 7.0, 8.0]);
        assert!(hold_out(&ds, 0.0).is_err() && hold_out(&ds, 1.0).is_err());
        let tiny = SegDataset {
            images: vec![im(0)],
            ..ds
        };
        assert!(hold_out(&tiny, 0.5).is_err());
    }
}
