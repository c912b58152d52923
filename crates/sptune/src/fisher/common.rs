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

/// The logit cotangents of one example's rows, one vector of `classes` values per row:
/// `√ω (e_y − p)` per `(y, ω)`.
pub(crate) fn cotangent_rows(p: &[f32], rows: &[(usize, f64)]) -> Vec<Vec<f32>> {
    rows.iter()
        .map(|&(y, w)| {
            let s = w.sqrt() as f32;
            p.iter()
                .enumerate()
                .map(|(o, &po)| s * (if o == y { 1.0 } else { 0.0 } - po))
                .collect()
        })
        .collect()
}

/// The `exact` estimator's logit cotangents of one example: one row fewer than the classes,
/// with the same Fisher.
///
/// The exact Fisher sums `J_cᵀ J_c` over the class rows `u_c = √p_c (e_c − p)` (`J` the logits'
/// Jacobian), that is `Jᵀ H J` with `H = Σ_c u_c u_cᵀ = diag(p) − p pᵀ`, and any rows `b_k`
/// with `Σ_k b_k b_kᵀ = H` give the same sum of squared gradients. The `u_c` are dependent
/// (`Σ_c √p_c u_c = p − p·Σ_c p_c = 0`), so with `m` the most likely class
/// `u_m = −Σ_{c≠m} √(p_c/p_m) u_c`, and `H = A (I + a aᵀ/p_m) Aᵀ` with `A` the other rows as
/// columns and `a_c = √p_c`. The square root of `I + a aᵀ/p_m` is `I + γ a aᵀ` with
/// `(1 + γ‖a‖²)² = 1 + ‖a‖²/p_m = 1/p_m` (as `‖a‖² = 1 − p_m`), so
/// `γ = 1/(√p_m (1 + √p_m))` and the `C − 1` rows are
/// `b_k = u_k + γ √p_k (Σ_{c≠m} √p_c u_c) = √p_k [(e_k − p) − √p_m/(1 + √p_m) (e_m − p)]`, `k ≠ m`.
/// One backward row less per example: a tenth of the work with 10 classes, half with 2. Rows of
/// a class with `p_k = 0` are 0 and dropped. In f64, returned as f32.
pub(crate) fn exact_rows(p: &[f32]) -> Vec<Vec<f32>> {
    let m = (0..p.len())
        .max_by(|&a, &b| p[a].total_cmp(&p[b]))
        .unwrap_or(0);
    let pm = (p[m] as f64).sqrt();
    let c = pm / (1.0 + pm);
    let d: Vec<f64> = (0..p.len())
        .map(|o| if o == m { 1.0 } else { 0.0 } - p[o] as f64)
        .collect();
    (0..p.len())
        .filter(|&k| k != m && p[k] > 0.0)
        .map(|k| {
            let s = (p[k] as f64).sqrt();
            (0..p.len())
                .map(|o| {
                    let e = if o == k { 1.0 } else { 0.0 } - p[o] as f64;
                    (s * (e - c * d[o])) as f32
                })
                .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `Σ_k b_k b_kᵀ` against `diag(p) − p pᵀ`, the largest difference (worked in f64).
    fn gap(p: &[f32], rows: &[Vec<f32>]) -> f64 {
        let c = p.len();
        let mut worst = 0f64;
        for i in 0..c {
            for j in 0..c {
                let got: f64 = rows.iter().map(|b| b[i] as f64 * b[j] as f64).sum();
                let want = if i == j { p[i] as f64 } else { 0.0 } - p[i] as f64 * p[j] as f64;
                worst = worst.max((got - want).abs());
            }
        }
        worst
    }

    fn softmax(z: &[f64]) -> Vec<f32> {
        let top = z.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - top).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| (v / s) as f32).collect()
    }

    #[test]
    fn exact_rows_factor_the_log_softmax_curvature() {
        // logits of several spreads and class counts, a tie for the most likely class, a
        // near-certain model, and a class of probability exactly 0
        let cases: Vec<Vec<f32>> = vec![
            softmax(&[0.3, -1.2]),
            softmax(&[2.0, 0.5, -0.7, 1.1, 0.0, -2.5, 3.1, 0.2, -0.4, 1.7]),
            softmax(&[1.0, 1.0, 0.0]),
            softmax(&[12.0, 0.0, -3.0, 1.0]),
            vec![0.5, 0.0, 0.25, 0.25],
            softmax(
                &(0..100)
                    .map(|i| ((i * 37 % 101) as f64 / 20.0).sin() * 4.0)
                    .collect::<Vec<_>>(),
            ),
        ];
        for p in &cases {
            let rows = exact_rows(p);
            let zeros = p.iter().filter(|&&v| v == 0.0).count();
            assert_eq!(rows.len(), p.len() - 1 - zeros, "{p:?}");
            // float32 rows: the products carry about 1e-7 of each entry
            assert!(gap(p, &rows) < 1e-6, "{p:?}: {}", gap(p, &rows));
            // the class rows √p_c (e_c − p) factor the same matrix (the check is not vacuous)
            let class: Vec<Vec<f32>> = (0..p.len())
                .map(|c| {
                    let s = p[c].sqrt();
                    (0..p.len())
                        .map(|o| s * (if o == c { 1.0 } else { 0.0 } - p[o]))
                        .collect()
                })
                .collect();
            assert!(gap(p, &class) < 1e-6);
        }
        // a planted error: the coefficient of the most likely class's row off by its square
        let p = &cases[1];
        let m = 6;
        let pm = p[m] as f64;
        let wrong: Vec<Vec<f32>> = (0..p.len())
            .filter(|&k| k != m)
            .map(|k| {
                let s = (p[k] as f64).sqrt();
                (0..p.len())
                    .map(|o| {
                        let e = if o == k { 1.0 } else { 0.0 } - p[o] as f64;
                        let d = if o == m { 1.0 } else { 0.0 } - p[o] as f64;
                        (s * (e - pm / (1.0 + pm) * d)) as f32
                    })
                    .collect()
            })
            .collect();
        assert!(gap(p, &wrong) > 1e-3, "{}", gap(p, &wrong));
    }
}
