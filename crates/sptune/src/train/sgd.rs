//! SGD with momentum, PyTorch semantics: `b ← μb + g` (`b ← g` on the first step, dampening
//! 0), `w ← w − lr·b`.
//!
//! burn's own `MomentumConfig` defaults to dampening 0.1, which is why sptune has its own. The
//! regularizer's gradient is added to `g` before momentum, as PyTorch adds weight decay:
//! either already in `g` ([`crate::regularizer::Penalty::apply`], then [`Sgd::step`]) or, with
//! [`Sgd::step_penalized`], inside the update: on the CPU one pass over each tensor reads `g`,
//! `w`, `b` (and `w0`, `F`) and writes `b` and `w`, where burn's elementwise ops take three or
//! four passes for the penalty and four for the update. The fused pass does the same float
//! operations in the same order (each scheme's `grad_at`), so the two give the same bits;
//! tensors it cannot take (other devices, linear weights stored transposed) go through burn's
//! ops. Parameters without a gradient (frozen ones, buffers) are left as they are.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

use crate::kernels::host::Host;
use crate::regularizer::penalty::Term;
use crate::regularizer::{Penalty, Scheme, from_group_view, gl_sp, gl_sp_fisher, group_view};
use crate::regularizer::{l1_sp, l2, l2_sp, l2_sp_fisher};

thread_local! {
    static FUSED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many tensors this thread's updates have run through the fused CPU pass so far (the
/// rest went through burn's ops): for tests and benchmarks that must know which path ran.
pub fn fused_updates() -> usize {
    FUSED.get()
}

/// The optimizer state: one momentum buffer per parameter.
pub struct Sgd {
    momentum: f64,
    buffers: HashMap<ParamId, Tensor<2>>,
    scaled: std::collections::HashSet<ParamId>,
    lr_mult: f64,
}

impl Sgd {
    /// SGD with momentum `momentum` (0.9 in the paper; 0 = plain SGD).
    pub fn new(momentum: f64) -> Self {
        Sgd {
            momentum,
            buffers: HashMap::new(),
            scaled: Default::default(),
            lr_mult: 1.0,
        }
    }

    /// Scales the learning rate of the parameters `ids` by `mult` (the backbone at 0.1x).
    pub fn with_scaled_lr(mut self, ids: std::collections::HashSet<ParamId>, mult: f64) -> Self {
        self.scaled = ids;
        self.lr_mult = mult;
        self
    }

    /// The momentum buffers by parameter name (`names`: id -> checkpoint name), in the
    /// optimizer's layout, for the resume state ([`super::resume`]).
    pub fn export(&self, names: &HashMap<ParamId, String>) -> super::resume::Tensors {
        self.buffers
            .iter()
            .filter_map(|(id, b)| {
                let name = names.get(id)?;
                let vals = b
                    .clone()
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .expect("f32 momentum");
                Some((name.clone(), (b.dims().to_vec(), vals)))
            })
            .collect()
    }

    /// Restores buffers written by [`Sgd::export`] onto `device` (the non-autodiff device);
    /// an unknown name or a wrong size is an error.
    pub fn import(
        &mut self,
        names: &HashMap<ParamId, String>,
        buffers: &super::resume::Tensors,
        device: &Device,
    ) -> crate::Result<()> {
        let ids: HashMap<&str, ParamId> = names.iter().map(|(i, n)| (n.as_str(), *i)).collect();
        for (name, (shape, vals)) in buffers {
            let id = ids.get(name.as_str()).ok_or_else(|| {
                crate::Error::Other(format!(
                    "resume state: momentum of '{name}', a parameter this network lacks"
                ))
            })?;
            if shape.len() != 2 || shape.iter().product::<usize>() != vals.len() {
                return Err(crate::Error::Other(format!(
                    "resume state: momentum of '{name}' has shape {shape:?} and {} values",
                    vals.len()
                )));
            }
            let t = Tensor::<2>::from_data(TensorData::new(vals.clone(), shape.clone()), device);
            self.buffers.insert(*id, t);
        }
        Ok(())
    }

    /// One update of every parameter that has a gradient in `grads`, learning rate `lr`
    /// (`net`: a [`Net`](crate::models::Net) or any other module, a segmentation network).
    pub fn step<M: Module>(&mut self, lr: f64, net: M, grads: GradientsParams) -> M {
        let mut m = Step {
            opt: self,
            grads,
            lr,
            penalty: None,
        };
        net.map(&mut m)
    }

    /// [`Sgd::step`] with `penalty`'s gradient added to each task gradient inside the update
    /// (the same arithmetic as [`Penalty::apply`] then [`Sgd::step`], in one pass per tensor
    /// on the CPU).
    pub fn step_penalized<M: Module>(
        &mut self,
        lr: f64,
        net: M,
        grads: GradientsParams,
        penalty: &Penalty,
    ) -> M {
        let mut m = Step {
            opt: self,
            grads,
            lr,
            penalty: Some(penalty),
        };
        net.map(&mut m)
    }
}

struct Step<'a> {
    opt: &'a mut Sgd,
    grads: GradientsParams,
    lr: f64,
    penalty: Option<&'a Penalty>,
}

