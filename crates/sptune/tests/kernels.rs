//! The own convolution kernels (`sptune::kernels`) against burn's reference `conv2d` on the
//! same device: forward output, input gradient and weight gradient of `sum(y · r)` for a
//! random `r`, on random shapes of every kind the models use (strided, padded, asymmetric
//! "SAME" padding, grouped, depthwise with and without a channel multiplier, 1x1, batch 1,
//! dilated), to 1e-4 relative (of the reference's largest magnitude).

use burn::tensor::module::conv2d as reference;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sptune::kernels::conv2d_with;

struct Case {
    x: [usize; 4],
    w: [usize; 4],
    stride: [usize; 2],
    dilation: [usize; 2],
    pad: [(usize, usize); 2],
    groups: usize,
    bias: bool,
}

fn max_rel(a: &Tensor<4>, b: &Tensor<4>) -> f32 {
    let a: Vec<f32> = a.clone().into_data().try_to_vec::<f32>().unwrap();
    let b: Vec<f32> = b.clone().into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs() / scale))
}

/// Normal(0, sd) values from a local generator (the device's generator is shared by the
/// tests running at the same time).
fn normal<const D: usize>(shape: [usize; D], sd: f32, rng: &mut ChaCha8Rng) -> Tensor<D> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| {
            // Box-Muller
            let (u1, u2): (f32, f32) = (rng.random_range(1e-7..1.0), rng.random());
            sd * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
        })
        .collect();
    Tensor::<D>::from_data(TensorData::new(v, shape), &Device::flex().autodiff())
}

/// Output, input gradient and weight gradient of one implementation.
fn run(c: &Case, own: bool, seed: u64) -> [Tensor<4>; 3] {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = normal(c.x, 1.0, &mut rng).require_grad();
    let w = normal(c.w, 0.5, &mut rng).require_grad();
    let b = c.bias.then(|| normal([c.w[0]], 1.0, &mut rng));
    let opts = ConvOptions::new_with_padding(c.stride, c.pad, c.dilation, c.groups);
    let y = if own {
        conv2d_with(x.clone(), w.clone(), b, opts)
    } else {
        reference(x.clone(), w.clone(), b, opts)
    };
    let r = normal(y.dims(), 1.0, &mut rng);
    let grads = (y.clone() * r).sum().backward();
    [
        y.inner(),
        x.grad(&grads).expect("x grad"),
        w.grad(&grads).expect("w grad"),
    ]
}

fn check(c: &Case, seed: u64) {
    let own = run(c, true, seed);
    let base = run(c, false, seed);
    for (name, (a, b)) in ["output", "input grad", "weight grad"]
        .iter()
        .zip(own.iter().zip(&base))
    {
        assert_eq!(a.dims(), b.dims(), "{name}");
        let e = max_rel(a, b);
        assert!(
            e < 1e-4,
            "{name}: {e:e} relative, x {:?} w {:?} stride {:?} dil {:?} pad {:?} groups {}",
            c.x,
            c.w,
            c.stride,
            c.dilation,
            c.pad,
            c.groups
        );
    }
}

