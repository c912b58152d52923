//! Forgetting: how much of the source task the fine-tuned body lost.
//!
//! The source model's head is put back on the fine-tuned body (every non-head tensor,
//! BatchNorm statistics included, comes from the fine-tuned model) and its accuracy on the
//! source test split is compared with the source model's own: the drop in points is the
//! forgetting, as in the seed's table.
//!
//! [`decompose`] splits it in two: the source accuracy of the fine-tuned weights carrying the
//! source's own BatchNorm running statistics (`running_mean`, `running_var`,
//! `num_batches_tracked`) tells how much the statistics alone cost (`statistics_points`, the
//! rise when they are put back) and how much the weights (`weights_points`, what remains);
//! the two parts sum to the forgetting. With `--bn train` most of a ResNet's forgetting can be
//! the statistics moving to the target's images, which no weight penalty touches.

use burn::module::Module;
use burn::tensor::Device;
use serde::Serialize;

use crate::data::Dataset;
use crate::models::checkpoint::{Checkpoint, load_into};
use crate::{Error, Result};

/// Source-task accuracies before and after fine-tuning.
#[derive(Clone, Debug, Serialize)]
pub struct Forgetting {
    /// Source model on the source test split.
    pub source_acc: f64,
    /// Fine-tuned body + source head on the source test split.
    pub after_acc: f64,
    /// `source_acc - after_acc`, in percentage points.
    pub drop_points: f64,
}

/// Measures forgetting of `source` (checkpoint) after fine-tuning to `tuned` (checkpoint
/// values), on `source_test` (labels index the source model's classes).
pub fn forgetting(
    source: &Checkpoint,
    tuned: &Checkpoint,
    source_test: &Dataset,
    device: &Device,
) -> Result<Forgetting> {
    let spec = source.spec()?;
    let device = device.clone().without_autodiff();
    let (src_net, _) = load_into(spec.init(&device)?, &spec, source, false)?;
    let source_acc = super::accuracy(
        &src_net.valid(),
        &spec,
        source_test,
        spec.eval_batch(),
        &device,
    )?;
    let after_acc = source_head_accuracy(source, tuned, source_test, &device)?;
    Ok(Forgetting {
        source_acc,
        after_acc,
        drop_points: 100.0 * (source_acc - after_acc),
    })
}

/// Source-task accuracy of the fine-tuned body (every non-head tensor of `tuned`, BatchNorm
/// statistics included) carrying the source model's head.
pub fn source_head_accuracy(
    source: &Checkpoint,
    tuned: &Checkpoint,
    source_test: &Dataset,
    device: &Device,
) -> Result<f64> {
    let spec = source.spec()?;
    let tuned_spec = tuned.spec()?;
    if tuned_spec.arch != spec.arch
        || tuned_spec.width != spec.width
        || tuned_spec.hidden != spec.hidden
        || tuned_spec.input != spec.input
    {
        return Err(Error::Checkpoint {
            path: tuned.path.clone(),
            msg: format!(
                "body ({}) does not match the source model {} ({})",
                tuned_spec.arch,
                source.path.display(),
                spec.arch
            ),
        });
    }
    let device = device.clone().without_autodiff();
    let mut hybrid = tuned.clone();
    for h in spec.head_names() {
        hybrid.tensors.remove(&h);
        if let Some(t) = source.tensors.get(&h) {
            hybrid.tensors.insert(h.clone(), t.clone());
        }
    }
    let (net, _) = load_into(spec.init(&device)?, &spec, &hybrid, false)?;
    super::accuracy(&net.valid(), &spec, source_test, spec.eval_batch(), &device)
}

/// Forgetting split into what the BatchNorm running statistics and what the weights cost.
#[derive(Clone, Debug, Serialize)]
pub struct Decomposition {
    /// Source model on the source test split.
    pub source_acc: f64,
    /// Fine-tuned body (its statistics) + source head.
    pub after_acc: f64,
    /// Fine-tuned body with the source's BatchNorm running statistics + source head.
    pub after_acc_source_stats: f64,
    /// Points the statistics cost: `after_acc_source_stats − after_acc` (× 100).
    pub statistics_points: f64,
    /// Points the weights cost: `source_acc − after_acc_source_stats` (× 100).
    pub weights_points: f64,
}

/// `tuned` with every BatchNorm running statistic replaced by the source's.
pub fn with_source_stats(source: &Checkpoint, tuned: &Checkpoint) -> Checkpoint {
    let mut out = tuned.clone();
    for (name, t) in &source.tensors {
        if crate::params::is_buffer_name(name) && out.tensors.contains_key(name) {
            out.tensors.insert(name.clone(), t.clone());
        }
    }
    out
}

/// [`forgetting`], split into statistics and weights (see the module doc); `source_acc` is
/// the source model's own accuracy on `source_test` when the caller has it.
pub fn decompose(
    source: &Checkpoint,
    tuned: &Checkpoint,
    source_test: &Dataset,
    source_acc: Option<f64>,
    device: &Device,
) -> Result<Decomposition> {
    let source_acc = match source_acc {
        Some(a) => a,
        None => forgetting(source, source, source_test, device)?.source_acc,
    };
    let after_acc = source_head_accuracy(source, tuned, source_test, device)?;
    let after_acc_source_stats = source_head_accuracy(
        source,
        &with_source_stats(source, tuned),
        source_test,
        device,
    )?;
    Ok(Decomposition {
        source_acc,
        after_acc,
        after_acc_source_stats,
        statistics_points: 100.0 * (after_acc_source_stats - after_acc),
        weights_points: 100.0 * (source_acc - after_acc_source_stats),
    })
}
