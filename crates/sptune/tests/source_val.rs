//! The source validation images a study's search measures forgetting on are disjoint, by index,
//! from the images that pretrained the source and from the source test images the finals report
//! on.
//!
//! How it is checked: a synthetic IDX data set whose every image carries its own index and
//! split in its first three pixels, so an image seen anywhere names where it came from. The
//! images pretraining used are found by running the pretraining's own data selection
//! ([`sptune::task::load`] on `[source.pretrain.data]`), not by the code under test.

use std::collections::BTreeSet;
use std::path::Path;

use sptune::data::{Dataset, write_idx};
use sptune::models::ModelSpec;
use sptune::run::PretrainConfig;
use sptune::study::StudyConfig;
use sptune::study::source_val;

const SIDE: usize = 4;
const TRAIN: usize = 1000; // 100 per class
const TEST: usize = 500; // 50 per class

/// Writes the data set: image i of split s has pixels [i % 256, i / 256, s, 0, ...], label
/// i % 10 (train: s = 1, test: s = 2).
fn write_set(dir: &Path) {
    for (split, n, s) in [("train", TRAIN, 1u8), ("t10k", TEST, 2u8)] {
        let mut px = vec![0u8; n * SIDE * SIDE];
        let mut labels = vec![0u8; n];
        for i in 0..n {
            let p = &mut px[i * SIDE * SIDE..];
            p[0] = (i % 256) as u8;
            p[1] = (i / 256) as u8;
            p[2] = s;
            labels[i] = (i % 10) as u8;
        }
        write_idx(
            &px,
            &labels,
            n,
            SIDE,
            SIDE,
            &dir.join(format!("{split}-images-idx3-ubyte")),
            &dir.join(format!("{split}-labels-idx1-ubyte")),
        )
        .unwrap();
    }
}

/// (split, index) of every image of `ds`.
fn tags(ds: &Dataset) -> BTreeSet<(u8, usize)> {
    let n = ds.image_len();
    (0..ds.len())
        .map(|i| {
            let p = &ds.images[i * n..];
            let b = |k: usize| (p[k] * 255.0).round() as usize;
            (b(2) as u8, b(0) + 256 * b(1))
        })
        .collect()
}

fn spec() -> ModelSpec {
    ModelSpec {
        arch: "mlp".into(),
        classes: (0..5).map(|c| c.to_string()).collect(),
        input: [1, SIDE, SIDE],
        width: 64,
        small_stem: false,
        hidden: vec![8],
        mean: vec![0.0],
        std: vec![1.0],
    }
}

fn study(dir: &Path) -> StudyConfig {
    let mut pre = PretrainConfig::default();
    pre.data.data = dir.display().to_string();
    pre.data.classes = "0-4".into();
    pre.data.per_class = Some(60);
    pre.data.val_fraction = 0.1;
    pre.data.seed = 7;
    let mut c = StudyConfig::default();
    c.source.pretrain = Some(pre);
    c.source.test_limit = 100;
    c.source.val_images = 150;
    c.target.data = dir.display().to_string();
    c.target.classes = "5-9".into();
    c
}

#[test]
fn held_out_from_the_pretraining_subset_and_the_reported_test_images() {
    let d = tempfile::tempdir().unwrap();
    write_set(d.path());
    let cfg = study(d.path());
    let im = source_val::load(&cfg, &spec())
        .unwrap()
        .expect("source data at hand");
    let val = im.val.expect("validation images");
    assert_eq!(val.len(), 150, "{}", im.note);
    // what pretraining saw: its own selection, train and validation parts
    let pre = sptune::task::load(&cfg.source.pretrain.as_ref().unwrap().data, 1).unwrap();
    let mut used = tags(&pre.train);
    used.extend(tags(&pre.val));
    assert_eq!(used.len(), 5 * 60);
    let (v, t) = (tags(&val), tags(&im.test));
    assert_eq!(v.len(), 150, "validation images are distinct");
    assert_eq!(t.len(), 100);
    assert!(
        v.is_disjoint(&used),
        "a validation image pretrained the source"
    );
    assert!(
        v.is_disjoint(&t),
        "a validation image is a reported test image"
    );
    // every validation image is a training image of a source class (labels 0-4)
    assert!(v.iter().all(|(s, i)| *s == 1 && i % 10 < 5));
    assert!(val.labels.iter().all(|l| *l < 5));
    // and the reported test images are the first 100 of the source classes' test images
    let first: BTreeSet<(u8, usize)> = (0..TEST)
        .filter(|i| i % 10 < 5)
        .take(100)
        .map(|i| (2, i))
        .collect();
    assert_eq!(t, first);
}

#[test]
fn a_given_source_takes_validation_images_after_the_reported_test_images() {
    let d = tempfile::tempdir().unwrap();
    write_set(d.path());
    let mut cfg = study(d.path());
    cfg.source.pretrain = None;
    cfg.source.init = Some("src.safetensors".into());
    let im = source_val::load(&cfg, &spec()).unwrap().unwrap();
    let val = im.val.expect("validation images");
    let (v, t) = (tags(&val), tags(&im.test));
    assert_eq!(v.len(), 150);
    // test images only (the training images may have pretrained the source), none reported
    assert!(v.iter().all(|(s, i)| *s == 2 && i % 10 < 5));
    assert!(v.is_disjoint(&t));
    // with every test image reported there is nothing left to hold out: a target-only search
    cfg.source.test_limit = 0;
    let im = source_val::load(&cfg, &spec()).unwrap().unwrap();
    assert!(im.val.is_none());
    assert!(im.note.contains("test_limit"), "{}", im.note);
}