impl Step<'_> {
    /// The fused update of one tensor (group view `[g, p]`) on the CPU: the new `w`, or the
    /// inputs back when a tensor is not a plain CPU slice.
    #[allow(clippy::result_large_err)] // the tensors back by value, as burn passes tensors
    fn fused(
        &mut self,
        id: ParamId,
        w: Tensor<2>,
        g: Tensor<2>,
        lr: f64,
    ) -> Result<Tensor<2>, (Tensor<2>, Tensor<2>)> {
        let term = match self.penalty.map(|p| p.term(id)) {
            None => Term::Nothing,
            Some(Some(t)) => t,
            Some(None) => return Err((w, g)),
        };
        let mut wh = match Host::of(w) {
            Ok(h) => h,
            Err(w) => return Err((w, g)),
        };
        let mut gh = match Host::of(g) {
            Ok(h) => h,
            Err(g) => return Err((wh.into_tensor(), g)),
        };
        let momentum = self.opt.momentum != 0.0;
        let mut bh = match self.opt.buffers.remove(&id).map(Host::of) {
            None => None,
            Some(Ok(b)) => Some(b),
            Some(Err(b)) => {
                self.opt.buffers.insert(id, b);
                return Err((wh.into_tensor(), gh.into_tensor()));
            }
        };
        let n = wh.values().len();
        let sizes_match = gh.values().len() == n
            && bh.as_ref().is_none_or(|b| b.values().len() == n)
            && match &term {
                Term::Pull { w0, fisher, .. } => {
                    w0.values().len() == n && fisher.as_ref().is_none_or(|f| f.values().len() == n)
                }
                _ => true,
            };
        if !sizes_match {
            // not expected (the penalty checked the shapes); burn's ops say what is wrong
            if let Some(b) = bh {
                self.opt.buffers.insert(id, b.into_tensor());
            }
            return Err((wh.into_tensor(), gh.into_tensor()));
        }
        let groups = gh.rows().max(1);
        let u = Update {
            lr: lr as f32,
            mu: self.opt.momentum as f32,
            p: gh.values().len() / groups,
        };
        {
            let g = gh.values_mut();
            let b = bh.as_mut().map(|b| b.values_mut());
            let w = wh.values_mut();
            let p = w.len() / groups;
            match &term {
                Term::Nothing => u.run(w, b, g, Reads::default(), |_, _, _, _| 0.0),
                Term::Decay(c) => {
                    let c = *c;
                    u.run(w, b, g, Reads::default(), move |w, _, _, _| {
                        l2::grad_at(w) * c
                    })
                }
                Term::Pull {
                    scheme,
                    alpha,
                    w0,
                    fisher,
                } => {
                    let (w0, a) = (w0.values(), *alpha);
                    let f = fisher.as_ref().map(|f| f.values());
                    let reads = Reads {
                        w0: Some(w0),
                        f,
                        k: None,
                    };
                    match (scheme, f) {
                        (Scheme::L2Sp, _) => {
                            u.run(w, b, g, reads, move |w, w0, _, _| l2_sp::grad_at(w, w0) * a)
                        }
                        (Scheme::L1Sp, _) => {
                            u.run(w, b, g, reads, move |w, w0, _, _| l1_sp::grad_at(w, w0) * a)
                        }
                        (Scheme::L2SpFisher, Some(_)) => {
                            u.run(w, b, g, reads, move |w, w0, f, _| {
                                l2_sp_fisher::grad_at(w, w0, f) * a
                            })
                        }
                        (Scheme::GlSp, _) => {
                            let k = factors(w, w0, None, p);
                            let reads = Reads {
                                k: Some(&k),
                                ..reads
                            };
                            u.run(w, b, g, reads, move |w, w0, _, k| {
                                gl_sp::grad_at(w, w0, k) * a
                            })
                        }
                        (Scheme::GlSpFisher, Some(f)) => {
                            let k = factors(w, w0, Some(f), p);
                            let reads = Reads {
                                k: Some(&k),
                                ..reads
                            };
                            u.run(w, b, g, reads, move |w, w0, f, k| {
                                gl_sp_fisher::grad_at(w, w0, f, k) * a
                            })
                        }
                        _ => unreachable!(
                            "Penalty::term gives Pull to the -SP schemes only, with F for the Fisher ones"
                        ),
                    }
                }
            }
        }
        FUSED.set(FUSED.get() + 1);
        if momentum {
            // the first step's buffer is the gradient with the penalty, as `u.run` left it
            self.opt.buffers.insert(id, bh.unwrap_or(gh).into_tensor());
        }
        Ok(wh.into_tensor())
    }
}

