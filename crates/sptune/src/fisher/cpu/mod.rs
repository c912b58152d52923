//! The CPU engine ([`CpuEngine`]): one forward pass per batch, then every row of an example carried
//! through one hand-written backward pass.
//!
//! The probe path runs a forward and a backward pass through burn's autodiff for each class
//! (burn cannot keep a graph for a second backward pass). In eval mode the backward pass of
//! every sptune architecture (ResNet, EfficientNet-Lite, MLP) is a chain of linear maps, so
//! this engine runs burn's forward pass once per batch, records each layer's input (and
//! BatchNorm's output), and then computes, for every example on the host:
//!
//! - the logit cotangents of all its rows at once: `√ω_r (e_{y_r} − p)` for `r = 1..R` (`mc`,
//!   `empirical`; rows with the same label are merged, since `ω₁ g² + ω₂ g² = (ω₁ + ω₂) g²`,
//!   and rows of weight 0 dropped), or for `exact` the `C − 1` rows of
//!   [`common::exact_rows`], which stand for the `C` classes weighted by `p_c`;
//! - the backward pass of those `R` cotangents together, in the layout
//!   `[channel][row][position]`, so that a convolution's data gradient `Wᵀ G` and its per-row
//!   weight gradients `G Uᵀ` (`U` the unfolded input patches, built once per example, not once
//!   per class) are each one matrix product (the `gemm` crate, which burn's CPU backend uses
//!   too);
//! - the squares of the per-row weight gradients, summed over the rows.
//!
//! In eval mode BatchNorm scales channel `c` by `γ_c/√(var_c+ε)`, ReLU (ReLU6) passes the
//! gradient where its output is positive (within [0, 6]), max-pooling routes it to the window's
//! maximum and global average pooling spreads it evenly. Examples run in parallel, one slice per
//! thread, each with its own sums; per batch the sums are added in f64.
//!
//! This file is the driver (batches, threads, memory budgets); the rest, in the order the data
//! flows: [`record`] (the forward record), [`plan`](mod@plan) (each architecture's layers, matched
//! with their records), [`backward`](mod@backward) (one example through the whole network),
//! [`layers`] (each layer's backward step) and [`kernels`] (matrix products, windows, patches). The
//! tests compare this engine with the batch-1 loop on ResNet-18, ResNet-50 (strided stem, max-pool,
//! bottlenecks), EfficientNet-Lite0 and MLPs, and each convolution kind with burn's autodiff.

mod backward;
mod layers;
mod plan;
mod record;

use std::collections::HashMap;

use burn::module::ParamId;
use burn::tensor::Device;
use rayon::prelude::*;

use super::{CpuEngine, Engine, Estimator, Fisher, FisherOptions, common};
use crate::data::Dataset;
use crate::models::{ModelSpec, Net};
use crate::{Error, Result};
use backward::{backward, by_class, merge_rows};
use layers::Sums;
use plan::plan;
use record::Recorder;

/// Recorded floats per batch (every layer's input, all examples) the engine stays under when it
/// picks its batch size: 2^28 floats, 1 GiB.
const RECORD_BUDGET: usize = 1 << 28;

/// Floats of one layer's gradient for all the rows carried together (2^24, 64 MiB): an example
/// of a 1000-class model at 224 px runs its rows in groups rather than at once.
const ROW_BUDGET: usize = 1 << 24;

/// Largest block of per-row weight gradients materialized at once (floats): 256 KiB, so a block
/// is squared while it is still in the core's L2 cache.
pub(super) const BLOCK: usize = 1 << 16;

impl Engine for CpuEngine {
    fn name(&self) -> &'static str {
        "cpu-engine"
    }

    /// The built-in architectures (ResNet, EfficientNet-Lite, MLP), on the CPU backend.
    fn supports(&self, net: &Net, device: &Device) -> bool {
        if device.clone().without_autodiff() != Device::flex() {
            return false;
        }
        match net {
            Net::Mlp(_) | Net::EfficientNet(_) => true,
            Net::ResNet(m) => m.maxpool.as_ref().is_none_or(|p| !p.ceil_mode),
            // registered architectures outside sptune: the probe path
            Net::Sequential(_) => false,
        }
    }

    /// See the module documentation.
    fn compute(
        &self,
        net: &Net,
        spec: &ModelSpec,
        ds: &Dataset,
        opts: &FisherOptions,
        device: &Device,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Fisher> {
        self.compute_in_groups(net, spec, ds, opts, device, usize::MAX, progress)
    }
}

