//! Parameter regularizers: weight decay (L2) and the starting-point (-SP) schemes.
//!
//! One file per scheme, each with its formula. Every scheme works on a tensor's *group view*
//! `[g, p]`: dim 0 of the checkpoint (torchvision) layout is the group (a conv kernel
//! `[out, in, kh, kw]` gives one group of `in·kh·kw` per output channel; a linear weight
//! `[out, in]` one group per output; a 1-D tensor one group per element). L2, L2-SP, L1-SP and
//! L2-SP-Fisher are elementwise, so the view changes nothing for them; the group schemes need
//! it. The Fisher schemes weight each parameter by the source model's diagonal Fisher
//! information ([`crate::fisher`]), given in the same view.
//!
//! Training minimizes `task loss + α·scheme(S) + β·½‖w_S̄‖²` where `S` is the set of parameter
//! tensors present in the reference `w0` with the same shape and `S̄` the rest (the new head).
//! The optimizer ([`crate::train::optim`]) adds the penalty's gradient to each parameter's
//! gradient before momentum (PyTorch's weight-decay semantics), so no autodiff graph is built
//! for the penalty.

pub mod gl_sp;
pub mod gl_sp_fisher;
pub mod l1_sp;
pub mod l2;
pub mod l2_sp;
pub mod l2_sp_fisher;

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Which penalty is applied to the shared part `S`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// No penalty on `S` (β still applies to the new head).
    None,
    /// Weight decay toward 0: `½‖w‖²` (the baseline that forgets).
    #[default]
    L2,
    /// `½‖w − w0‖²`.
    L2Sp,
    /// `‖w − w0‖₁`.
    L1Sp,
    /// `Σ_g √p_g ‖w_g − w0_g‖₂`.
    GlSp,
    /// `½ Σ_j F_j (w_j − w0_j)²`.
    L2SpFisher,
    /// `Σ_g √p_g (Σ_{j∈g} F_j (w_j − w0_j)²)^½`.
    GlSpFisher,
}

/// What a scheme pulls toward, for one tensor in group view `[g, p]`.
#[derive(Clone, Debug)]
pub struct Reference {
    /// The starting point `w0`.
    pub w0: Tensor<2>,
    /// The Fisher weights `F` (the Fisher schemes only).
    pub fisher: Option<Tensor<2>>,
}

impl Reference {
    /// A reference without Fisher weights.
    pub fn new(w0: Tensor<2>) -> Self {
        Reference { w0, fisher: None }
    }

    fn fisher(&self) -> Tensor<2> {
        self.fisher
            .clone()
            .expect("a Fisher scheme's reference carries Fisher weights (checked by Sgd::new)")
    }
}

impl Scheme {
    /// All schemes, for tests and tables.
    pub const ALL: [Scheme; 7] = [
        Scheme::None,
        Scheme::L2,
        Scheme::L2Sp,
        Scheme::L1Sp,
        Scheme::GlSp,
        Scheme::L2SpFisher,
        Scheme::GlSpFisher,
    ];

