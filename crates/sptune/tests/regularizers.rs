//! Every scheme's value against an independent f64 closed form, and its gradient against
//! central finite differences of that closed form, away from, at, and near the reference.
//!
//! Expected numbers are not copied from the code: the closed forms below are written from the
//! formulas in DEVELOPERS.md (L2: ½Σw², L2-SP: ½Σ(w−w0)², L1-SP: Σ|w−w0|, GL-SP:
//! Σ_g √p_g ‖w_g − w0_g‖ over rows of the [g, p] group view, L2-SP-Fisher: ½ΣF(w−w0)²,
//! GL-SP-Fisher: Σ_g √p_g (Σ_{j∈g} F_j (w_j − w0_j)²)^½).

use burn::tensor::{Device, Tensor, TensorData};
use sptune::Choice;
use sptune::regularizer::{Pull, Scheme, from_group_view, group_view};

fn closed_form(s: Scheme, w: &[f64], w0: &[f64], f: &[f64], g: usize) -> f64 {
    let p = w.len() / g;
    let group = |r: usize, weight: &dyn Fn(usize) -> f64| {
        let n: f64 = (0..p)
            .map(|j| weight(r * p + j) * (w[r * p + j] - w0[r * p + j]).powi(2))
            .sum();
        (p as f64).sqrt() * n.sqrt()
    };
    match s {
        Scheme::None => 0.0,
        Scheme::L2 => 0.5 * w.iter().map(|x| x * x).sum::<f64>(),
        Scheme::L2Sp => 0.5 * w.iter().zip(w0).map(|(a, b)| (a - b).powi(2)).sum::<f64>(),
        Scheme::L1Sp => w.iter().zip(w0).map(|(a, b)| (a - b).abs()).sum(),
        Scheme::GlSp => (0..g).map(|r| group(r, &|_| 1.0)).sum(),
        Scheme::L2SpFisher => {
            0.5 * (0..w.len())
                .map(|j| f[j] * (w[j] - w0[j]).powi(2))
                .sum::<f64>()
        }
        Scheme::GlSpFisher => (0..g).map(|r| group(r, &|j| f[j])).sum(),
    }
}

fn tensor(v: &[f64], g: usize, dev: &Device) -> Tensor<2> {
    let f: Vec<f32> = v.iter().map(|x| *x as f32).collect();
    Tensor::from_data(TensorData::new(f, [g, v.len() / g]), dev)
}

fn run(s: Scheme, w: &[f64], w0: &[f64], f: &[f64], g: usize) -> (f64, Vec<f64>) {
    let dev = Device::flex();
    let r = Pull {
        w0: tensor(w0, g, &dev),
        fisher: Some(tensor(f, g, &dev)),
    };
    let (v, gr) = s.value_and_grad(tensor(w, g, &dev), &r);
    let gr: Vec<f32> = gr.into_data().convert::<f32>().try_into_vec().unwrap();
    // the gradient-only path (what training steps use) must agree exactly
    let g_only: Vec<f32> = s
        .grad(tensor(w, g, &dev), &r)
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .unwrap();
    assert_eq!(g_only, gr, "{s:?}: grad() differs from value_and_grad()");
    (
        v.into_scalar::<f32>() as f64,
        gr.into_iter().map(f64::from).collect(),
    )
}

/// Deterministic pseudo-random values in [-1, 1] (a fixed LCG; any values would do).
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .map(|v| (v as f32) as f64) // representable in f32, like the tensors
        .collect()
}

/// Fisher weights in [0.1, 2.1] (representable in f32).
fn fisher(n: usize, seed: u64) -> Vec<f64> {
    values(n, seed).into_iter().map(|v| v + 1.1).collect()
}

fn check(s: Scheme, w: &[f64], w0: &[f64], f: &[f64], g: usize, skip_fd: &dyn Fn(usize) -> bool) {
    let (val, grad) = run(s, w, w0, f, g);
    let want = closed_form(s, w, w0, f, g);
    assert!(
        (val - want).abs() <= 1e-5 * want.abs().max(1.0),
        "{s:?}: value {val} vs closed form {want}"
    );
    let h = 1e-6;
    for i in 0..w.len() {
        if skip_fd(i) {
            continue;
        }
        let (mut a, mut b) = (w.to_vec(), w.to_vec());
        a[i] += h;
        b[i] -= h;
        let fd = (closed_form(s, &a, w0, f, g) - closed_form(s, &b, w0, f, g)) / (2.0 * h);
        assert!(
            (grad[i] - fd).abs() <= 1e-4 * fd.abs().max(1.0),
            "{s:?}: d/dw[{i}] = {} but finite differences give {fd}",
            grad[i]
        );
    }
}

#[test]
fn value_and_gradient_match_closed_form_and_finite_differences() {
    let (g, p) = (6, 5);
    let w = values(g * p, 1);
    let w0 = values(g * p, 2);
    let f = fisher(g * p, 9);
    for &s in Scheme::ALL {
        check(s, &w, &w0, &f, g, &|_| false);
    }
}

