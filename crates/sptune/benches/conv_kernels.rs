//! Time of the own convolution kernels per ResNet-18 layer shape (batch 32, 32 px, small
//! stem) and per EfficientNet-Lite0 depthwise shape: forward, input gradient, weight
//! gradient, in GFLOP/s, beside one large product (the machine's practical peak).
//! `cargo bench -p sptune --bench conv_kernels [-- THREADS [NAME-FILTER [REPEAT]]]` (each
//! figure the best of REPEAT runs, 3 unless given).

use std::time::Instant;

use sptune::kernels::conv::{self, Conv};

/// Name, input, weight, stride, padding, groups, and how often ResNet-18 has it.
type Shape = (
    &'static str,
    [usize; 4],
    [usize; 4],
    usize,
    usize,
    usize,
    usize,
);

fn time<F: FnMut()>(repeat: usize, mut f: F) -> f64 {
    f();
    let mut best = f64::MAX;
    for _ in 0..repeat {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    // `cargo bench` adds `--bench`: only the other arguments count
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let threads: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(2);
    let only = args.get(1);
    let repeat: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3).max(1);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .unwrap();
    sptune::runtime::tune_allocator();
    // (name, x, w, stride, pad, groups, count in the network)
    let shapes: &[Shape] = &[
        ("stem 3x3 3->64", [32, 3, 32, 32], [64, 3, 3, 3], 1, 1, 1, 1),
        ("l1 3x3 64", [32, 64, 32, 32], [64, 64, 3, 3], 1, 1, 1, 4),
        (
            "l2 3x3/2 64->128",
            [32, 64, 32, 32],
            [128, 64, 3, 3],
            2,
            1,
            1,
            1,
        ),
        (
            "l2 3x3 128",
            [32, 128, 16, 16],
            [128, 128, 3, 3],
            1,
            1,
            1,
            3,
        ),
        (
            "l2 1x1/2 64->128",
            [32, 64, 32, 32],
            [128, 64, 1, 1],
            2,
            0,
            1,
            1,
        ),
        ("l3 3x3 256", [32, 256, 8, 8], [256, 256, 3, 3], 1, 1, 1, 3),
        ("l4 3x3 512", [32, 512, 4, 4], [512, 512, 3, 3], 1, 1, 1, 3),
        // EfficientNet-Lite0's depthwise convolutions at 224 px, batch 16 ("SAME" padding
        // written symmetric: the cost is the same)
        ("dw3 32@112", [16, 32, 112, 112], [32, 1, 3, 3], 1, 1, 32, 1),
        (
            "dw3/2 96@112",
            [16, 96, 112, 112],
            [96, 1, 3, 3],
            2,
            1,
            96,
            1,
        ),
        (
            "dw3 144@56",
            [16, 144, 56, 56],
            [144, 1, 3, 3],
            1,
            1,
            144,
            1,
        ),
        (
            "dw5/2 144@56",
            [16, 144, 56, 56],
            [144, 1, 5, 5],
            2,
            2,
            144,
            1,
        ),
        (
            "dw5 240@28",
            [16, 240, 28, 28],
            [240, 1, 5, 5],
            1,
            2,
            240,
            1,
        ),
        (
            "dw3/2 240@28",
            [16, 240, 28, 28],
            [240, 1, 3, 3],
            2,
            1,
            240,
            1,
        ),
        (
            "dw3 480@14",
            [16, 480, 14, 14],
            [480, 1, 3, 3],
            1,
            1,
            480,
            2,
        ),
        (
            "dw5 480@14",
            [16, 480, 14, 14],
            [480, 1, 5, 5],
            1,
            2,
            480,
            1,
        ),
        (
            "dw5 672@14",
            [16, 672, 14, 14],
            [672, 1, 5, 5],
            1,
            2,
            672,
            2,
        ),
        (
            "dw5/2 672@14",
            [16, 672, 14, 14],
            [672, 1, 5, 5],
            2,
            2,
            672,
            1,
        ),
        (
            "dw5 1152@7",
            [16, 1152, 7, 7],
            [1152, 1, 5, 5],
            1,
            2,
            1152,
            3,
        ),
        (
            "dw3 1152@7",
            [16, 1152, 7, 7],
            [1152, 1, 3, 3],
            1,
            1,
            1152,
            1,
        ),
    ];
    // the machine's practical peak: one large square product through the same gemm crate
    let n = 2048;
    let (a, b) = (vec![0.5f32; n * n], vec![0.25f32; n * n]);
    let mut c = vec![0f32; n * n];
    let t = time(3, || unsafe {
        gemm::gemm(
            n,
            n,
            n,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            n as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        )
    });
    println!(
        "gemm {n}x{n}x{n}: {:.1} GFLOP/s on {threads} threads (the practical peak)",
        2.0 * (n * n * n) as f64 / t / 1e9
    );
    println!(
        "{:<20} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8}",
        "layer", "fwd ms", "dx ms", "dw ms", "fwd GF/s", "dx GF/s", "dw GF/s"
    );
    let mut total = [0f64; 3];
    let mut dw_total = [0f64; 3];
    let mut flops_total = 0f64;
    for &(name, x, w, s, p, g, count) in shapes {
        if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        let c = Conv::new(x, w, [s, s], [1, 1], [(p, p), (p, p)], g).unwrap();
        let xs: Vec<f32> = (0..x.iter().product::<usize>())
            .map(|i| (i % 13) as f32 * 0.1)
            .collect();
        let ws: Vec<f32> = (0..w.iter().product::<usize>())
            .map(|i| (i % 7) as f32 * 0.1)
            .collect();
        let y = conv::forward(&c, &xs, &ws);
        let flops = 2.0 * y.len() as f64 * (w[1] * w[2] * w[3]) as f64;
        // each pass timed with Winograd's transforms on (where they apply) and, where they
        // do, off too, in the same run
        let passes = |repeat: usize| {
            [
                time(repeat, || {
                    std::hint::black_box(conv::forward(&c, &xs, &ws));
                }),
                time(repeat, || {
                    std::hint::black_box(conv::input_grad(&c, &ws, &y));
                }),
                time(repeat, || {
                    std::hint::black_box(conv::weight_grad(&c, &xs, &y));
                }),
            ]
        };
        let [tf, tx, tw] = passes(repeat);
        let direct = c.uses_winograd().then(|| {
            sptune::kernels::set_winograd(false);
            let t = passes(repeat);
            sptune::kernels::set_winograd(true);
            t
        });
        if g == 1 {
            for (t, v) in total.iter_mut().zip([tf, tx, tw]) {
                *t += v * count as f64;
            }
            flops_total += flops * count as f64;
        } else {
            for (t, v) in dw_total.iter_mut().zip([tf, tx, tw]) {
                *t += v * count as f64;
            }
        }
        println!(
            "{name:<20} {:>9.2} {:>9.2} {:>9.2} {:>8.1} {:>8.1} {:>8.1}",
            1e3 * tf,
            1e3 * tx,
            1e3 * tw,
            flops / tf / 1e9,
            flops / tx / 1e9,
            flops / tw / 1e9
        );
        if let Some(d) = direct {
            println!(
                "{:<20} {:>9.2} {:>9.2} {:>9.2} {:>8.1} {:>8.1} {:>8.1}",
                "  (without Winograd)",
                1e3 * d[0],
                1e3 * d[1],
                1e3 * d[2],
                flops / d[0] / 1e9,
                flops / d[1] / 1e9,
                flops / d[2] / 1e9
            );
        }
    }
    println!(
        "ResNet-18 convolutions (x count): fwd {:.0} ms, dx {:.0} ms, dw {:.0} ms; {:.1} GFLOP per pass",
        1e3 * total[0],
        1e3 * total[1],
        1e3 * total[2],
        flops_total / 1e9
    );
    println!(
        "EfficientNet-Lite0 depthwise (x count): fwd {:.0} ms, dx {:.0} ms, dw {:.0} ms",
        1e3 * dw_total[0],
        1e3 * dw_total[1],
        1e3 * dw_total[2]
    );
}