/// Each group's factor `√p/‖d_g‖` of the group schemes (`d = w − w0`, `F`-weighted with
/// Fisher weights), from its `p` values (sums in 16 f32 lanes, totals in f64). BatchNorm's
/// `norm::sums` does the same over given slices; going through it needs `d` (and `F·d`)
/// written to a row first, which measured 1-2 ms slower per ResNet-18 update.
fn factors(w: &[f32], w0: &[f32], f: Option<&[f32]>, p: usize) -> Vec<f32> {
    use rayon::prelude::*;
    (0..w.len() / p)
        .into_par_iter()
        .map(|r| {
            let (wg, w0g) = (&w[r * p..(r + 1) * p], &w0[r * p..(r + 1) * p]);
            let s = crate::kernels::simd::simd(
                #[inline(always)]
                || {
                    let mut lanes = [0f32; 16];
                    let mut tail = 0f64;
                    let n = p / 16 * 16;
                    match f {
                        Some(f) => {
                            let fg = &f[r * p..(r + 1) * p];
                            for i in (0..n).step_by(16) {
                                for l in 0..16 {
                                    let d = wg[i + l] - w0g[i + l];
                                    lanes[l] += d * fg[i + l] * d;
                                }
                            }
                            for i in n..p {
                                let d = wg[i] - w0g[i];
                                tail += (d * fg[i] * d) as f64;
                            }
                        }
                        None => {
                            for i in (0..n).step_by(16) {
                                for l in 0..16 {
                                    let d = wg[i + l] - w0g[i + l];
                                    lanes[l] += d * d;
                                }
                            }
                            for i in n..p {
                                let d = wg[i] - w0g[i];
                                tail += (d * d) as f64;
                            }
                        }
                    }
                    let mut total = tail;
                    for v in lanes {
                        total += v as f64;
                    }
                    total
                },
            );
            gl_sp::group_factor(s, p)
        })
        .collect()
}

/// SGD's rule on slices, in group view rows of `p` values.
struct Update {
    lr: f32,
    mu: f32,
    p: usize,
}

/// What the penalty reads besides `w`: `w0`, `F` and each row's factor, where the scheme has
/// them.
#[derive(Clone, Copy, Default)]
struct Reads<'a> {
    w0: Option<&'a [f32]>,
    f: Option<&'a [f32]>,
    k: Option<&'a [f32]>,
}