#[test]
fn named_shapes_match_burn() {
    let cases = [
        // 3x3, stride 1, pad 1 (ResNet body), several images per chunk
        (
            [4, 8, 9, 9],
            [16, 8, 3, 3],
            [1, 1],
            [1, 1],
            [(1, 1), (1, 1)],
            1,
        ),
        // strided 3x3 (ResNet downsampling), batch 1
        (
            [1, 6, 10, 11],
            [5, 6, 3, 3],
            [2, 2],
            [1, 1],
            [(1, 1), (1, 1)],
            1,
        ),
        // 1x1 strided shortcut
        (
            [3, 8, 8, 8],
            [12, 8, 1, 1],
            [2, 2],
            [1, 1],
            [(0, 0), (0, 0)],
            1,
        ),
        // 7x7 stride 2 pad 3 stem
        (
            [2, 3, 16, 16],
            [8, 3, 7, 7],
            [2, 2],
            [1, 1],
            [(3, 3), (3, 3)],
            1,
        ),
        // asymmetric "SAME" of a stride-2 3x3 on an even size (EfficientNet)
        (
            [2, 4, 8, 8],
            [6, 4, 3, 3],
            [2, 2],
            [1, 1],
            [(0, 1), (0, 1)],
            1,
        ),
        // depthwise 3x3 and 5x5, stride 1 and 2, SAME
        (
            [2, 6, 9, 9],
            [6, 1, 3, 3],
            [1, 1],
            [1, 1],
            [(1, 1), (1, 1)],
            6,
        ),
        (
            [2, 6, 8, 8],
            [6, 1, 5, 5],
            [2, 2],
            [1, 1],
            [(1, 2), (1, 2)],
            6,
        ),
        // depthwise with channels in multiples of 16 on small planes (the channel-lane tile
        // path): 3x3 stride 1, 5x5 stride 2 with asymmetric SAME, batch 1
        (
            [2, 32, 7, 7],
            [32, 1, 3, 3],
            [1, 1],
            [1, 1],
            [(1, 1), (1, 1)],
            32,
        ),
        (
            [2, 32, 14, 14],
            [32, 1, 5, 5],
            [2, 2],
            [1, 1],
            [(1, 2), (1, 2)],
            32,
        ),
        (
            [1, 16, 14, 14],
            [16, 1, 5, 5],
            [1, 1],
            [1, 1],
            [(2, 2), (2, 2)],
            16,
        ),
        // depthwise on planes wider than the tile path takes: row kernels, stride 2 on an odd
        // width (column-parity split), stride 1
        (
            [2, 16, 41, 41],
            [16, 1, 3, 3],
            [2, 2],
            [1, 1],
            [(1, 1), (1, 1)],
            16,
        ),
        (
            [1, 16, 33, 33],
            [16, 1, 5, 5],
            [1, 1],
            [1, 1],
            [(2, 2), (2, 2)],
            16,
        ),
        // depthwise with a channel multiplier of 2
        (
            [2, 3, 7, 7],
            [6, 1, 3, 3],
            [1, 1],
            [1, 1],
            [(1, 1), (1, 1)],
            3,
        ),
        // a channel multiplier of 2 on 16 output channels: the weight gradient's tiles, one
        // input plane read by two lanes
        (
            [2, 8, 7, 7],
            [16, 1, 3, 3],
            [1, 1],
            [1, 1],
            [(1, 1), (1, 1)],
            8,
        ),
        // grouped, 2 input channels per group
        (
            [2, 8, 6, 6],
            [4, 2, 3, 3],
            [1, 1],
            [1, 1],
            [(1, 1), (1, 1)],
            4,
        ),
        // dilated
        (
            [2, 4, 9, 9],
            [5, 4, 3, 3],
            [1, 1],
            [2, 2],
            [(2, 2), (2, 2)],
            1,
        ),
        // a 5x5 kernel on a 1x1 / 2x2 input (EfficientNet's last blocks at 32 px): taps that
        // touch nothing but padding
        (
            [2, 4, 1, 1],
            [4, 1, 5, 5],
            [1, 1],
            [1, 1],
            [(2, 2), (2, 2)],
            4,
        ),
        (
            [2, 3, 2, 2],
            [4, 3, 5, 5],
            [2, 2],
            [1, 1],
            [(2, 2), (2, 2)],
            1,
        ),
        // no padding, kernel as large as the input
        (
            [3, 2, 5, 5],
            [4, 2, 5, 5],
            [1, 1],
            [1, 1],
            [(0, 0), (0, 0)],
            1,
        ),
    ];
    for (i, (x, w, stride, dilation, pad, groups)) in cases.into_iter().enumerate() {
        for bias in [false, true] {
            check(
                &Case {
                    x,
                    w,
                    stride,
                    dilation,
                    pad,
                    groups,
                    bias,
                },
                i as u64,
            );
        }
    }
}