/// With F = 1 the Fisher schemes are L2-SP and GL-SP.
#[test]
fn fisher_schemes_with_unit_weights_are_the_plain_ones() {
    let (g, p) = (3, 4);
    let (w, w0, ones) = (values(g * p, 5), values(g * p, 6), vec![1.0; g * p]);
    for (a, b) in [
        (Scheme::L2SpFisher, Scheme::L2Sp),
        (Scheme::GlSpFisher, Scheme::GlSp),
    ] {
        let (va, ga) = run(a, &w, &w0, &ones, g);
        let (vb, gb) = run(b, &w, &w0, &ones, g);
        assert!((va - vb).abs() <= 1e-6 * vb.abs(), "{a:?}: {va} vs {vb}");
        for (x, y) in ga.iter().zip(&gb) {
            assert!((x - y).abs() <= 1e-6, "{a:?}: gradient {x} vs {y}");
        }
    }
}

#[test]
fn gl_sp_fisher_at_the_reference_and_with_zero_weights() {
    let (g, p) = (3, 4);
    let w0 = values(g * p, 7);
    let mut w = values(g * p, 8);
    let mut f = fisher(g * p, 10);
    w[..p].copy_from_slice(&w0[..p]); // group 0 at w0
    f[p..2 * p].iter_mut().for_each(|x| *x = 0.0); // group 1 has zero Fisher weight
    f[2 * p] = 0.0; // one zero weight inside group 2
    let (_, grad) = run(Scheme::GlSpFisher, &w, &w0, &f, g);
    assert!(
        grad[..2 * p].iter().all(|x| *x == 0.0),
        "{:?}",
        &grad[..2 * p]
    );
    assert_eq!(grad[2 * p], 0.0, "a zero-weight parameter gets no pull");
    check(Scheme::GlSpFisher, &w, &w0, &f, g, &|i| i < 2 * p);
    check(Scheme::L2SpFisher, &w, &w0, &f, g, &|_| false);
}

#[test]
fn l1_sp_at_and_near_the_reference() {
    let (g, p) = (4, 3);
    let w0 = values(g * p, 3);
    let mut w = w0.clone();
    // element 0 and 5 exactly at w0 (subgradient 0), elements 1, 2 at ±1e-3 (FD step 1e-6
    // stays on one side of the kink), the rest far away
    w[1] += 1e-3;
    w[2] -= 1e-3;
    for (i, x) in w.iter_mut().enumerate().skip(6) {
        *x += 0.1 * (i as f64 - 8.5);
    }
    let w: Vec<f64> = w.iter().map(|x| (*x as f32) as f64).collect();
    let (_, grad) = run(Scheme::L1Sp, &w, &w0, &w0, g);
    assert_eq!(grad[0], 0.0, "sign at w = w0 must be 0");
    assert_eq!(grad[5], 0.0, "sign at w = w0 must be 0");
    assert_eq!(grad[1], 1.0);
    assert_eq!(grad[2], -1.0);
    check(Scheme::L1Sp, &w, &w0, &w0, g, &|i| {
        i == 0 || i == 3 || i == 4 || i == 5
    });
}

#[test]
fn gl_sp_at_and_near_the_reference() {
    let (g, p) = (4, 3);
    let w0 = values(g * p, 4);
    let mut w = w0.clone();
    // group 0 exactly at w0 (gradient 0); group 1 at distance ~1e-3 (smooth there);
    // groups 2, 3 far away
    w[3] += 1e-3;
    w[4] -= 5e-4;
    for (i, x) in w.iter_mut().enumerate().skip(6) {
        *x += 0.05 * i as f64;
    }
    let w: Vec<f64> = w.iter().map(|x| (*x as f32) as f64).collect();
    let (_, grad) = run(Scheme::GlSp, &w, &w0, &w0, g);
    assert!(
        grad[..3].iter().all(|x| *x == 0.0),
        "group at w0 must get 0, got {:?}",
        &grad[..3]
    );
    // near w0 the gradient has norm √p in the group (unit direction times √p)
    let n: f64 = grad[3..6].iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!(
        (n - (p as f64).sqrt()).abs() < 1e-3,
        "group-1 gradient norm {n}"
    );
    check(Scheme::GlSp, &w, &w0, &w0, g, &|i| i < 3);
}

#[test]
fn group_view_puts_output_channels_in_rows() {
    let dev = Device::flex();
    // conv kernel [out=2, in=3, 2, 2]: group r = all 12 weights of output channel r
    let vals: Vec<f32> = (0..24).map(|x| x as f32).collect();
    let t = Tensor::<4>::from_data(TensorData::new(vals.clone(), [2, 3, 2, 2]), &dev);
    let v = group_view(t.clone(), false);
    assert_eq!(v.dims(), [2, 12]);
    let row1: Vec<f32> = v
        .clone()
        .slice([1..2, 0..12])
        .into_data()
        .try_into_vec()
        .unwrap();
    assert_eq!(row1, (12..24).map(|x| x as f32).collect::<Vec<_>>());
    let back: Tensor<4> = from_group_view(v, [2, 3, 2, 2], false);
    assert_eq!(back.into_data().try_into_vec::<f32>().unwrap(), vals);
    // burn linear weight [in=3, out=2]: torch layout [out, in]; group r = column r of burn's
    let lin = Tensor::<2>::from_data(
        TensorData::new(vec![1f32, 2., 3., 4., 5., 6.], [3, 2]),
        &dev,
    );
    let v = group_view(lin, true);
    assert_eq!(v.dims(), [2, 3]);
    assert_eq!(
        v.clone().into_data().try_into_vec::<f32>().unwrap(),
        vec![1., 3., 5., 2., 4., 6.]
    );
    let back: Tensor<2> = from_group_view(v, [3, 2], true);
    assert_eq!(
        back.into_data().try_into_vec::<f32>().unwrap(),
        vec![1., 2., 3., 4., 5., 6.]
    );
}
