//! Evaluation: target accuracy, source forgetting, and distance from the starting point.

pub mod distance;
pub mod forgetting;

use burn::tensor::{Device, Int, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::{self, Dataset};
use crate::models::{ModelSpec, Net};
use crate::{Error, Result};

pub use distance::{Distance, distance};
pub use forgetting::{Decomposition, Forgetting, decompose, forgetting, source_head_accuracy};

/// Top-1 accuracy and mean cross-entropy of `net` (in eval mode) on `ds`: the validation
/// figures of a fine-tune (the loss breaks ties between accuracies on a few images).
pub fn accuracy_and_loss(
    net: &Net,
    spec: &ModelSpec,
    ds: &Dataset,
    batch: usize,
    device: &Device,
) -> Result<(f64, f64)> {
    let (acc, loss) = score(net, spec, ds, batch, device, true)?;
    Ok((acc, loss.unwrap_or(f64::NAN)))
}

/// Top-1 accuracy of `net` (in eval mode: call `net.valid()` first when it was training) on
/// `ds`, whose labels index the model's classes.
pub fn accuracy(
    net: &Net,
    spec: &ModelSpec,
    ds: &Dataset,
    batch: usize,
    device: &Device,
) -> Result<f64> {
    Ok(score(net, spec, ds, batch, device, false)?.0)
}

/// Accuracy, and with `with_loss` the mean cross-entropy, over `ds` in file order.
fn score(
    net: &Net,
    spec: &ModelSpec,
    ds: &Dataset,
    batch: usize,
    device: &Device,
    with_loss: bool,
) -> Result<(f64, Option<f64>)> {
    let device = device.clone().without_autodiff();
    let opts = spec.batch_options(false);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    score_batches(ds.len(), batch, with_loss, &device, |chunk| {
        let (x, y) = data::make_batch(ds, chunk, &opts, &mut rng, &device)?;
        Ok((net.forward(x), y))
    })
}

/// Accuracy and, with `with_loss`, the mean cross-entropy of `n` examples taken in file order
/// in chunks of `batch`, `logits_of` giving each chunk's logits (eval mode, on `device`) and
/// labels: how [`accuracy`] scores a data set, for callers that make the logits another way
/// (the fine-tune's validation on the stored outputs of a frozen prefix).
pub fn score_batches(
    n: usize,
    batch: usize,
    with_loss: bool,
    device: &Device,
    mut logits_of: impl FnMut(&[usize]) -> Result<(Tensor<2>, Tensor<1, Int>)>,
) -> Result<(f64, Option<f64>)> {
    if n == 0 {
        return Err(Error::invalid("evaluation set", "no images"));
    }
    let idx: Vec<usize> = (0..n).collect();
    let loss_fn = burn::nn::loss::CrossEntropyLossConfig::new().init(device);
    let (mut correct, mut loss) = (0usize, 0.0f64);
    for chunk in idx.chunks(batch.max(1)) {
        let (logits, y) = logits_of(chunk)?;
        let pred = logits.clone().argmax(1).flatten::<1>(0, 1);
        correct += pred.equal(y.clone()).int().sum().into_scalar::<i64>() as usize;
        if with_loss {
            let l = loss_fn.forward(logits, y).into_scalar::<f32>() as f64;
            loss += l * chunk.len() as f64;
        }
    }
    let n = n as f64;
    Ok((correct as f64 / n, with_loss.then_some(loss / n)))
}