#[test]
fn random_shapes_match_burn() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for i in 0..40 {
        let groups = [1, 1, 2, 3][rng.random_range(0..4)];
        let depthwise = rng.random_bool(0.3);
        let cin = groups * rng.random_range(1..4);
        let groups = if depthwise { cin } else { groups };
        let cout = groups * rng.random_range(1..4);
        let (kh, kw) = (rng.random_range(1..6), rng.random_range(1..6));
        let stride = [rng.random_range(1..4), rng.random_range(1..4)];
        let dilation = [rng.random_range(1..3), rng.random_range(1..3)];
        let pad = [
            (rng.random_range(0..3), rng.random_range(0..3)),
            (rng.random_range(0..3), rng.random_range(0..3)),
        ];
        let span = |k: usize, d: usize| d * (k - 1) + 1;
        let h = span(kh, dilation[0]) + rng.random_range(0..8);
        let w = span(kw, dilation[1]) + rng.random_range(0..8);
        let batch = rng.random_range(1..5);
        check(
            &Case {
                x: [batch, cin, h, w],
                w: [cout, cin / groups, kh, kw],
                stride,
                dilation,
                pad,
                groups,
                bias: rng.random_bool(0.5),
            },
            100 + i,
        );
    }
}

/// Images split into several chunks (a large unfolded size) give the same result as burn.
#[test]
fn chunked_batches_match_burn() {
    // 64 channels · 9 taps · 32·32 positions = 590k floats per image: 7 images per chunk
    check(
        &Case {
            x: [9, 64, 32, 32],
            w: [8, 64, 3, 3],
            stride: [1, 1],
            dilation: [1, 1],
            pad: [(1, 1), (1, 1)],
            groups: 1,
            bias: false,
        },
        5,
    );
}

/// 3x3 stride-1 convolutions with enough tiles run by Winograd's F(4x4, 3x3) transforms
/// (`kernels::winograd`): several chunks of images, odd sizes (partial tiles), channel counts
/// that are not a multiple of the 16 lanes, asymmetric and zero padding, padding wider than
/// the kernel's reach. Each case is asserted to take that path, so a changed threshold cannot
/// silently drop it from the test.
#[test]
fn winograd_shapes_match_burn() {
    let cases = [
        // 100 tiles per image, 460,800 transformed floats: chunks of 4 and 2 images
        ([6, 64, 40, 40], [64, 64, 3, 3], [(1, 1), (1, 1)]),
        // 13 x 12 output (partial tiles), 9 -> 10 channels, asymmetric padding
        ([24, 9, 13, 11], [10, 9, 3, 3], [(0, 2), (2, 1)]),
        // no padding
        ([16, 16, 18, 18], [24, 16, 3, 3], [(0, 0), (0, 0)]),
        // padding 2 on every side: outputs whose window lies half outside the image
        ([32, 17, 10, 9], [19, 17, 3, 3], [(2, 2), (2, 2)]),
    ];
    for (i, (x, w, pad)) in cases.into_iter().enumerate() {
        let conv = sptune::kernels::conv::Conv::new(x, w, [1, 1], [1, 1], pad, 1).unwrap();
        assert!(
            conv.uses_winograd(),
            "case {i} does not reach the transforms"
        );
        check(
            &Case {
                x,
                w,
                stride: [1, 1],
                dilation: [1, 1],
                pad,
                groups: 1,
                bias: i % 2 == 1,
            },
            300 + i as u64,
        );
    }
}

/// The own ReLU6 against burn's `clamp(0, 6)` (output and gradient) away from the kinks, and
/// PyTorch's convention at them (`hardtanh_backward` passes the gradient only where
/// `0 < x < 6` strictly: at exactly 0 and 6 it is 0).
#[test]
fn relu6_matches_clamp_and_torch_at_the_kinks() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let x0 = normal([2, 3, 40, 40], 4.0, &mut rng);
    let r = normal([2, 3, 40, 40], 1.0, &mut rng);
    let run = |own: bool| {
        let x = x0.clone().require_grad();
        let y = if own {
            sptune::kernels::relu6(x.clone())
        } else {
            x.clone().clamp(0.0, 6.0)
        };
        let g = (y.clone() * r.clone()).sum().backward();
        [y.inner(), x.grad(&g).unwrap()]
    };
    let (own, base) = (run(true), run(false));
    for (a, b) in own.iter().zip(&base) {
        assert_eq!(max_rel(a, b), 0.0);
    }
    // without autodiff, on an input no one else holds (in place): the same values as clamp
    let inner = Device::flex();
    let fresh = Tensor::<4>::from_data(x0.to_data(), &inner);
    let y = sptune::kernels::relu6(fresh);
    let to_ad = |t: Tensor<4>| Tensor::<4>::from_data(t.into_data(), &Device::flex().autodiff());
    assert_eq!(max_rel(&to_ad(y), &base[0]), 0.0);
    let device = Device::flex().autodiff();
    let x = Tensor::<1>::from_floats([-1.0, 0.0, 3.0, 6.0, 7.0], &device).require_grad();
    let g = sptune::kernels::relu6(x.clone()).sum().backward();
    let gx: Vec<f32> = x.grad(&g).unwrap().into_data().try_to_vec().unwrap();
    assert_eq!(gx, vec![0.0, 0.0, 1.0, 0.0, 0.0]);
}

