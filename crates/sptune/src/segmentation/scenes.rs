//! The built-in offline segmentation benchmark: scenes composed from classification images.
//!
//! Each scene is a `size × size` canvas (value 0, as Fashion-MNIST's background) on which
//! `items.0..=items.1` images drawn from `items` (a classification set, e.g. the Fashion-MNIST
//! classes of the target task) are pasted at uniform positions, each one whole inside the
//! canvas, later ones over earlier ones (`max` of the two values where they overlap, so an
//! item's silhouette stays visible). An item's pixels brighter than `threshold` take its class
//! in the mask (class `1 + its label`; 0 is the background); the item's own dark pixels keep
//! whatever lies below them. Everything follows from `seed`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{SegDataset, SegImage};
use crate::data::{self, Dataset};
use crate::task::{self, DataConfig};
use crate::{Error, Result};

/// How [`compose_scenes`] builds scenes.
#[derive(Clone, Debug, PartialEq)]
pub struct SceneOptions {
    /// Scenes to make.
    pub count: usize,
    /// Canvas side in pixels (at least the items' side).
    pub size: usize,
    /// Items per scene, fewest and most (inclusive).
    pub items: (usize, usize),
    /// An item's pixels above this value are its mask.
    pub threshold: f32,
    /// Seed of every draw.
    pub seed: u64,
}

impl Default for SceneOptions {
    fn default() -> Self {
        SceneOptions {
            count: 1000,
            size: 64,
            items: (2, 4),
            threshold: 0.1,
            seed: 0,
        }
    }
}

/// Scenes of the items in `items` (one channel or more, any side up to `size`): classes
/// `background` then `items`' classes.
pub fn compose_scenes(items: &Dataset, o: &SceneOptions) -> Result<SegDataset> {
    items.validate()?;
    let (ih, iw, c) = (items.height, items.width, items.channels);
    if items.is_empty() {
        return Err(Error::invalid("items", "no images to compose scenes from"));
    }
    if o.size < ih.max(iw) || o.size > 4096 {
        return Err(Error::invalid(
            "--size",
            format!(
                "{} (must be from the items' side {} to 4096)",
                o.size,
                ih.max(iw)
            ),
        ));
    }
    if o.items.0 == 0 || o.items.0 > o.items.1 || o.items.1 > 64 {
        return Err(Error::invalid(
            "--items",
            format!(
                "{}-{} (must be 1 <= fewest <= most <= 64)",
                o.items.0, o.items.1
            ),
        ));
    }
    if items.classes.len() + 1 > super::IGNORE as usize {
        return Err(Error::invalid(
            "items",
            format!(
                "{} classes (at most 254 with the background)",
                items.classes.len()
            ),
        ));
    }
    // the scenes' size (f32 pixels and a byte mask per pixel), bounded before any is made
    let bytes = (o.count as u64).saturating_mul((o.size * o.size * (4 * c + 1)) as u64);
    crate::runtime::check_data_bytes(
        &format!("{} scenes of {c}x{}x{}", o.count, o.size, o.size),
        bytes,
    )
    .map_err(|msg| Error::invalid("--train / --test", msg))?;
    let mut rng = ChaCha8Rng::seed_from_u64(o.seed);
    let (s, plane) = (o.size, o.size * o.size);
    let mut scenes = Vec::with_capacity(o.count);
    for _ in 0..o.count {
        let mut pixels = vec![0f32; c * plane];
        let mut mask = vec![0u8; plane];
        for _ in 0..rng.random_range(o.items.0..=o.items.1) {
            let i = rng.random_range(0..items.len());
            let (top, left) = (rng.random_range(0..=s - ih), rng.random_range(0..=s - iw));
            let img = items.image(i);
            let label = (items.labels[i] + 1) as u8;
            for y in 0..ih {
                for x in 0..iw {
                    let at = (top + y) * s + left + x;
                    // the item's brightness over its channels decides its silhouette
                    let v = (0..c)
                        .map(|ch| img[(ch * ih + y) * iw + x])
                        .fold(0f32, f32::max);
                    for ch in 0..c {
                        let d = &mut pixels[ch * plane + at];
                        *d = d.max(img[(ch * ih + y) * iw + x]);
                    }
                    if v > o.threshold {
                        mask[at] = label;
                    }
                }
            }
        }
        scenes.push(SegImage {
            pixels,
            mask,
            height: s,
            width: s,
        });
    }
    let mut classes = vec!["background".to_string()];
    classes.extend(items.classes.iter().cloned());
    SegDataset::new(scenes, classes, c, &|i| format!("scene {i}"))
}

