//! The probe path ([`ProbeEngine`]): per-example squared gradients of a whole batch from one
//! backward pass of burn's autodiff, on any device (the GPU path).
//!
//! The [`Probe`] hook records each layer's input `a_i` and adds a zero tensor `P` (requiring a
//! gradient) to its output, so the backward pass returns `∂L/∂P`, i.e. each example's output
//! gradient `g_i`, while the parameters themselves need no gradient. A pass seeds the logits
//! of example `i` with a cotangent `b_i` (the loss `L = Σ_i b_i · z_i`): for `mc` and
//! `empirical` `√ω_i (e_{y_i} − p_i)`, the gradient of `√ω_i log p_{y_i}(x_i)`, for `exact` one
//! of the `C − 1` rows of [`common::exact_rows`]. Every example's gradient is then that row's,
//! and the per-example squares follow per layer type:
//!
//! - linear `W[o, k]`: `Σ_i g_io² a_ik²` = `(g²)ᵀ(a²)`, one matmul; bias `Σ_i g_io²`;
//! - conv: per example `G_i Uᵢᵀ` with `U_i` the unfolded input patches `[c·kh·kw, positions]`
//!   and `G_i` the output gradient `[out, positions]` (a batched matmul, per group), squared and
//!   summed over the batch; bias `Σ_i (Σ_pos g_i)²`;
//! - BatchNorm (eval): `γ_c`: `Σ_i (Σ_pos g_i x̂_i)²` with `x̂` the input normalized by the
//!   running statistics; `β_c`: `Σ_i (Σ_pos g_i)²`.
//!
//! All sums are kept in the checkpoint group view `[out, rest]`.

use std::collections::HashMap;

use burn::module::ParamId;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear};
use burn::tensor::module::unfold4d;
use burn::tensor::ops::UnfoldOptions;
use burn::tensor::{Device, Tensor, TensorData};

use super::common;
use super::{Engine, Estimator, Fisher, FisherOptions, ProbeEngine};
use crate::Result;
use crate::data::Dataset;
use crate::kernels::window::conv_padding;
use crate::models::{Hook, ModelSpec, Net};

/// Largest block of unfolded patches or per-example gradients materialized at once (floats):
/// 4 MiB, small enough to stay in cache while it is squared and summed (`sptune bench-fisher`:
/// conv squares took 0.30 s per pass with 2^24, 0.13 s with 2^20, 0.17 s with 2^22), and a
/// bound on the extra memory of large inputs.
const BLOCK: usize = 1 << 20;

/// One probed layer call: the parameters, what their squared gradients need from the forward
/// pass, and the probe added to the layer's output.
enum ProbeSite {
    Linear {
        weight: ParamId,
        bias: Option<ParamId>,
        input: Tensor<2>,
        probe: Tensor<2>,
    },
    Conv {
        weight: ParamId,
        bias: Option<ParamId>,
        input: Tensor<4>,
        probe: Tensor<4>,
        kernel: [usize; 2],
        stride: [usize; 2],
        dilation: [usize; 2],
        groups: usize,
        padding: [(usize, usize); 2],
    },
    Norm {
        gamma: ParamId,
        beta: ParamId,
        normalized: Tensor<4>,
        probe: Tensor<4>,
    },
}

/// The hook: records layer inputs and adds probes to layer outputs.
#[derive(Default)]
struct Probe {
    sites: Vec<ProbeSite>,
}

fn probe_like<const D: usize>(y: &Tensor<D>) -> Tensor<D> {
    Tensor::<D>::zeros(y.dims(), &y.device()).require_grad()
}

impl Hook for Probe {
    fn conv2d(&mut self, m: &Conv2d, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let padding = conv_padding(m, h, w);
        let y = crate::kernels::conv2d(m, x.clone());
        let probe = probe_like(&y);
        self.sites.push(ProbeSite::Conv {
            weight: m.weight.id,
            bias: m.bias.as_ref().map(|b| b.id),
            input: x.inner(),
            probe: probe.clone(),
            kernel: m.kernel_size,
            stride: m.stride,
            dilation: m.dilation,
            groups: m.groups,
            padding,
        });
        y + probe
    }

