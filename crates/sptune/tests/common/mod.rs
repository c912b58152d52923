//! Helpers shared by the integration tests.

use std::path::Path;

/// A tiny IDX data set in `dir`: 8x8 images whose class (of 6) is the bright row, plus noise;
/// 180 training and 60 test images.
#[allow(dead_code)] // not every test file uses it
pub fn tiny_idx(dir: &Path) {
    tiny_idx_shifted(dir, 0)
}

/// [`tiny_idx`] with class `c` drawn with row `(c + shift) % 6` bright.
#[allow(dead_code)] // not every test file uses it
pub fn tiny_idx_shifted(dir: &Path, shift: usize) {
    for (split, n) in [("train", 180usize), ("t10k", 60)] {
        let (mut img, mut lab) = (vec![], vec![]);
        for i in 0..n {
            let c = (i % 6) as u8;
            for p in 0..64usize {
                img.push(if p / 8 == (c as usize + shift) % 6 {
                    220
                } else {
                    ((i * 7 + p * 13) % 50) as u8
                });
            }
            lab.push(c);
        }
        sptune::data::write_idx(
            &img,
            &lab,
            n,
            8,
            8,
            &dir.join(format!("{split}-images-idx3-ubyte")),
            &dir.join(format!("{split}-labels-idx1-ubyte")),
        )
        .unwrap();
    }
}

/// Two item classes of 8x8 shapes (a filled square, a plus sign) for small scenes.
#[allow(dead_code)] // not every test file uses it
pub fn shapes() -> sptune::data::Dataset {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for k in 0..8 {
        let v = 0.6 + 0.05 * k as f32;
        let square: Vec<f32> = (0..64)
            .map(|j| {
                if (1..7).contains(&(j / 8)) && (1..7).contains(&(j % 8)) {
                    v
                } else {
                    0.0
                }
            })
            .collect();
        let plus: Vec<f32> = (0..64)
            .map(|j| {
                if (3..5).contains(&(j / 8)) || (3..5).contains(&(j % 8)) {
                    v
                } else {
                    0.0
                }
            })
            .collect();
        images.extend(square);
        images.extend(plus);
        labels.extend([0, 1]);
    }
    sptune::data::Dataset::new(
        images,
        labels,
        vec!["square".into(), "plus".into()],
        1,
        8,
        8,
    )
    .unwrap()
}

/// Scenes of `size` pixels of the shapes, `train` and `test` of them, in the folder layout
/// under `root/train` and `root/test`.
#[allow(dead_code)] // not every test file uses it
pub fn write_scenes(root: &Path, size: usize, train: usize, test: usize) {
    use sptune::segmentation::{SceneOptions, compose_scenes, write_mask_folder};
    for (split, count, seed) in [("train", train, 1), ("test", test, 2)] {
        let o = SceneOptions {
            count,
            size,
            items: (1, 2),
            threshold: 0.1,
            seed,
        };
        let ds = compose_scenes(&shapes(), &o).unwrap();
        write_mask_folder(&ds, &root.join(split)).unwrap();
    }
}
