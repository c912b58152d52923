//! The source task's images a study measures forgetting on: the test images the finals report
//! on, and validation images every search trial is measured on, disjoint from both those test
//! images and the images that pretrained the source.
//!
//! Where the validation images come from, first that applies:
//! 1. the study pretrains the source on a few-shot subset (`[source.pretrain.data] per_class`)
//!    of the same data and classes: `val_images` of the source classes' training images that
//!    subset left out (the same seeded selection pretraining made, replayed by index);
//! 2. the finals report on the first `test_limit` source test images: `val_images` of the test
//!    images after them;
//! 3. otherwise none, and the search is target-only; [`SourceImages::note`] says why.
//!
//! Either way the choice is a seeded draw ([`crate::data::held_out`]), the same in every
//! process of a study.

use crate::data::{self, Dataset};
use crate::models::ModelSpec;
use crate::task::DataConfig;
use crate::{Error, Result};

use super::config::StudyConfig;

/// Seed of the draw of the validation images.
const SEED: u64 = 0x50_0c_e0_a1;

/// The source images of a study.
#[derive(Clone, Debug)]
pub struct SourceImages {
    /// The test images the finals' forgetting is measured on.
    pub test: Dataset,
    /// Validation images for the search (None: a target-only search).
    pub val: Option<Dataset>,
    /// Why there are no validation images, or where they come from.
    pub note: String,
}

/// Which indices the validation images take, and from which split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValPlan {
    /// Indices into the source classes' training images.
    Train(Vec<usize>),
    /// Indices into the source classes' test images.
    Test(Vec<usize>),
    /// None, with the reason.
    None(String),
}

/// The source task's data config: `[source] data` / `classes`, else the target's data with the
/// source model's class names.
pub fn data_config(cfg: &StudyConfig, spec: &ModelSpec) -> DataConfig {
    DataConfig {
        data: cfg
            .source
            .data
            .clone()
            .unwrap_or_else(|| cfg.target.data.clone()),
        classes: cfg
            .source
            .classes
            .clone()
            .unwrap_or_else(|| spec.classes.join(",")),
        test_limit: (cfg.source.test_limit > 0).then_some(cfg.source.test_limit),
        resize: data::stored_side(spec.input[1]),
        ..DataConfig::default()
    }
}

/// The plan for `cfg`'s validation images, given the source classes' training and test images
/// (`train`, `test`, labels indexing the source classes) and every class name of the data
/// (`all`, what class specs are parsed against).
pub fn plan(
    cfg: &StudyConfig,
    src: &DataConfig,
    all: &[String],
    train: &Dataset,
    test: &Dataset,
) -> ValPlan {
    let n = cfg.source.val_images;
    if n == 0 {
        return ValPlan::None("[source] val_images = 0".into());
    }
    if let Some(pre) = &cfg.source.pretrain
        && pre.data.data == src.data
        && same_classes(&pre.data.classes, &src.classes, all)
    {
        let Some(k) = pre.data.per_class else {
            return match after_reported(cfg, test, n) {
                ValPlan::None(why) => ValPlan::None(format!(
                    "the source was pretrained on every training image of its classes, and {why}"
                )),
                p => p,
            };
        };
        return match data::per_class_indices(train, k, pre.data.seed) {
            Ok(used) => {
                let idx = data::held_out(train.len(), &used, n, SEED);
                if idx.is_empty() {
                    ValPlan::None("pretraining used every training image of the source".into())
                } else {
                    ValPlan::Train(idx)
                }
            }
            Err(e) => ValPlan::None(format!("replaying the pretraining subset: {e}")),
        };
    }
    match after_reported(cfg, test, n) {
        ValPlan::None(why) => ValPlan::None(format!(
            "the images that pretrained the source are unknown, and {why}"
        )),
        p => p,
    }
}

/// `n` of the test images after the first `test_limit` (the reported ones).
fn after_reported(cfg: &StudyConfig, test: &Dataset, n: usize) -> ValPlan {
    let limit = cfg.source.test_limit;
    if limit == 0 || limit >= test.len() {
        return ValPlan::None(format!(
            "every one of the {} source test images is reported on: set [source] test_limit \
             below {} to hold out validation images",
            test.len(),
            test.len()
        ));
    }
    let reported: Vec<usize> = (0..limit).collect();
    ValPlan::Test(data::held_out(test.len(), &reported, n, SEED))
}

fn same_classes(a: &str, b: &str, all: &[String]) -> bool {
    // an empty spec selects every class, as in `task::select`
    let parse = |s: &str| match s.trim() {
        "" => Ok((0..all.len()).collect()),
        s => data::parse_classes(s, all),
    };
    match (parse(a), parse(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Loads the source images of `cfg` for the source model `spec` (None when the data does not
/// hold the source's classes, e.g. ImageNet weights fine-tuned on Fashion-MNIST).
pub fn load(cfg: &StudyConfig, spec: &ModelSpec) -> Result<Option<SourceImages>> {
    let src = data_config(cfg, spec);
    let Ok(splits) = crate::task::load_splits(&src, spec.input[0]) else {
        return Ok(None);
    };
    if splits.test.is_empty() {
        // a folder without a test split: the task's own hold-out gives the test images
        let Ok(t) = crate::task::select(splits, &src) else {
            return Ok(None);
        };
        return Ok(Some(SourceImages {
            test: t.test,
            val: None,
            note: "the source data has no test split to hold validation images out of".into(),
        }));
    }
    let Ok(classes) = data::parse_classes(&src.classes, &splits.train.classes) else {
        return Ok(None);
    };
    let train = data::select_classes(&splits.train, &classes)?;
    let test_all = data::select_classes(&splits.test, &classes)?;
    let test = match src.test_limit {
        Some(n) => data::take_first(&test_all, n),
        None => test_all.clone(),
    };
    let (val, note) = match plan(cfg, &src, &splits.train.classes, &train, &test_all) {
        ValPlan::Train(idx) => (
            Some(train.subset(&idx)),
            format!(
                "{} source training images the pretraining subset left out",
                idx.len()
            ),
        ),
        ValPlan::Test(idx) => (
            Some(test_all.subset(&idx)),
            format!(
                "{} source test images after the {} the finals report on",
                idx.len(),
                cfg.source.test_limit
            ),
        ),
        ValPlan::None(why) => (None, why),
    };
    if val.as_ref().is_some_and(|v| v.is_empty()) {
        return Err(Error::Other("no source validation image was left".into()));
    }
    Ok(Some(SourceImages { test, val, note }))
}
