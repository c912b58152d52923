//! Elementwise kernels on the CPU: ReLU6 and its gradient, over rayon's threads.

use rayon::prelude::*;

use super::simd::simd;

/// Elements per task.
const BLOCK: usize = 1 << 14;

/// `min(max(x, 0), 6)`.
pub fn relu6(x: &[f32]) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(BLOCK)
        .zip(x.par_chunks(BLOCK))
        .for_each(|(y, x)| {
            simd(
                #[inline(always)]
                || {
                    for (y, x) in y.iter_mut().zip(x) {
                        *y = x.clamp(0.0, 6.0);
                    }
                },
            )
        });
    y
}

/// [`relu6`] in place: what evaluation takes when the input is not kept (no autodiff), with
/// no new buffer to allocate and fill.
pub fn relu6_in_place(x: &mut [f32]) {
    x.par_chunks_mut(BLOCK).for_each(|x| {
        simd(
            #[inline(always)]
            || {
                for v in x.iter_mut() {
                    *v = v.clamp(0.0, 6.0);
                }
            },
        )
    });
}

/// The gradient of [`relu6`] at `x` given the output's `gy`: `gy` where `0 < x < 6`, else 0
/// (PyTorch's `hardtanh_backward` convention at the kinks).
pub fn relu6_grad(x: &[f32], gy: &[f32]) -> Vec<f32> {
    let mut gx = vec![0f32; x.len()];
    gx.par_chunks_mut(BLOCK)
        .zip(x.par_chunks(BLOCK).zip(gy.par_chunks(BLOCK)))
        .for_each(|(gx, (x, gy))| {
            simd(
                #[inline(always)]
                || {
                    for ((gx, x), gy) in gx.iter_mut().zip(x).zip(gy) {
                        *gx = if *x > 0.0 && *x < 6.0 { *gy } else { 0.0 };
                    }
                },
            )
        });
    gx
}
