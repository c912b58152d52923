//! The batch-1 loop ([`Batch1Loop`]): one forward and one backward per example and per class, with
//! burn's ordinary parameter gradients. Slow (it is what the batched paths replace); kept for the
//! tests and `sptune bench-fisher`.

use std::collections::{BTreeMap, HashMap};

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::{Device, Gradients, Tensor};

use super::{Batch1Loop, Engine, Estimator, Fisher, FisherOptions, common};
use crate::data::Dataset;
use crate::models::{ModelSpec, Net};
use crate::params::{self, Kind};
use crate::regularizer::group_view;
use crate::{Error, Result};

/// Per-class log-probability gradients of one example.
pub struct ExampleGradients {
    /// The model's class probabilities `p_c(x)`.
    pub probs: Vec<f64>,
    /// `grads[c][name]`: `∇ log p_c(x)` for each parameter, checkpoint layout, flattened.
    pub grads: Vec<BTreeMap<String, Vec<f64>>>,
}

struct Grab<'a> {
    grads: &'a Gradients,
    names: &'a HashMap<ParamId, (String, bool)>,
    out: BTreeMap<String, Vec<f64>>,
}

impl ModuleVisitor for Grab<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some((name, transposed)) = self.names.get(&param.id) else {
            return;
        };
        if let Some(g) = param.val().grad(self.grads) {
            self.out
                .insert(name.clone(), common::host_f64(group_view(g, *transposed)));
        }
    }
}

/// The model prepared for the batch-1 loop: eval mode, parameters requiring gradients.
pub struct Prepared {
    net: Net,
    names: HashMap<ParamId, (String, bool)>,
    device: Device,
}

impl Prepared {
    /// Moves `net` to the autodiff device of `device` in eval mode.
    pub fn new(net: &Net, device: &Device) -> Self {
        let ad = device.clone().autodiff();
        let net = common::eval_mode(net, &ad, true);
        let names = params::table(&net)
            .into_iter()
            .filter(|i| i.kind == Kind::Param)
            .map(|i| (i.id, (i.name, i.transposed)))
            .collect();
        Prepared {
            net,
            names,
            device: ad,
        }
    }

    /// `∇ log p_c(x_i)` of example `i` of `ds` for the classes `classes` (all when `None`).
    pub fn example(
        &self,
        spec: &ModelSpec,
        ds: &Dataset,
        i: usize,
        classes: Option<&[usize]>,
    ) -> Result<ExampleGradients> {
        let (x, _) = common::batch(ds, spec, &[i], &self.device)?;
        let all: Vec<usize> = (0..spec.num_classes()).collect();
        let classes = classes.unwrap_or(&all);
        let mut probs = Vec::new();
        let mut grads = Vec::new();
        for &c in classes {
            let logits = self.net.forward(x.clone());
            if probs.is_empty() {
                probs = common::softmax_rows(logits.clone())
                    .into_iter()
                    .map(|v| v as f64)
                    .collect();
            }
            let logp = burn::tensor::activation::log_softmax(logits, 1);
            let g = logp.narrow(1, c, 1).sum().backward();
            let mut grab = Grab {
                grads: &g,
                names: &self.names,
                out: BTreeMap::new(),
            };
            self.net.visit(&mut grab);
            grads.push(grab.out);
        }
        Ok(ExampleGradients { probs, grads })
    }
}

/// The Fisher by the batch-1 loop (`exact` or `empirical`).
pub fn compute(
    net: &Net,
    spec: &ModelSpec,
    ds: &Dataset,
    opts: &FisherOptions,
    device: &Device,
    progress: &mut dyn FnMut(usize),
) -> Result<Fisher> {
    opts.validate()?;
    common::check_inputs(spec, ds)?;
    let prep = Prepared::new(net, device);
    let mut sums: HashMap<ParamId, Vec<f64>> = HashMap::new();
    let ids: HashMap<&str, ParamId> = prep
        .names
        .iter()
        .map(|(id, (n, _))| (n.as_str(), *id))
        .collect();
    for i in 0..ds.len() {
        let (ex, weights): (ExampleGradients, Vec<f64>) = match opts.estimator {
            Estimator::Exact => {
                let ex = prep.example(spec, ds, i, None)?;
                let w = ex.probs.clone();
                (ex, w)
            }
            Estimator::Empirical => {
                let ex = prep.example(spec, ds, i, Some(&[ds.labels[i]]))?;
                (ex, vec![1.0])
            }
            Estimator::Mc => {
                return Err(Error::invalid(
                    "--estimator",
                    "the batch-1 loop implements exact and empirical",
                ));
            }
        };
        for (g, w) in ex.grads.iter().zip(&weights) {
            for (name, vals) in g {
                let acc = sums
                    .entry(ids[name.as_str()])
                    .or_insert_with(|| vec![0.0; vals.len()]);
                for (a, v) in acc.iter_mut().zip(vals) {
                    *a += w * v * v;
                }
            }
        }
        progress(i + 1);
    }
    Fisher::from_sums(&prep.net, sums, ds.len(), opts)
}

impl Engine for Batch1Loop {
    fn name(&self) -> &'static str {
        "batch-1"
    }

    /// Every network, on every device (`exact` and `empirical` only).
    fn supports(&self, _: &Net, _: &Device) -> bool {
        true
    }

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
        compute(net, spec, ds, opts, device, progress)
    }
}
