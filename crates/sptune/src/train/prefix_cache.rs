//! The frozen prefix computed once: with `--freeze K` the stem and stages `1..=K` take no
//! updates and their BatchNorms use their running statistics, so without augmentation each
//! training image's output of that prefix is the same in every epoch. It is computed once per
//! image (inference mode, batches of the training batch size) and each step runs only the
//! rest of the network on the stored outputs; the backward pass stops there too (nothing
//! below stage K+1 needs a gradient). The store is bounded by [`crate::runtime::cache_budget_mb`].
//! The trainer keeps a second store for the validation images in what is left of the budget
//! (built in the evaluation batches, so each epoch's validation scores them exactly as the
//! whole network would).

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::Result;
use crate::data::{self, BatchOptions, Dataset};
use crate::models::Net;

/// The stored prefix outputs of every image of one data set (the training or the validation
/// images).
pub struct PrefixCache {
    /// `--freeze K`.
    pub k: usize,
    shape: [usize; 3],
    values: Vec<f32>,
}

/// What [`PrefixCache::build`] decided.
pub enum Built {
    /// Stored.
    Cache(PrefixCache),
    /// Not stored, and why (for the user).
    Skipped(String),
}

impl PrefixCache {
    /// MiB the stored outputs take.
    pub fn mib(&self) -> f64 {
        (self.values.len() * 4) as f64 / (1 << 20) as f64
    }

    /// Runs the frozen prefix of `net` (stages up to `k`) over every image of `ds`, when it
    /// fits in `budget_mb` MiB; `net` is on the autodiff device (its frozen part is used in
    /// inference mode).
    pub fn build(
        net: &Net,
        k: usize,
        ds: &Dataset,
        opts: &BatchOptions,
        batch_size: usize,
        budget_mb: usize,
        device: &Device,
    ) -> Result<Built> {
        let inner = net.valid();
        let plain = device.clone().inner();
        let mut rng = rand::rng(); // unused: no augmentation
        let first = |idx: &[usize], rng: &mut _| -> Result<Option<Tensor<4>>> {
            let (x, _) = data::make_batch(ds, idx, opts, rng, &plain)?;
            Ok(inner.prefix(x, k))
        };
        let Some(probe) = first(&[0], &mut rng)? else {
            return Ok(Built::Skipped(
                "this architecture does not split at its stages".into(),
            ));
        };
        let [_, c, h, w] = probe.dims();
        let per = c * h * w;
        let need_mb = (ds.len() * per * 4).div_ceil(1 << 20);
        if need_mb > budget_mb {
            return Ok(Built::Skipped(format!(
                "the frozen prefix's outputs need {need_mb} MiB, over the cache budget of \
                 {budget_mb} MiB (--cache-mb); recomputing them every epoch"
            )));
        }
        let mut values = Vec::with_capacity(ds.len() * per);
        let all: Vec<usize> = (0..ds.len()).collect();
        for idx in all.chunks(batch_size.max(1)) {
            let y = first(idx, &mut rng)?.expect("checked above");
            let v = y.into_data().convert::<f32>();
            values.extend_from_slice(v.as_slice::<f32>().expect("f32"));
        }
        Ok(Built::Cache(PrefixCache {
            k,
            shape: [c, h, w],
            values,
        }))
    }

    /// The stored outputs and the labels of images `idx`, on `device`.
    pub fn batch(
        &self,
        ds: &Dataset,
        idx: &[usize],
        device: &Device,
    ) -> (Tensor<4>, Tensor<1, Int>) {
        let [c, h, w] = self.shape;
        let per = c * h * w;
        let mut v = Vec::with_capacity(idx.len() * per);
        for &i in idx {
            v.extend_from_slice(&self.values[i * per..(i + 1) * per]);
        }
        let x = Tensor::<4>::from_data(TensorData::new(v, [idx.len(), c, h, w]), device);
        let labels: Vec<i64> = idx.iter().map(|&i| ds.labels[i] as i64).collect();
        let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [idx.len()]), device);
        (x, y)
    }
}