    fn batch_norm(&mut self, m: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
        let c = x.dims()[1];
        let mean = m.running_mean.value().inner().reshape([1, c, 1, 1]);
        let var = m.running_var.value().inner().reshape([1, c, 1, 1]);
        let normalized = (x.clone().inner() - mean) / var.add_scalar(m.epsilon).sqrt();
        let y = crate::kernels::batch_norm(m, x);
        let probe = probe_like(&y);
        self.sites.push(ProbeSite::Norm {
            gamma: m.gamma.id,
            beta: m.beta.id,
            normalized,
            probe: probe.clone(),
        });
        y + probe
    }

    fn linear(&mut self, m: &Linear, x: Tensor<2>) -> Tensor<2> {
        let y = m.forward(x.clone());
        let probe = probe_like(&y);
        self.sites.push(ProbeSite::Linear {
            weight: m.weight.id,
            bias: m.bias.as_ref().map(|b| b.id),
            input: x.inner(),
            probe: probe.clone(),
        });
        y + probe
    }
}

/// Adds `t` (group view) to the running sum of parameter `id`.
fn accumulate(sums: &mut HashMap<ParamId, Tensor<2>>, id: ParamId, t: Tensor<2>) {
    let t = match sums.remove(&id) {
        Some(s) => s + t,
        None => t,
    };
    sums.insert(id, t);
}

/// Per-example squared gradients of one probe site, summed over the batch, added to `sums`.
fn square_sums(
    site: ProbeSite,
    grads: &burn::tensor::Gradients,
    sums: &mut HashMap<ParamId, Tensor<2>>,
) {
    match site {
        ProbeSite::Linear {
            weight,
            bias,
            input,
            probe,
        } => {
            let g = probe.grad(grads).expect("probe gradient").square(); // [n, out]
            if let Some(b) = bias {
                let [_, out] = g.dims();
                accumulate(sums, b, g.clone().sum_dim(0).reshape([out, 1]));
            }
            accumulate(sums, weight, g.transpose().matmul(input.square()));
        }
        ProbeSite::Conv {
            weight,
            bias,
            input,
            probe,
            kernel,
            stride,
            dilation,
            groups,
            padding,
        } => {
            let g = probe.grad(grads).expect("probe gradient"); // [n, out, ho, wo]
            let [n, out, ho, wo] = g.dims();
            let l = ho * wo;
            let g = g.reshape([n, out, l]);
            if let Some(b) = bias {
                let s = g.clone().sum_dim(2).square().sum_dim(0); // [1, out, 1]
                accumulate(sums, b, s.reshape([out, 1]));
            }
            let x = if padding == [(0, 0), (0, 0)] {
                input
            } else {
                input.pad(
                    [padding[0], padding[1]],
                    burn::tensor::ops::PadMode::Constant(0.0),
                )
            };
            let cin = x.dims()[1];
            let (cg, og) = (cin / groups, out / groups);
            let kk = kernel[0] * kernel[1];
            let g = g.reshape([n, groups, og, l]);
            // examples per block: both the unfolded patches [len, cin·kk, l] and the
            // per-example gradients [len, out, cg·kk] stay within BLOCK floats
            let per = (BLOCK / (out * cg * kk).max(cin * kk * l).max(1)).clamp(1, n);
            let mut total: Option<Tensor<2>> = None;
            for start in (0..n).step_by(per) {
                let len = per.min(n - start);
                let patches = unfold4d(
                    x.clone().narrow(0, start, len),
                    kernel,
                    UnfoldOptions::new(stride, [0, 0], dilation),
                ); // [len, cin·kk, l]
                debug_assert_eq!(patches.dims()[2], l);
                let patches = patches.reshape([len, groups, cg * kk, l]).swap_dims(2, 3);
                let s = g
                    .clone()
                    .narrow(0, start, len)
                    .matmul(patches) // [len, groups, og, cg·kk]
                    .square()
                    .sum_dim(0)
                    .reshape([out, cg * kk]);
                total = Some(match total {
                    Some(t) => t + s,
                    None => s,
                });
            }
            accumulate(sums, weight, total.expect("a non-empty batch"));
        }
        ProbeSite::Norm {
            gamma,
            beta,
            normalized,
            probe,
        } => {
            let g = probe.grad(grads).expect("probe gradient"); // [n, c, h, w]
            let [n, c, h, w] = g.dims();
            let gx = (g.clone() * normalized).reshape([n, c, h * w]).sum_dim(2);
            accumulate(sums, gamma, gx.square().sum_dim(0).reshape([c, 1]));
            let gb = g.reshape([n, c, h * w]).sum_dim(2);
            accumulate(sums, beta, gb.square().sum_dim(0).reshape([c, 1]));
        }
    }
}

