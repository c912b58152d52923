//! `sptune predict --model M [--arch A] [--json] IMAGE...`: the top-5 classes of each image.
//!
//! Preprocessing follows the model's input: for inputs of 128 px and more, ImageNet's (shorter
//! side to 8/7 of the input, i.e. 256 for 224, then a center crop), else a resize of the shorter
//! side to the input and a center crop; then the model's mean/std. Probabilities are the
//! softmax of the logits.

use std::process::ExitCode;

use burn::module::Module;
use burn::tensor::activation::softmax;
use rand::SeedableRng;
use serde_json::json;
use sptune::models::checkpoint::{Checkpoint, load_into};

use super::Global;
use crate::args::PredictArgs;

/// Runs `sptune predict`.
pub fn run(a: PredictArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let ckpt = Checkpoint::read(&a.model)?;
    let spec = ckpt.spec_or_infer(a.arch.as_deref())?;
    let (net, _) = load_into(spec.init(&g.device)?, &spec, &ckpt, false)?;
    let net = net.valid();
    let [c, side, _] = spec.input;
    let ds = sptune::data::load_images(&a.images, c, sptune::data::stored_side(side))?;
    let opts = spec.batch_options(false);
    let k = a.top.min(spec.num_classes());
    let mut out = Vec::new();
    let idx: Vec<usize> = (0..ds.len()).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    for chunk in idx.chunks(16) {
        let (x, _) = sptune::data::make_batch(&ds, chunk, &opts, &mut rng, &g.device)?;
        let probs: Vec<f32> = softmax(net.forward(x), 1)
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let n = spec.num_classes();
        for (j, &i) in chunk.iter().enumerate() {
            let row = &probs[j * n..(j + 1) * n];
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|x, y| row[*y].total_cmp(&row[*x]));
            let top: Vec<_> = order[..k]
                .iter()
                .map(|&cl| json!({"class": cl, "name": spec.classes[cl], "prob": row[cl]}))
                .collect();
            out.push(json!({"image": a.images[i], "top": top}));
        }
    }
    if g.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for r in &out {
            let tops: Vec<String> = r["top"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    format!(
                        "{} ({}) {:.2}%",
                        t["class"],
                        t["name"].as_str().unwrap_or(""),
                        100.0 * t["prob"].as_f64().unwrap_or(0.0)
                    )
                })
                .collect();
            println!("{}: {}", r["image"].as_str().unwrap_or(""), tops.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}