impl Update {
    /// `g ← g + pen(w, w0, F, k)` per value (`k` its row's factor; absent inputs read as 0,
    /// from a small buffer that stays in cache, and ignored by `pen`), then `b ← μb + g` (`b`
    /// absent on the first step: `g` stays the buffer; μ = 0: no buffer) and `w ← w − lr·b`,
    /// in chunks of whole rows over rayon's threads. Plain zips, no indexing, so the loops
    /// vectorize.
    fn run(
        &self,
        w: &mut [f32],
        b: Option<&mut [f32]>,
        g: &mut [f32],
        reads: Reads<'_>,
        pen: impl Fn(f32, f32, f32, f32) -> f32 + Sync,
    ) {
        use rayon::prelude::*;
        let (lr, mu, p) = (self.lr, self.mu, self.p.max(1));
        let rows_per_chunk = (1usize << 14).div_ceil(p);
        let chunk = rows_per_chunk * p;
        let zeros = vec![0f32; chunk.min(w.len())];
        let n_chunks = w.len().div_ceil(chunk);
        let mut bs: Vec<Option<&mut [f32]>> = match b {
            Some(b) => b.chunks_mut(chunk).map(Some).collect(),
            None => (0..n_chunks).map(|_| None).collect(),
        };
        let pen = &pen;
        w.par_chunks_mut(chunk)
            .zip(g.par_chunks_mut(chunk))
            .zip(bs.par_iter_mut())
            .enumerate()
            .for_each(|(c, ((w, g), b))| {
                let (at, n) = (c * chunk, w.len());
                let w0 = reads.w0.map_or(&zeros[..n], |v| &v[at..at + n]);
                let f = reads.f.map_or(&zeros[..n], |v| &v[at..at + n]);
                let k = reads.k.map(|v| &v[c * rows_per_chunk..]);
                let rows = w.chunks_mut(p).zip(g.chunks_mut(p));
                let rows = rows.zip(w0.chunks(p).zip(f.chunks(p))).enumerate();
                match b {
                    Some(b) => crate::kernels::simd::simd(
                        #[inline(always)]
                        || {
                            for ((r, ((w, g), (w0, f))), b) in rows.zip(b.chunks_mut(p)) {
                                let kr = k.map_or(0.0, |k| k[r]);
                                let it = w.iter_mut().zip(g.iter()).zip(b.iter_mut());
                                for (((w, g), b), (w0, f)) in it.zip(w0.iter().zip(f)) {
                                    let gp = g + pen(*w, *w0, *f, kr);
                                    *b = *b * mu + gp;
                                    *w -= *b * lr;
                                }
                            }
                        },
                    ),
                    None => crate::kernels::simd::simd(
                        #[inline(always)]
                        || {
                            for (r, ((w, g), (w0, f))) in rows {
                                let kr = k.map_or(0.0, |k| k[r]);
                                let it = w.iter_mut().zip(g.iter_mut());
                                for ((w, g), (w0, f)) in it.zip(w0.iter().zip(f)) {
                                    *g += pen(*w, *w0, *f, kr);
                                    *w -= *g * lr;
                                }
                            }
                        },
                    ),
                }
            });
    }
}

impl ModuleMapper for Step<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(grad) = self.grads.remove::<D>(param.id) else {
            return param;
        };
        let (id, tensor, mapper) = param.consume();
        let dims = tensor.dims();
        // The update runs on the group view [g, p] in checkpoint orientation; 2-D parameters
        // are linear weights, which burn stores [in, out], updated as [out, in] (the memory
        // layout, and so the matmul rounding, of sptune's releases before the own kernels).
        let linear = D == 2;
        let lr = if self.opt.scaled.contains(&id) {
            self.lr * self.opt.lr_mult
        } else {
            self.lr
        };
        let w = group_view(tensor.inner(), linear);
        let g = group_view(grad, linear);
        let (w, mut g) = if linear {
            (w, g)
        } else {
            match self.fused(id, w, g, lr) {
                Ok(w) => {
                    let w = from_group_view(w, dims, linear);
                    return Param::from_mapped_value(
                        id,
                        Tensor::from_inner(w).require_grad(),
                        mapper,
                    );
                }
                Err(inputs) => inputs,
            }
        };
        if let Some(pg) = self.penalty.and_then(|p| p.grad_for(id, w.clone())) {
            g = g + pg;
        }
        let step = if self.opt.momentum != 0.0 {
            let b = match self.opt.buffers.remove(&id) {
                Some(b) => b.mul_scalar(self.opt.momentum) + g,
                None => g,
            };
            self.opt.buffers.insert(id, b.clone());
            b
        } else {
            g
        };
        let w = from_group_view(w - step.mul_scalar(lr), dims, linear);
        Param::from_mapped_value(id, Tensor::from_inner(w).require_grad(), mapper)
    }
}
