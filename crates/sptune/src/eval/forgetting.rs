//! Forgetting: how much of the source task the fine-tuned body lost.
//!
//! The source model's head is put back on the fine-tuned body (every non-head tensor,
//! BatchNorm statistics included, comes from the fine-tuned model) and its accuracy on the
//! source test split is compared with the source model's own: the drop in points is the
//! forgetting, as in the seed's table.

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
