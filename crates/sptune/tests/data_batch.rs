//! Batches: normalization, crops, flips, channel conversion, determinism.

use burn::tensor::{Device, Int, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sptune::data::{BatchOptions, Dataset, Normalize, epoch_order, make_batch};

fn ds(images: Vec<f32>, labels: Vec<usize>, c: usize, h: usize, w: usize) -> Dataset {
    let classes = (0..=labels.iter().copied().max().unwrap_or(0))
        .map(|i| i.to_string())
        .collect();
    Dataset::new(images, labels, classes, c, h, w).unwrap()
}

fn values(x: Tensor<4>) -> (Vec<usize>, Vec<f32>) {
    let shape = x.dims().to_vec();
    (shape, x.into_data().try_into_vec_as::<f32>().unwrap())
}

fn labels(y: Tensor<1, Int>) -> Vec<i64> {
    y.into_data().try_into_vec_as::<i64>().unwrap()
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

#[test]
fn normalization_by_hand() {
    let d = ds(
        vec![0.0, 0.25, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0],
        vec![3, 1],
        1,
        2,
        2,
    );
    let opts = BatchOptions::eval(1, 2, Normalize::new(vec![0.5], vec![0.25]));
    let (x, y) = make_batch(&d, &[0, 1], &opts, &mut rng(0), &Device::flex()).unwrap();
    let (shape, v) = values(x);
    assert_eq!(shape, vec![2, 1, 2, 2]);
    assert!(
        close(&v, &[-2.0, -1.0, 0.0, 2.0, 2.0, 2.0, 2.0, 2.0]),
        "{v:?}"
    );
    assert_eq!(labels(y), vec![3, 1]);
}

#[test]
fn batch_follows_the_given_indices() {
    let d = ds(vec![0.1, 0.2, 0.3], vec![0, 1, 2], 1, 1, 1);
    let opts = BatchOptions::eval(1, 1, Normalize::identity(1));
    let (x, y) = make_batch(&d, &[2, 0, 2], &opts, &mut rng(0), &Device::flex()).unwrap();
    assert!(close(&values(x).1, &[0.3, 0.1, 0.3]));
    assert_eq!(labels(y), vec![2, 0, 2]);
}

#[test]
fn center_crop_positions() {
    // 4x4 ramp 0..15 (as value / 100): center 2x2 crop starts at (1, 1)
    let img: Vec<f32> = (0..16).map(|v| v as f32 / 100.0).collect();
    let d = ds(img, vec![0], 1, 4, 4);
    let opts = BatchOptions::eval(1, 2, Normalize::identity(1));
    let v = values(
        make_batch(&d, &[0], &opts, &mut rng(0), &Device::flex())
            .unwrap()
            .0,
    )
    .1;
    assert!(close(&v, &[0.05, 0.06, 0.09, 0.10]), "{v:?}");
    // 5x5 -> 2x2: offset (5 - 2) / 2 = 1
    let img: Vec<f32> = (0..25).map(|v| v as f32 / 100.0).collect();
    let d = ds(img, vec![0], 1, 5, 5);
    let v = values(
        make_batch(&d, &[0], &opts, &mut rng(0), &Device::flex())
            .unwrap()
            .0,
    )
    .1;
    assert!(close(&v, &[0.06, 0.07, 0.11, 0.12]), "{v:?}");
    // same size: identity, also with random_crop and no padding
    let mut same = BatchOptions::eval(1, 5, Normalize::identity(1));
    same.random_crop = true;
    let v = values(
        make_batch(&d, &[0], &same, &mut rng(0), &Device::flex())
            .unwrap()
            .0,
    )
    .1;
    assert!(close(&v, &d.images), "{v:?}");
}

#[test]
fn hflip_flips_rows_and_both_outcomes_occur() {
    let img = vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6]; // 2 rows x 3 cols
    let d = ds(img.clone(), vec![0], 1, 2, 3);
    let mut opts = BatchOptions::eval(1, 2, Normalize::identity(1));
    // size 2 from 2x3: center offsets (0, 0) -> crop [[.1,.2],[.4,.5]], flipped [[.2,.1],[.5,.4]]
    opts.hflip = true;
    let (plain, flipped) = (vec![0.1, 0.2, 0.4, 0.5], vec![0.2, 0.1, 0.5, 0.4]);
    let mut r = rng(11);
    let (mut n_plain, mut n_flip) = (0, 0);
    for _ in 0..64 {
        let v = values(
            make_batch(&d, &[0], &opts, &mut r, &Device::flex())
                .unwrap()
                .0,
        )
        .1;
        if close(&v, &plain) {
            n_plain += 1;
        } else if close(&v, &flipped) {
            n_flip += 1;
        } else {
            panic!("neither plain nor flipped: {v:?}");
        }
    }
    assert!(
        n_plain > 10 && n_flip > 10,
        "plain {n_plain}, flipped {n_flip}"
    );
}

#[test]
fn random_crop_pads_with_the_mean() {
    // 1x1 image 0.9, size 3, pad 1: the pixel lands at the center; padding is 0 after
    // normalization (i.e. equal to the mean before it)
    let d = ds(vec![0.9], vec![0], 1, 1, 1);
    let mut opts = BatchOptions::eval(1, 3, Normalize::new(vec![0.5], vec![0.5]));
    opts.random_crop = true;
    opts.pad = 1;
    // stored 1x1 is smaller than 3: it is first upsampled to 3x3 (constant), then cropped
    // from the 5x5 padded image; every output is the pixel (0.8) or pad (0)
    let mut r = rng(5);
    let mut saw_pad = false;
    for _ in 0..20 {
        let v = values(
            make_batch(&d, &[0], &opts, &mut r, &Device::flex())
                .unwrap()
                .0,
        )
        .1;
        assert!(
            v.iter().all(|&x| x.abs() < 1e-6 || (x - 0.8).abs() < 1e-5),
            "{v:?}"
        );
        saw_pad |= v.iter().any(|&x| x.abs() < 1e-6);
    }
    assert!(saw_pad);
}

#[test]
fn gray_to_rgb_and_rgb_to_gray() {
    let gray = ds(vec![0.2, 0.6], vec![0], 1, 1, 2);
    let norm = Normalize::new(vec![0.0, 0.1, 0.2], vec![1.0, 0.5, 2.0]);
    let opts = BatchOptions::eval(3, 1, norm);
    // 1x2 -> size 1 center crop takes column 0 (offset (2 - 1) / 2 = 0)
    let (shape, v) = values(
        make_batch(&gray, &[0], &opts, &mut rng(0), &Device::flex())
            .unwrap()
            .0,
    );
    assert_eq!(shape, vec![1, 3, 1, 1]);
    assert!(
        close(&v, &[0.2, (0.2 - 0.1) / 0.5, (0.2 - 0.2) / 2.0]),
        "{v:?}"
    );

    let rgb = ds(vec![1.0, 0.5, 0.25], vec![0], 3, 1, 1);
    let opts = BatchOptions::eval(1, 1, Normalize::identity(1));
    let (shape, v) = values(
        make_batch(&rgb, &[0], &opts, &mut rng(0), &Device::flex())
            .unwrap()
            .0,
    );
    assert_eq!(shape, vec![1, 1, 1, 1]);
    assert!(close(&v, &[0.299 + 0.587 * 0.5 + 0.114 * 0.25]), "{v:?}");
}

#[test]
fn deterministic_given_rng() {
    let img: Vec<f32> = (0..3 * 8 * 8).map(|v| (v % 17) as f32 / 17.0).collect();
    let d = ds(img.repeat(3), vec![0, 1, 2], 3, 8, 8);
    let opts = BatchOptions {
        channels: 3,
        size: 6,
        normalize: Normalize::imagenet(),
        random_crop: true,
        pad: 2,
        hflip: true,
    };
    let a = values(
        make_batch(&d, &[0, 1, 2], &opts, &mut rng(9), &Device::flex())
            .unwrap()
            .0,
    );
    let b = values(
        make_batch(&d, &[0, 1, 2], &opts, &mut rng(9), &Device::flex())
            .unwrap()
            .0,
    );
    assert_eq!(a, b);
    let c = values(
        make_batch(&d, &[0, 1, 2], &opts, &mut rng(10), &Device::flex())
            .unwrap()
            .0,
    );
    assert_ne!(a.1, c.1);
}

#[test]
fn bad_batches_are_errors() {
    let d = ds(vec![0.5; 4], vec![0], 1, 2, 2);
    let dev = Device::flex();
    let ok = BatchOptions::eval(1, 2, Normalize::identity(1));
    let e = make_batch(&d, &[1], &ok, &mut rng(0), &dev)
        .unwrap_err()
        .to_string();
    assert!(e.contains('1'), "{e}");
    assert!(make_batch(&d, &[], &ok, &mut rng(0), &dev).is_err());
    let bad_norm = BatchOptions::eval(1, 2, Normalize::identity(3));
    assert!(make_batch(&d, &[0], &bad_norm, &mut rng(0), &dev).is_err());
    let zero_std = BatchOptions::eval(1, 2, Normalize::new(vec![0.0], vec![0.0]));
    assert!(make_batch(&d, &[0], &zero_std, &mut rng(0), &dev).is_err());
    let two = BatchOptions::eval(2, 2, Normalize::identity(2));
    assert!(make_batch(&d, &[0], &two, &mut rng(0), &dev).is_err());
}

#[test]
fn epoch_order_is_a_seeded_permutation() {
    let a = epoch_order(50, &mut rng(1));
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    assert_eq!(a, epoch_order(50, &mut rng(1)));
    assert_ne!(a, epoch_order(50, &mut rng(2)));
    assert_ne!(a, (0..50).collect::<Vec<_>>());
}
