//! A task: the data set, the classes, the few-shot subset and the splits of one run.
//!
//! `--data fashion-mnist --classes 5-9 --per-class 20 --val-fraction 0.2` becomes a
//! [`Task`] with train / val / test [`Dataset`]s whose labels index the selected classes.

use serde::{Deserialize, Serialize};

use crate::data::{self, DataSource, Dataset};
use crate::{Error, Result};

/// Where the data comes from and which part of it is used.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// `fashion-mnist` or a directory (IDX or ImageFolder layout).
    pub data: String,
    /// Class selection (`0-4`, `5,6,9`, names); empty = all classes.
    pub classes: String,
    /// Keep this many training images per class (seeded shuffle); `None` = all.
    pub per_class: Option<usize>,
    /// Fraction of the (subset) training images held out for validation.
    pub val_fraction: f64,
    /// Side length images are stored at (ImageFolder only; IDX keeps 28).
    pub resize: usize,
    /// Seed of the subset and split.
    pub seed: u64,
    /// Evaluate on the first N test images (file order) only; `None` = all.
    pub test_limit: Option<usize>,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            data: "fashion-mnist".into(),
            classes: String::new(),
            per_class: None,
            val_fraction: 0.0,
            resize: 32,
            seed: 0,
            test_limit: None,
        }
    }
}

/// The data of one run.
#[derive(Clone, Debug)]
pub struct Task {
    /// Training images (after class selection, few-shot subset and validation hold-out).
    pub train: Dataset,
    /// Validation images (may be empty).
    pub val: Dataset,
    /// Test images of the selected classes.
    pub test: Dataset,
    /// Which images these are, in one line: data, split and count of each part
    /// (`images of shoes/train (3 classes: ...): training 36, validation 0, test 9 held out of
    /// the training folder (20 %, seed 0: it has no test split)`).
    pub note: String,
}

impl Task {
    /// Names of the selected classes (the head's outputs, in order).
    pub fn classes(&self) -> &[String] {
        &self.train.classes
    }
}

/// Loads both splits of the data set (no class selection).
pub fn load_splits(cfg: &DataConfig, channels: usize) -> Result<data::Splits> {
    match data::resolve_data(&cfg.data)? {
        DataSource::Idx(dir) => data::load_idx_dir(&dir),
        DataSource::ImageFolder(dir) => data::load_image_folder(&dir, channels, cfg.resize),
    }
}

/// Loads the task described by `cfg`. `channels` is used by ImageFolder data.
pub fn load(cfg: &DataConfig, channels: usize) -> Result<Task> {
    if !(0.0..1.0).contains(&cfg.val_fraction) {
        return Err(Error::invalid(
            "--val-fraction",
            format!("{} is outside [0, 1)", cfg.val_fraction),
        ));
    }
    let splits = load_splits(cfg, channels)?;
    select(splits, cfg)
}

/// The images of `classes` (in that order) of `ds`: `ds` itself when that is all of its
/// classes in order, so selecting every class copies nothing.
fn take_classes(ds: Dataset, classes: &[usize]) -> Result<Dataset> {
    if !classes.is_empty() && classes.iter().copied().eq(0..ds.classes.len()) {
        ds.validate()?; // what select_classes checks first
        return Ok(ds);
    }
    data::select_classes(&ds, classes)
}

