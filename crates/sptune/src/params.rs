//! Parameter paths: the bridge between burn's module tree and checkpoint (torchvision) names.
//!
//! A visitor walks the network, tracking the path with `enter_module`/`exit_module` (burn 0.22
//! never calls `visit_float_with_path`), and records for each tensor its checkpoint name, its
//! [`ParamId`], its shape and whether it is a trainable parameter or a buffer (BatchNorm running
//! statistics). Renames: BatchNorm `gamma`/`beta` -> `weight`/`bias`; MLP `layers.i` ->
//! `fc{i+1}`; enum variants are not part of the name. Linear weights are `[in, out]` in burn and
//! `[out, in]` in checkpoints: [`ParamInfo::transposed`] marks them.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Tensor, TensorData};
use std::collections::HashMap;

/// Trainable parameter or non-trainable buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Trained by the optimizer, subject to regularization.
    Param,
    /// Running statistics: saved and loaded, never regularized or optimized.
    Buffer,
}

/// One tensor of a network.
#[derive(Clone, Debug)]
pub struct ParamInfo {
    /// Checkpoint (torchvision) name, e.g. `layer1.0.bn1.weight`.
    pub name: String,
    /// burn's parameter id (gradients are looked up by it).
    pub id: ParamId,
    /// Shape in checkpoint layout (`[out, in]` for linear weights).
    pub shape: Vec<usize>,
    /// Parameter or buffer.
    pub kind: Kind,
    /// burn stores this tensor transposed relative to the checkpoint (linear weights).
    pub transposed: bool,
}

impl ParamInfo {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// A convolution or linear kernel (the tensors `--anchor weights` keeps).
    pub fn is_kernel(&self) -> bool {
        self.kind == Kind::Param && is_kernel(&self.name, &self.shape)
    }
}

/// A convolution or linear kernel by checkpoint name and shape (`--anchor weights` keeps these).
pub fn is_kernel(name: &str, shape: &[usize]) -> bool {
    shape.len() >= 2 && name.ends_with(".weight")
}

/// BatchNorm running statistics and counters, by checkpoint name: buffers, never regularized.
pub fn is_buffer_name(name: &str) -> bool {
    name.ends_with("running_mean")
        || name.ends_with("running_var")
        || name.ends_with("num_batches_tracked")
}

fn leaf_name(path: &[String]) -> (String, bool) {
    let mut parts: Vec<String> = Vec::with_capacity(path.len());
    for (i, p) in path.iter().enumerate() {
        if p == "layers" && i + 1 < path.len() {
            continue; // handled with the index below
        }
        if let Some(k) = p
            .parse::<usize>()
            .ok()
            .filter(|_| i > 0 && path[i - 1] == "layers")
        {
            parts.push(format!("fc{}", k + 1));
            continue;
        }
        parts.push(p.clone());
    }
    let mut is_buffer = false;
    if let Some(last) = parts.last_mut() {
        match last.as_str() {
            "gamma" => *last = "weight".into(),
            "beta" => *last = "bias".into(),
            "running_mean" | "running_var" => is_buffer = true,
            _ => {}
        }
    }
    (parts.join("."), is_buffer)
}

/// The current module path during a visit or map, as burn reports it through
/// `enter_module`/`exit_module` (enum variants skipped).
#[derive(Default)]
pub(crate) struct PathTracker {
    path: Vec<String>,
}

impl PathTracker {
    pub(crate) fn enter(&mut self, name: &str, container: &str) {
        if !container.starts_with("Enum:") {
            self.path.push(name.to_string());
        }
    }
    pub(crate) fn exit(&mut self, container: &str) {
        if !container.starts_with("Enum:") {
            self.path.pop();
        }
    }
    /// Checkpoint name of the tensor at the current path.
    pub(crate) fn name(&self) -> String {
        leaf_name(&self.path).0
    }
}

struct Collect<F: FnMut(ParamInfo, TensorData)> {
    tracker: PathTracker,
    with_data: bool,
    sink: F,
}