impl Engine for ProbeEngine {
    fn name(&self) -> &'static str {
        "probe"
    }

    /// Every network, on every device.
    fn supports(&self, _: &Net, _: &Device) -> bool {
        true
    }

    /// Per-example gradients from one backward pass per row (`exact`: `C − 1`), per sample (`mc`) or
    /// one (`empirical`) for each batch; `progress(k)` is called after each batch.
    fn compute(
        &self,
        net: &Net,
        spec: &ModelSpec,
        ds: &Dataset,
        opts: &FisherOptions,
        device: &Device,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Fisher> {
        let _direct = crate::kernels::DirectConvolutions::hold();
        opts.validate()?;
        common::check_inputs(spec, ds)?;
        let ad = device.clone().autodiff();
        let net = common::eval_mode(net, &ad, false);
        let classes = spec.num_classes();
        let passes = opts.passes(classes);
        let mut rng = common::draw_rng(opts);
        let mut sums: HashMap<ParamId, Tensor<2>> = HashMap::new();
        let idx: Vec<usize> = (0..ds.len()).collect();
        let mut done = 0;
        for chunk in idx.chunks(opts.batch_size) {
            let (x, labels) = common::batch(ds, spec, chunk, &ad)?;
            // per example, per pass: the cotangent at the logits
            let mut rows: Option<Vec<Vec<Vec<f32>>>> = None;
            for pass in 0..passes {
                let mut hook = Probe::default();
                let logits = net.forward_with(x.clone(), &mut hook);
                let rows = match &rows {
                    Some(r) => r,
                    None => {
                        let probs = common::softmax_rows(logits.clone());
                        common::check_probs(&probs)?;
                        let drawn = common::batch_rows(opts, &probs, classes, &labels, &mut rng);
                        let cot = probs
                            .chunks(classes)
                            .zip(&drawn)
                            .map(|(p, r)| match opts.estimator {
                                Estimator::Exact => common::exact_rows(p),
                                _ => common::cotangent_rows(p, r),
                            })
                            .collect();
                        rows.insert(cot)
                    }
                };
                // an example with fewer rows (a class of probability 0) gets zeros
                let mut seed = vec![0f32; chunk.len() * classes];
                for (i, r) in rows.iter().enumerate() {
                    if let Some(row) = r.get(pass) {
                        seed[i * classes..(i + 1) * classes].copy_from_slice(row);
                    }
                }
                let seed =
                    Tensor::<2>::from_data(TensorData::new(seed, [chunk.len(), classes]), &ad);
                // the gradient of Σ seed·logits at the logits is the seed itself
                let loss = (logits * seed).sum();
                let grads = loss.backward();
                for site in hook.sites {
                    square_sums(site, &grads, &mut sums);
                }
            }
            done += chunk.len();
            progress(done);
        }
        let host = sums
            .into_iter()
            .map(|(id, t)| (id, common::host_f64(t)))
            .collect();
        Fisher::from_sums(&net, host, ds.len(), opts)
    }
}
