//! The top classes of images under a model (`sptune predict`).
//!
//! Preprocessing follows the model's input: for inputs of 128 px and more, ImageNet's (shorter
//! side to 8/7 of the input, i.e. 256 for 224, then a center crop), else a resize of the shorter
//! side to the input and a center crop; then the model's mean/std. Probabilities are the
//! softmax of the logits.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use burn::tensor::activation::softmax;
use rand::SeedableRng;
use serde::Serialize;

use crate::models::checkpoint::{Checkpoint, load_into};
use crate::{Error, Result};

/// One class of an image's ranking.
#[derive(Clone, Debug, Serialize)]
pub struct Ranked {
    /// Index of the model's output.
    pub class: usize,
    /// Its class name.
    pub name: String,
    /// Softmax probability.
    pub prob: f64,
}

/// The ranking of one image.
#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    /// The image file.
    pub image: PathBuf,
    /// The `top` most probable classes, most probable first.
    pub top: Vec<Ranked>,
}

/// The `top` most probable classes of each image under the checkpoint `model` (a path or a
/// known weights name; `arch` for a file without sptune metadata).
pub fn predict(
    model: &Path,
    arch: Option<&str>,
    images: &[PathBuf],
    top: usize,
    device: &Device,
) -> Result<Vec<Prediction>> {
    let ckpt = Checkpoint::read(model)?;
    let spec = ckpt.spec_or_infer(arch)?;
    let (net, _) = load_into(spec.init(device)?, &spec, &ckpt, false)?;
    let net = net.valid();
    let [c, side, _] = spec.input;
    let ds = crate::data::load_images(images, c, crate::data::stored_side(side))?;
    let opts = spec.batch_options(false);
    let n = spec.num_classes();
    let k = top.min(n);
    let mut out = Vec::new();
    let idx: Vec<usize> = (0..ds.len()).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    for chunk in idx.chunks(16) {
        let (x, _) = crate::data::make_batch(&ds, chunk, &opts, &mut rng, device)?;
        let probs: Vec<f32> = softmax(net.forward(x), 1)
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .map_err(|e| Error::Other(format!("{e:?}")))?;
        for (j, &i) in chunk.iter().enumerate() {
            let row = &probs[j * n..(j + 1) * n];
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|x, y| row[*y].total_cmp(&row[*x]));
            out.push(Prediction {
                image: images[i].clone(),
                top: order[..k]
                    .iter()
                    .map(|&cl| Ranked {
                        class: cl,
                        name: spec.classes[cl].clone(),
                        prob: row[cl] as f64,
                    })
                    .collect(),
            });
        }
    }
    Ok(out)
}