impl<F: FnMut(ParamInfo, TensorData)> ModuleVisitor for Collect<F> {
    fn enter_module(&mut self, name: &str, container: &str) {
        self.tracker.enter(name, container);
    }
    fn exit_module(&mut self, _name: &str, container: &str) {
        self.tracker.exit(container);
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let (name, is_buffer) = leaf_name(&self.tracker.path);
        let t = param.val();
        let transposed = D == 2 && name.ends_with(".weight");
        let t = if transposed { t.transpose() } else { t };
        let shape = t.dims().to_vec();
        let data = if self.with_data {
            t.into_data()
        } else {
            TensorData::new(Vec::<f32>::new(), [0])
        };
        let info = ParamInfo {
            name,
            id: param.id,
            shape,
            kind: if is_buffer { Kind::Buffer } else { Kind::Param },
            transposed,
        };
        (self.sink)(info, data);
    }
}

/// Every tensor of the network (parameters and buffers), in module order. `net` is a
/// [`Net`](crate::models::Net)
/// or any other module (a segmentation network).
pub fn table<M: Module>(net: &M) -> Vec<ParamInfo> {
    let mut out = Vec::new();
    let mut v = Collect {
        tracker: PathTracker::default(),
        with_data: false,
        sink: |i, _| out.push(i),
    };
    net.visit(&mut v);
    out
}

/// Every tensor with its values in checkpoint layout (f32, row-major).
pub fn values<M: Module>(net: &M) -> Vec<(ParamInfo, Vec<f32>)> {
    let mut out = Vec::new();
    let mut v = Collect {
        tracker: PathTracker::default(),
        with_data: true,
        sink: |i, d: TensorData| {
            let vals = d
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32 tensor data");
            out.push((i, vals))
        },
    };
    net.visit(&mut v);
    out
}

struct Assign<'a> {
    tracker: PathTracker,
    values: &'a HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl ModuleMapper for Assign<'_> {
    fn enter_module(&mut self, name: &str, container: &str) {
        self.tracker.enter(name, container);
    }
    fn exit_module(&mut self, _name: &str, container: &str) {
        self.tracker.exit(container);
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (name, _) = leaf_name(&self.tracker.path);
        let Some((shape, vals)) = self.values.get(&name) else {
            return param;
        };
        let (id, tensor, mapper) = param.consume();
        let device = tensor.device();
        let require_grad = tensor.is_require_grad();
        let data = TensorData::new(vals.clone(), shape.clone());
        let mut t = Tensor::<D>::from_data(data, &device);
        if D == 2 && name.ends_with(".weight") {
            t = t.transpose();
        }
        let t = t.set_require_grad(require_grad);
        Param::from_mapped_value(id, t, mapper)
    }
}

/// Replaces the tensors named in `values` (checkpoint layout; shapes must already be checked
/// against [`table`]) and keeps all others.
pub fn assign<M: Module>(net: M, values: &HashMap<String, (Vec<usize>, Vec<f32>)>) -> M {
    let mut m = Assign {
        tracker: PathTracker::default(),
        values,
    };
    net.map(&mut m)
}

#[cfg(test)]
mod tests {
    use super::leaf_name;

    fn p(s: &str) -> Vec<String> {
        s.split('.').map(String::from).collect()
    }

    #[test]
    fn renames_follow_torchvision() {
        assert_eq!(leaf_name(&p("layer1.0.bn1.gamma")).0, "layer1.0.bn1.weight");
        assert_eq!(leaf_name(&p("bn1.beta")).0, "bn1.bias");
        assert_eq!(
            leaf_name(&p("layer2.0.downsample.1.running_var")),
            ("layer2.0.downsample.1.running_var".into(), true)
        );
        assert_eq!(leaf_name(&p("layers.0.weight")).0, "fc1.weight");
        assert_eq!(leaf_name(&p("layers.2.bias")).0, "fc3.bias");
    }
}