/// A BatchNorm case for `shape`: the input (standard deviation 2, its mean `offset` of them
/// off zero), the weights `r` of the loss `sum(y · r)`, and γ, β of its channels.
fn bn_inputs(
    shape: [usize; 4],
    offset: f32,
    rng: &mut ChaCha8Rng,
) -> (Tensor<4>, Tensor<4>, Tensor<1>, Tensor<1>) {
    let c = shape[1];
    let x0 = normal(shape, 2.0, rng).add_scalar(2.0 * offset);
    let r = normal(shape, 1.0, rng);
    let (gamma, beta) = (normal([c], 1.0, rng), normal([c], 1.0, rng));
    (x0, r, gamma, beta)
}

/// `m` on `x0` through the own kernel (`own`) or burn's `forward`: the output (off the tape),
/// the input's gradient of `sum(y · r)`, and all of its gradients (for γ and β).
fn bn_forward_backward(
    m: &burn::nn::BatchNorm,
    x0: &Tensor<4>,
    r: &Tensor<4>,
    own: bool,
) -> (Tensor<4>, Tensor<4>, burn::tensor::Gradients) {
    let x = x0.clone().require_grad();
    let y = if own {
        sptune::kernels::batch_norm(m, x.clone())
    } else {
        m.forward(x.clone())
    };
    let g = (y.clone() * r.clone()).sum().backward();
    (y.inner(), x.grad(&g).unwrap(), g)
}

/// The own BatchNorm (training mode) against burn's `BatchNorm::forward`: output, gradients of
/// input, γ and β, and the running statistics after the step, to 1e-4 relative.
#[test]
fn batch_norm_matches_burn_in_training_mode() {
    use burn::module::Param;
    use burn::nn::BatchNormConfig;
    // (shape, momentum, the input's mean in standard deviations: 25 tests cancellation)
    for (shape, momentum, offset) in [
        ([4, 3, 5, 6], 0.1, 0.35),
        ([1, 8, 7, 7], 0.01, 0.35),
        ([6, 2, 1, 1], 0.5, 0.35),
        ([8, 4, 12, 12], 0.1, 25.0),
    ] {
        let mut rng = ChaCha8Rng::seed_from_u64(shape[1] as u64);
        let device = Device::flex().autodiff();
        let c = shape[1];
        let (x0, r, gamma, beta) = bn_inputs(shape, offset, &mut rng);
        let run = |own: bool| {
            let mut m = BatchNormConfig::new(c)
                .with_momentum(momentum)
                .with_epsilon(1e-3)
                .init(&device);
            m.gamma = Param::from_tensor(gamma.clone().require_grad());
            m.beta = Param::from_tensor(beta.clone().require_grad());
            let (y, dx, g) = bn_forward_backward(&m, &x0, &r, own);
            let one = |t: Tensor<1>| t.reshape([1, 1, 1, c]);
            [
                y,
                dx,
                one(m.gamma.grad(&g).unwrap()),
                one(m.beta.grad(&g).unwrap()),
                one(m.running_mean.value()),
                one(m.running_var.value()),
            ]
        };
        let (own, base) = (run(true), run(false));
        for (name, (a, b)) in ["y", "dx", "dgamma", "dbeta", "running mean", "running var"]
            .iter()
            .zip(own.iter().zip(&base))
        {
            let e = max_rel(a, b);
            assert!(e < 1e-4, "{name} of {shape:?}: {e:e}");
        }
    }
}