/// Applies class selection, the few-shot subset and the validation split to loaded splits.
/// Each step takes the images it is given and drops them once it has made its part, so the
/// set is held at most twice at any moment (a folder of 40,000 images peaked at four times).
pub fn select(splits: data::Splits, cfg: &DataConfig) -> Result<Task> {
    let data::Splits {
        train: all_train,
        test: all_test,
    } = splits;
    let all = &all_train.classes;
    let classes: Vec<usize> = if cfg.classes.trim().is_empty() {
        (0..all.len()).collect()
    } else {
        data::parse_classes(&cfg.classes, all)?
    };
    let carved = all_test.is_empty();
    let mut train = take_classes(all_train, &classes)?;
    let mut test = if carved {
        all_test
    } else {
        take_classes(all_test, &classes)?
    };
    if let Some(n) = cfg.per_class {
        if n == 0 {
            return Err(Error::invalid("--per-class", "must be at least 1"));
        }
        train = data::per_class(&train, n, cfg.seed)?;
    }
    let (train, val) = if carved {
        // A folder with no test split: hold the test images out of train first.
        let (rest, held) = data::split_val(&train, 0.2, cfg.seed ^ 0x7e57)?;
        drop(train);
        test = held;
        let (t, v) = data::split_val(&rest, cfg.val_fraction, cfg.seed)?;
        (t, v)
    } else {
        data::split_val(&train, cfg.val_fraction, cfg.seed)?
    };
    for (i, c) in train.per_class_counts().iter().enumerate() {
        if *c == 0 {
            return Err(Error::invalid(
                "--classes",
                format!("class {:?} has no training images left", train.classes[i]),
            ));
        }
    }
    let full_test = test.len();
    if let Some(n) = cfg.test_limit {
        test = data::take_first(&test, n);
    }
    let note = describe(cfg, &train, &val, &test, full_test, carved);
    Ok(Task {
        train,
        val,
        test,
        note,
    })
}

/// The one line that says which images a task's parts are.
fn describe(
    cfg: &DataConfig,
    train: &Dataset,
    val: &Dataset,
    test: &Dataset,
    full_test: usize,
    carved: bool,
) -> String {
    let names = &train.classes;
    let classes = if names.len() <= 6 {
        format!("{} classes: {}", names.len(), names.join(", "))
    } else {
        format!(
            "{} classes: {}, ..., {}",
            names.len(),
            names[..3].join(", "),
            names[names.len() - 1]
        )
    };
    let mut s = format!(
        "images of {} ({classes}): training {}",
        cfg.data,
        train.len()
    );
    if let Some(n) = cfg.per_class {
        s.push_str(&format!(" (at most {n} per class, seed {})", cfg.seed));
    }
    if !val.is_empty() {
        s.push_str(&format!(
            ", validation {} held out of the training images ({:.0} %)",
            val.len(),
            100.0 * cfg.val_fraction
        ));
    }
    if carved {
        s.push_str(&format!(
            ", test {} held out of the training images (20 %, seed {}: the data has no test \
             split)",
            test.len(),
            cfg.seed
        ));
    } else {
        s.push_str(&format!(", test {} of the test split", test.len()));
    }
    if test.len() < full_test {
        s.push_str(&format!(" (the first {} of {full_test})", test.len()));
    }
    s
}

/// The images to evaluate a model on: the test split of the model's classes, or, for data
/// with no test split (a folder of class folders), every image of those classes; with a
/// line that says which.
pub fn eval_set(cfg: &DataConfig, channels: usize) -> Result<(Dataset, String)> {
    let splits = load_splits(cfg, channels)?;
    let all = &splits.train.classes;
    let classes = if cfg.classes.trim().is_empty() {
        (0..all.len()).collect()
    } else {
        data::parse_classes(&cfg.classes, all)?
    };
    let (mut set, what) = if splits.test.is_empty() {
        (
            data::select_classes(&splits.train, &classes)?,
            "every image (the data has no test split)",
        )
    } else {
        (
            data::select_classes(&splits.test, &classes)?,
            "the test split",
        )
    };
    let full = set.len();
    if let Some(n) = cfg.test_limit {
        set = data::take_first(&set, n);
    }
    let mut note = format!(
        "evaluated on {} images of {}: {what}, {} classes",
        set.len(),
        cfg.data,
        set.classes.len()
    );
    if set.len() < full {
        note.push_str(&format!(" (the first {} of {full})", set.len()));
    }
    Ok((set, note))
}