    /// CLI spelling.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::None => "none",
            Scheme::L2 => "l2",
            Scheme::L2Sp => "l2-sp",
            Scheme::L1Sp => "l1-sp",
            Scheme::GlSp => "gl-sp",
            Scheme::L2SpFisher => "l2-sp-fisher",
            Scheme::GlSpFisher => "gl-sp-fisher",
        }
    }

    /// Parses the CLI spelling.
    pub fn parse(s: &str) -> Result<Self> {
        Scheme::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "--reg",
                    format!(
                        "unknown scheme {s:?}; known: none, l2, l2-sp, l1-sp, gl-sp, \
                         l2-sp-fisher, gl-sp-fisher"
                    ),
                )
            })
    }

    /// Whether the scheme needs the starting point `w0`.
    pub fn needs_reference(self) -> bool {
        !matches!(self, Scheme::None | Scheme::L2)
    }

    /// Whether the scheme needs Fisher weights (`--fisher`).
    pub fn needs_fisher(self) -> bool {
        matches!(self, Scheme::L2SpFisher | Scheme::GlSpFisher)
    }

    /// The gradient alone (α = 1), what a training step needs: no reduction for the value.
    pub fn grad(self, w: Tensor<2>, r: &Reference) -> Tensor<2> {
        let w0 = || r.w0.clone();
        match self {
            Scheme::None => w.zeros_like(),
            Scheme::L2 => l2::grad(w),
            Scheme::L2Sp => l2_sp::grad(w, w0()),
            Scheme::L1Sp => l1_sp::grad(w, w0()),
            Scheme::GlSp => gl_sp::grad(w, w0()),
            Scheme::L2SpFisher => l2_sp_fisher::grad(w, w0(), r.fisher()),
            Scheme::GlSpFisher => gl_sp_fisher::grad(w, w0(), r.fisher()),
        }
    }

    /// Penalty value (α = 1) and its gradient for one tensor in group view `[g, p]`.
    /// `r` holds the reference in the same view (ignored by `None` and `L2`).
    pub fn value_and_grad(self, w: Tensor<2>, r: &Reference) -> (Tensor<1>, Tensor<2>) {
        let w0 = || r.w0.clone();
        match self {
            Scheme::None => (w.clone().sum().mul_scalar(0.0), w.zeros_like()),
            Scheme::L2 => l2::value_and_grad(w),
            Scheme::L2Sp => l2_sp::value_and_grad(w, w0()),
            Scheme::L1Sp => l1_sp::value_and_grad(w, w0()),
            Scheme::GlSp => gl_sp::value_and_grad(w, w0()),
            Scheme::L2SpFisher => l2_sp_fisher::value_and_grad(w, w0(), r.fisher()),
            Scheme::GlSpFisher => gl_sp_fisher::value_and_grad(w, w0(), r.fisher()),
        }
    }
}

/// How Fisher weights are scaled before use (`--fisher-normalize`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FisherNormalize {
    /// Raw `F`.
    None,
    /// `F / mean_S(F)`: mean 1 over the regularized tensors, so α is on L2-SP's scale.
    #[default]
    Mean,
}

impl FisherNormalize {
    /// Parses `none` / `mean`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(FisherNormalize::None),
            "mean" => Ok(FisherNormalize::Mean),
            _ => Err(Error::invalid(
                "--fisher-normalize",
                format!("{s:?}; expected none or mean"),
            )),
        }
    }
}

/// Which tensors of `S` the scheme regularizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Anchor {
    /// Every parameter of `S` (tllib's choice).
    #[default]
    All,
    /// Only convolution and linear kernels (the authors' code); BatchNorm affine parameters
    /// and biases are left free.
    Weights,
}

impl Anchor {
    /// Parses `all` / `weights`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "all" => Ok(Anchor::All),
            "weights" => Ok(Anchor::Weights),
            _ => Err(Error::invalid(
                "--anchor",
                format!("{s:?}; expected all or weights"),
            )),
        }
    }
}

/// Reshapes a tensor (burn layout) into its group view `[g, p]` in checkpoint layout.
/// `transposed` marks linear weights, which burn stores as `[in, out]`.
pub fn group_view<const D: usize>(t: Tensor<D>, transposed: bool) -> Tensor<2> {
    let t = if transposed { t.transpose() } else { t };
    let dims = t.dims();
    let g = dims[0];
    let p: usize = dims[1..].iter().product();
    t.reshape([g, p.max(1)])
}

/// Inverse of [`group_view`]: back to the burn shape `shape`.
pub fn from_group_view<const D: usize>(
    v: Tensor<2>,
    shape: [usize; D],
    transposed: bool,
) -> Tensor<D> {
    if transposed {
        let mut s = shape;
        s.swap(D - 2, D - 1);
        v.reshape(s).transpose()
    } else {
        v.reshape(shape)
    }
}

/// A checkpoint-layout tensor (`shape`, row-major `vals`) as its group view `[g, p]`.
pub fn group_tensor(shape: &[usize], vals: Vec<f32>, device: &Device) -> Tensor<2> {
    let g = shape.first().copied().unwrap_or(1).max(1);
    let p = (vals.len() / g).max(1);
    Tensor::<2>::from_data(TensorData::new(vals, [g, p]), device)
}