impl CpuEngine {
    /// [`Engine::compute`] carrying at most `max_rows` rows of an example through each backward
    /// pass (the engine caps them by memory, see `ROW_BUDGET`); for the tests of that grouping.
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    pub fn compute_in_groups(
        &self,
        net: &Net,
        spec: &ModelSpec,
        ds: &Dataset,
        opts: &FisherOptions,
        device: &Device,
        max_rows: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Fisher> {
        let _direct = crate::kernels::DirectConvolutions::hold();
        opts.validate()?;
        common::check_inputs(spec, ds)?;
        if !self.supports(net, device) {
            return Err(Error::Other(
                "the CPU Fisher engine runs on the CPU device only".into(),
            ));
        }
        let ad = device.clone().autodiff();
        let net = common::eval_mode(net, &ad, false);
        let classes = spec.num_classes();
        let mut rng = common::draw_rng(opts);
        // one example's records fix the plan and the batch size
        let (x, _) = common::batch(ds, spec, &[0], &ad)?;
        let mut rec = Recorder::default();
        net.forward_with(x, &mut rec);
        let per_example: usize = rec
            .records
            .iter()
            .map(|r| r.in_len * if r.output.is_empty() { 1 } else { 2 })
            .sum();
        let (plan, slots) = plan(&net, &rec.records)?;
        let batch = (RECORD_BUDGET / per_example.max(1)).clamp(1, opts.batch_size);
        // rows carried together: their gradient of the largest layer stays within ROW_BUDGET
        let largest = rec.records.iter().map(|r| r.in_len).max().unwrap_or(1);
        let row_cap = (ROW_BUDGET / largest.max(1)).clamp(1, max_rows.max(1));
        let threads = rayon::current_num_threads().max(1);
        let mut partial: Vec<Sums> = (0..threads)
            .map(|_| slots.iter().map(|&(_, n)| vec![0f32; n]).collect())
            .collect();
        let mut totals: Vec<Vec<f64>> = slots.iter().map(|&(_, n)| vec![0f64; n]).collect();
        let idx: Vec<usize> = (0..ds.len()).collect();
        let mut done = 0;
        for chunk in idx.chunks(batch) {
            let (x, labels) = common::batch(ds, spec, chunk, &ad)?;
            let mut rec = Recorder::default();
            let logits = net.forward_with(x, &mut rec);
            let probs = common::softmax_rows(logits);
            common::check_probs(&probs)?;
            let rows = common::batch_rows(opts, &probs, classes, &labels, &mut rng);
            let n = chunk.len();
            let share = n.div_ceil(threads);
            let recs = &rec.records;
            let plan = &plan;
            partial.par_iter_mut().enumerate().for_each(|(t, sums)| {
                for i in (t * share)..((t + 1) * share).min(n) {
                    let p = &probs[i * classes..(i + 1) * classes];
                    let cot = match opts.estimator {
                        Estimator::Exact => common::exact_rows(p),
                        _ => common::cotangent_rows(p, &merge_rows(&rows[i])),
                    };
                    for group in cot.chunks(row_cap) {
                        backward(plan, recs, i, by_class(group), group.len(), sums);
                    }
                }
            });
            for sums in &mut partial {
                for (tot, s) in totals.iter_mut().zip(sums.iter_mut()) {
                    for (t, v) in tot.iter_mut().zip(s.iter_mut()) {
                        *t += *v as f64;
                        *v = 0.0;
                    }
                }
            }
            done += n;
            progress(done);
        }
        let sums: HashMap<ParamId, Vec<f64>> =
            slots.iter().map(|&(id, _)| id).zip(totals).collect();
        Fisher::from_sums(&net, sums, ds.len(), opts)
    }
}
