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
//! tensors present in the starting point `w0` with the same shape and `S̄` the rest (the new
//! head): [`starting_point`] decides the split, [`penalty`] adds the penalty's gradient to each
//! parameter's gradient before the optimizer's momentum (PyTorch's weight-decay semantics), so
//! no autodiff graph is built for the penalty.

pub mod gl_sp;
pub mod gl_sp_fisher;
pub mod l1_sp;
pub mod l2;
pub mod l2_sp;
pub mod l2_sp_fisher;
pub mod penalty;
pub mod starting_point;

pub use penalty::{Penalties, Penalty, PenaltyConfig};
pub use starting_point::{FisherScaling, Part, StartingPoint};

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::util::Choice;

/// Which penalty is applied to the shared part `S`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
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

/// What a scheme pulls one tensor toward, in group view `[g, p]`: `w0` and, for the Fisher
/// schemes, the scaled Fisher weights.
#[derive(Clone, Debug)]
pub struct Pull {
    /// The starting point `w0`.
    pub w0: Tensor<2>,
    /// The Fisher weights `F` (the Fisher schemes only).
    pub fisher: Option<Tensor<2>>,
}

impl Pull {
    /// A pull toward `w0` without Fisher weights.
    pub fn new(w0: Tensor<2>) -> Self {
        Pull { w0, fisher: None }
    }

    fn fisher(&self) -> Tensor<2> {
        self.fisher
            .clone()
            .expect("a Fisher scheme's reference carries Fisher weights (checked by Penalty::new)")
    }
}

impl Choice for Scheme {
    const ALL: &'static [Scheme] = &[
        Scheme::None,
        Scheme::L2,
        Scheme::L2Sp,
        Scheme::L1Sp,
        Scheme::GlSp,
        Scheme::L2SpFisher,
        Scheme::GlSpFisher,
    ];

    fn name(self) -> &'static str {
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
}

impl Scheme {
    /// Whether the scheme needs the starting point `w0`.
    pub fn needs_starting_point(self) -> bool {
        !matches!(self, Scheme::None | Scheme::L2)
    }

    /// Whether the scheme needs Fisher weights (`--fisher`).
    pub fn needs_fisher(self) -> bool {
        matches!(self, Scheme::L2SpFisher | Scheme::GlSpFisher)
    }

    /// The gradient alone (α = 1), what a training step needs: no reduction for the value.
    pub fn grad(self, w: Tensor<2>, r: &Pull) -> Tensor<2> {
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
    /// `r` holds `w0` (and `F`) in the same view (ignored by `None` and `L2`).
    pub fn value_and_grad(self, w: Tensor<2>, r: &Pull) -> (Tensor<1>, Tensor<2>) {
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
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum FisherNormalize {
    /// Raw `F`.
    None,
    /// `F / mean_S(F)`: mean 1 over the regularized tensors, so α is on L2-SP's scale.
    #[default]
    Mean,
}

impl Choice for FisherNormalize {
    const ALL: &'static [Self] = &[FisherNormalize::None, FisherNormalize::Mean];
    fn name(self) -> &'static str {
        match self {
            FisherNormalize::None => "none",
            FisherNormalize::Mean => "mean",
        }
    }
}

/// Which tensors of `S` the scheme regularizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Anchor {
    /// Every parameter of `S` (tllib's choice).
    #[default]
    All,
    /// Only convolution and linear kernels (the authors' code); BatchNorm affine parameters
    /// and biases are left free.
    Weights,
}

impl Choice for Anchor {
    const ALL: &'static [Self] = &[Anchor::All, Anchor::Weights];
    fn name(self) -> &'static str {
        match self {
            Anchor::All => "all",
            Anchor::Weights => "weights",
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
