//! What the Fisher engines share: the `(label, weight)` rows of a batch and the `mc` draws, the
//! model in eval mode and its probabilities, the batches of examples, and convolution padding.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::Tensor;
use rand::{Rng, SeedableRng};

use super::{Estimator, FisherOptions};
use crate::models::{ModelSpec, Net};
use crate::{Error, Result};

/// The `(label, weight)` rows of every example of a batch, example-major: `rows[i]` holds one
/// row per backward pass of example `i` given the model's probabilities `probs` (row-major
/// `[n, classes]`) and the true labels:
///
/// - `exact`: every class `c`, weight `p_c(x_i)`;
/// - `mc`: `K` labels drawn from `p(x_i)`, weight `1/K` each;
/// - `empirical`: the true label, weight 1.
///
/// The draws depend on the seed and the order of the examples only, not on the batch size.
pub(crate) fn batch_rows(
    opts: &FisherOptions,
    probs: &[f32],
    classes: usize,
    labels: &[usize],
    rng: &mut impl Rng,
) -> Vec<Vec<(usize, f64)>> {
    labels
        .iter()
        .enumerate()
        .map(|(i, &label)| {
            let p = &probs[i * classes..(i + 1) * classes];
            match opts.estimator {
                Estimator::Exact => (0..classes).map(|c| (c, p[c] as f64)).collect(),
                Estimator::Mc => {
                    let k = opts.mc_samples;
                    (0..k).map(|_| (sample(p, rng), 1.0 / k as f64)).collect()
                }
                Estimator::Empirical => vec![(label, 1.0)],
            }
        })
        .collect()
}

/// Refuses non-finite model probabilities (a diverged or corrupt source model).
pub(crate) fn check_probs(probs: &[f32]) -> Result<()> {
    match probs.iter().find(|v| !v.is_finite()) {
        Some(v) => Err(Error::Diverged(format!(
            "the model's probabilities hold {v} on the Fisher data"
        ))),
        None => Ok(()),
    }
}

/// Seed offset of the `mc` label draws (shared by the batched paths).
const DRAW_SEED: u64 = 0xf15e_0000;

/// The generator of the `mc` label draws of a computation.
pub(crate) fn draw_rng(opts: &FisherOptions) -> rand_chacha::ChaCha8Rng {
    rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed ^ DRAW_SEED)
}

/// Draws a class from probabilities `p` (inverse CDF).
fn sample(p: &[f32], rng: &mut impl Rng) -> usize {
    let u: f64 = rng.random::<f64>() * p.iter().map(|&v| v as f64).sum::<f64>();
    let mut acc = 0.0;
    for (c, &v) in p.iter().enumerate() {
        acc += v as f64;
        if u < acc {
            return c;
        }
    }
    p.len() - 1
}

/// Copies `net` onto the autodiff device `ad` with every BatchNorm in eval mode (running
/// statistics) and the parameters requiring gradients or not.
pub fn eval_mode(net: &Net, ad: &burn::tensor::Device, trainable: bool) -> Net {
    struct M<'a>(&'a burn::tensor::Device, bool);
    impl ModuleMapper for M<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (id, t, mapper) = param.consume();
            let inner = self.0.clone().without_autodiff();
            let t = t.inner().to_device(&inner).autodiff();
            let t = if self.1 { t.require_grad() } else { t };
            Param::from_mapped_value(id, t, mapper)
        }
        fn map_flag(&mut self, flag: Param<burn::module::Flag>) -> Param<burn::module::Flag> {
            flag.with_value(false)
        }
    }
    net.clone().map(&mut M(ad, trainable))
}

/// Softmax probabilities `[n, classes]` (row-major, on the host) from logits.
pub(crate) fn softmax_rows(logits: Tensor<2>) -> Vec<f32> {
    burn::tensor::activation::softmax(logits.inner(), 1)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 logits")
}

/// The batch of examples `idx` as a normalized tensor plus labels (host), in eval layout.
pub(crate) fn batch(
    ds: &crate::data::Dataset,
    spec: &ModelSpec,
    idx: &[usize],
    device: &burn::tensor::Device,
) -> Result<(Tensor<4>, Vec<usize>)> {
    let opts = spec.batch_options(false);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let (x, _) = crate::data::make_batch(ds, idx, &opts, &mut rng, device)?;
    Ok((x, idx.iter().map(|&i| ds.labels[i]).collect()))
}

/// Checks the data set against the model before a Fisher computation.
pub(crate) fn check_inputs(spec: &ModelSpec, ds: &crate::data::Dataset) -> Result<()> {
    if ds.is_empty() {
        return Err(Error::invalid("Fisher data", "no images"));
    }
    if let Some(&l) = ds.labels.iter().find(|&&l| l >= spec.num_classes()) {
        return Err(Error::invalid(
            "Fisher data",
            format!(
                "label {l} is not one of the model's {} classes",
                spec.num_classes()
            ),
        ));
    }
    Ok(())
}

/// Host values of a tensor as f64.
pub(crate) fn host_f64<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 tensor")
        .into_iter()
        .map(|v| v as f64)
        .collect()
}