/// The own BatchNorm with the running statistics (eval mode, and `--bn frozen` during training)
/// against burn's `BatchNorm::forward` with training off: output and gradients of the input,
/// γ and β to 1e-4 relative, with γ, β trained or frozen; and the forward pass on the device
/// without autodiff (evaluation), where the running statistics must stay as they were.
#[test]
fn batch_norm_matches_burn_with_running_statistics() {
    use burn::module::{Param, RunningState};
    use burn::nn::BatchNormConfig;
    // (shape, γ and β trained, the input's mean in standard deviations)
    for (shape, affine, offset) in [
        ([4, 3, 5, 6], true, 0.35),
        ([1, 8, 7, 7], false, 0.35),
        ([6, 2, 1, 1], true, 0.35),
        ([2, 16, 9, 9], true, 25.0),
    ] {
        let mut rng = ChaCha8Rng::seed_from_u64(40 + shape[1] as u64);
        let device = Device::flex().autodiff();
        let c = shape[1];
        let (x0, r, gamma, beta) = bn_inputs(shape, offset, &mut rng);
        // running statistics unlike the batch's, so a kernel using the batch's fails
        let mean = normal([c], 1.0, &mut rng).add_scalar(2.0 * offset);
        let var = normal([c], 1.0, &mut rng).abs().add_scalar(0.2);
        let module = |device: &Device| {
            let mut m = BatchNormConfig::new(c).with_epsilon(1e-3).init(device);
            // the values on `device` (all were made on the autodiff device)
            let on = |t: &Tensor<1>| match device.is_autodiff() {
                true => t.clone(),
                false => t.clone().inner(),
            };
            let p = |t: &Tensor<1>| match affine && device.is_autodiff() {
                true => Param::from_tensor(on(t).require_grad()),
                false => Param::from_tensor(on(t)).set_require_grad(false),
            };
            m.gamma = p(&gamma);
            m.beta = p(&beta);
            m.running_mean = RunningState::new(on(&mean));
            m.running_var = RunningState::new(on(&var));
            m.training = m.training.with_value(false);
            m
        };
        let run = |own: bool| {
            let m = module(&device);
            let (y, dx, g) = bn_forward_backward(&m, &x0, &r, own);
            let one = |t: Tensor<1>| t.reshape([1, 1, 1, c]);
            let mut out = vec![y, dx];
            if affine {
                out.push(one(m.gamma.grad(&g).unwrap()));
                out.push(one(m.beta.grad(&g).unwrap()));
            } else {
                assert!(m.gamma.grad(&g).is_none() && m.beta.grad(&g).is_none());
            }
            out
        };
        let (own, base) = (run(true), run(false));
        for (name, (a, b)) in ["y", "dx", "dgamma", "dbeta"]
            .iter()
            .zip(own.iter().zip(&base))
        {
            let e = max_rel(a, b);
            assert!(e < 1e-4, "{name} of {shape:?}: {e:e}");
        }
        // evaluation: no autodiff
        let inner = Device::flex();
        let m = module(&inner);
        let x = x0.clone().inner().to_device(&inner);
        let (a, b) = (
            sptune::kernels::batch_norm(&m, x.clone()),
            m.forward(x.clone()),
        );
        let to4 = |t: Tensor<4>| Tensor::<4>::from_data(t.into_data(), &device);
        let e = max_rel(&to4(a.clone()), &to4(b.clone()));
        assert!(e < 1e-4, "eval y of {shape:?}: {e:e}");
        // an input no one else holds is normalized in place: the same values
        let fresh = Tensor::<4>::from_data(x.to_data(), &inner);
        let c = sptune::kernels::batch_norm(&m, fresh);
        assert_eq!(max_rel(&to4(c), &to4(a)), 0.0, "in place, {shape:?}");
        let same = |s: &RunningState<Tensor<1>>, t: &Tensor<1>| {
            s.value().into_data().try_to_vec::<f32>().unwrap()
                == t.clone().inner().into_data().try_to_vec::<f32>().unwrap()
        };
        assert!(same(&m.running_mean, &mean) && same(&m.running_var, &var));
    }
}