/// A train and a test set of scenes made from a classification set's two splits: training
/// scenes from its training images of `classes` (seed `o.seed`), test scenes from its test
/// images (seed `o.seed + 1`), so no item appears in both.
pub fn scene_splits(
    data: &str,
    classes: &str,
    o: &SceneOptions,
    test_count: usize,
) -> Result<(SegDataset, SegDataset)> {
    let cfg = DataConfig {
        data: data.to_string(),
        ..DataConfig::default()
    };
    let splits = task::load_splits(&cfg, 1)?;
    let picked = if classes.trim().is_empty() {
        (0..splits.train.classes.len()).collect()
    } else {
        data::parse_classes(classes, &splits.train.classes)?
    };
    let train_items = data::select_classes(&splits.train, &picked)?;
    if splits.test.is_empty() {
        return Err(Error::invalid(
            "--data",
            format!("{data} has no test split to make test scenes from"),
        ));
    }
    let test_items = data::select_classes(&splits.test, &picked)?;
    let train = compose_scenes(&train_items, o)?;
    let test_opts = SceneOptions {
        count: test_count,
        seed: o.seed.wrapping_add(1),
        ..o.clone()
    };
    let test = compose_scenes(&test_items, &test_opts)?;
    Ok((train, test))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two 4x4 items: a bright square (class "a") and a frame with a dark centre (class "b").
    fn items() -> Dataset {
        let a = vec![0.9f32; 16];
        let mut b = vec![0.5f32; 16];
        for y in 1..3 {
            for x in 1..3 {
                b[y * 4 + x] = 0.0;
            }
        }
        Dataset::new(
            [a, b].concat(),
            vec![0, 1],
            vec!["a".into(), "b".into()],
            1,
            4,
            4,
        )
        .unwrap()
    }

    /// Every mask pixel of an item's class lies on a pixel at least as bright as the threshold
    /// and every bright pixel is some item's; the background is 0 in both; one seed gives one
    /// set of scenes.
    #[test]
    fn masks_follow_the_items() {
        let o = SceneOptions {
            count: 50,
            size: 12,
            items: (1, 3),
            threshold: 0.1,
            seed: 7,
        };
        let ds = compose_scenes(&items(), &o).unwrap();
        assert_eq!(ds.classes, ["background", "a", "b"]);
        assert_eq!(ds.len(), 50);
        let mut seen = [0usize; 3];
        for im in &ds.images {
            assert_eq!((im.height, im.width), (12, 12));
            for (v, m) in im.pixels.iter().zip(&im.mask) {
                seen[*m as usize] += 1;
                match m {
                    0 => assert_eq!(*v, 0.0, "background pixel of value {v}"),
                    _ => assert!(*v > 0.1, "class {m} on a pixel of value {v}"),
                }
            }
        }
        assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
        assert_eq!(compose_scenes(&items(), &o).unwrap(), ds);
    }

    #[test]
    fn refuses_bad_options() {
        let o = |size, items| SceneOptions {
            count: 1,
            size,
            items,
            ..SceneOptions::default()
        };
        assert!(compose_scenes(&items(), &o(3, (1, 2))).is_err());
        assert!(compose_scenes(&items(), &o(8, (0, 2))).is_err());
        assert!(compose_scenes(&items(), &o(8, (3, 2))).is_err());
    }
}
