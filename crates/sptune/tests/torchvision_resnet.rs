//! A torchvision ResNet-18 state dict loads into sptune's ResNet-18 under its own names and
//! gives PyTorch's logits.
//!
//! How the expected numbers were produced: `tests/fixtures/torchvision_resnet18/make_fixture.py`
//! (run with the torch virtual environment, on CPU) builds the real
//! `torchvision.models.resnet18(num_classes=10)`, overwrites every floating-point state_dict
//! tensor with a closed-form formula, runs a fixed [2, 3, 64, 64] input through it in `eval()`
//! mode and writes `fixture.json`: the state_dict keys in order as `[name, shape, dtype]`, the
//! float32 logits, the same logits from a float64 run, and the generator's versions under
//! `generator` (torch 2.15.0+cu132, torchvision 0.29.2+cu132 when this test was written; the
//! script records whatever it ran with). No weights are committed: this test recomputes every
//! tensor from the same formula, writes them under the unchanged torchvision names to a
//! safetensors file and loads that through `Checkpoint::read` / `infer_spec` / `load_into`.
//!
//! The formula (both sides compute in float64, then cast once to float32), for the tensor named
//! `n` and flat row-major index `k` over its torchvision shape:
//!
//! ```text
//! h(n) = (sum of the UTF-8 bytes of n) % 97
//! s(k) = sin(0.001*k*k + 0.5*k + 0.11*h(n))      evaluated left to right
//! conv / linear weight:   s(k) / sqrt(prod(shape[1..]))
//! any bias:               0.1 * s(k)
//! BatchNorm weight:       1 + 0.1 * s(k)
//! running_mean:           0.1 * s(k)
//! running_var:            1 + 0.5 * s(k)^2
//! num_batches_tracked:    0 (int64 scalar, as torchvision leaves it)
//! input x[k]:             sin(0.013*k) * 1.5
//! ```
//!
//! The k*k term matters: with a single-frequency `sin(a*k + b)` the kernels nearly cancel
//! against the smooth input, the logits hardly depend on it, and a flipped 3x3 kernel moved them
//! by less than 1e-4 (see the script's docstring). With it, a flipped kernel, a padding off by
//! one or BatchNorm eps 1e-3 instead of 1e-5 each move some logit by >= 5e-4 in PyTorch.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde_json::Value;
use sptune::models::checkpoint::{Checkpoint, load_into, to_bytes};
use sptune::models::{ModelSpec, Net};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torchvision_resnet18")
}

fn fixture() -> Value {
    let path = fixture_dir().join("fixture.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run make_fixture.py)", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One state_dict entry of the fixture: (name, torchvision shape, dtype).
fn keys(fx: &Value) -> Vec<(String, Vec<usize>, String)> {
    fx["keys"]
        .as_array()
        .expect("fixture.json: keys")
        .iter()
        .map(|k| {
            let name = k[0].as_str().unwrap().to_string();
            let shape = k[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            (name, shape, k[2].as_str().unwrap().to_string())
        })
        .collect()
}

fn name_hash(name: &str) -> f64 {
    (name.bytes().map(u64::from).sum::<u64>() % 97) as f64
}

/// The formula of `make_fixture.py`: float64 throughout, one cast to float32 at the end.
fn formula(name: &str, shape: &[usize]) -> Vec<f32> {
    let numel: usize = shape.iter().product();
    let h = name_hash(name);
    let leaf = name.rsplit('.').next().unwrap();
    (0..numel)
        .map(|k| {
            let k = k as f64;
            // Same operation order as Python's `0.001 * k * k + 0.5 * k + 0.11 * hn`.
            let s = (0.001 * k * k + 0.5 * k + 0.11 * h).sin();
            let v = match leaf {
                "running_mean" => 0.1 * s,
                "running_var" => 1.0 + 0.5 * s * s,
                "bias" => 0.1 * s,
                "weight" if shape.len() >= 2 => {
                    let fan_in: usize = shape[1..].iter().product();
                    s / (fan_in as f64).sqrt()
                }
                "weight" => 1.0 + 0.1 * s,
                _ => panic!("no formula for {name} {shape:?}"),
            };
            v as f32
        })
        .collect()
}

/// The fixture's input, [2, 3, 64, 64] flattened row-major.
fn input(fx: &Value) -> (Vec<f32>, [usize; 4]) {
    let s: Vec<usize> = fx["input_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let shape = [s[0], s[1], s[2], s[3]];
    let n: usize = shape.iter().product();
    let x = (0..n)
        .map(|k| ((0.013 * k as f64).sin() * 1.5) as f32)
        .collect();
    (x, shape)
}

/// The float tensors (checkpoint layout) and the int64 `num_batches_tracked` names.
type StateDict = (Vec<(String, Vec<usize>, Vec<f32>)>, Vec<String>);

/// The fixture's state dict, recomputed, under the torchvision names exactly.
fn state_dict(fx: &Value) -> StateDict {
    let mut floats = Vec::new();
    let mut ints = Vec::new();
    for (name, shape, dtype) in keys(fx) {
        match dtype.as_str() {
            "float32" => {
                let vals = formula(&name, &shape);
                floats.push((name, shape, vals));
            }
            "int64" => {
                assert!(
                    name.ends_with("num_batches_tracked") && shape.is_empty(),
                    "{name}"
                );
                ints.push(name);
            }
            other => panic!("{name}: unexpected dtype {other}"),
        }
    }
    (floats, ints)
}

/// Writes a safetensors file with no sptune metadata, as a converted torchvision file has.
fn write(dir: &Path, file: &str, sd: &StateDict) -> PathBuf {
    let bytes = to_bytes(&sd.0, &sd.1, HashMap::new()).expect("serialize");
    let path = dir.join(file);
    std::fs::write(&path, bytes).expect("write checkpoint");
    path
}

fn load(path: &Path) -> (Checkpoint, ModelSpec, Net, Device) {
    let ckpt = Checkpoint::read(path).expect("read checkpoint");
    let spec = ckpt.infer_spec("resnet18").expect("infer spec");
    let device = Device::flex();
    let net = spec.init(&device).expect("init");
    (ckpt, spec, net, device)
}

fn forward(net: &Net, x: &[f32], shape: [usize; 4], device: &Device) -> Vec<f32> {
    let x = Tensor::<4>::from_data(TensorData::new(x.to_vec(), shape), device);
    net.forward(x).into_data().try_to_vec::<f32>().unwrap()
}

fn features(net: &Net, x: &[f32], shape: [usize; 4], device: &Device) -> Vec<f32> {
    let Net::ResNet(m) = net else {
        panic!("not a ResNet")
    };
    let x = Tensor::<4>::from_data(TensorData::new(x.to_vec(), shape), device);
    m.features(x).into_data().try_to_vec::<f32>().unwrap()
}

fn body_names(fx: &Value) -> BTreeSet<String> {
    keys(fx)
        .into_iter()
        .map(|(n, _, _)| n)
        .filter(|n| !n.ends_with("num_batches_tracked") && !n.starts_with("fc."))
        .collect()
}

#[test]
fn torchvision_state_dict_gives_pytorch_logits() {
    let fx = fixture();
    let sd = state_dict(&fx);
    assert_eq!(sd.0.len(), 102, "resnet18 has 102 float tensors");
    assert_eq!(sd.1.len(), 20, "resnet18 has 20 BatchNorms");
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "resnet18_torchvision.safetensors", &sd);

    let (ckpt, spec, net, device) = load(&path);
    assert_eq!(spec.arch, "resnet18");
    assert_eq!(spec.width, 64);
    assert!(!spec.small_stem, "7x7 conv1 means the ImageNet stem");
    assert_eq!(
        spec.num_classes(),
        fx["num_classes"].as_u64().unwrap() as usize
    );
    assert_eq!(spec.input[0], 3);

    let (net, report) = load_into(net, &spec, &ckpt, false).expect("load_into");
    assert!(report.missing.is_empty(), "missing: {:?}", report.missing);
    assert!(report.unused.is_empty(), "unused: {:?}", report.unused);
    assert!(
        report.mismatched.is_empty(),
        "mismatched: {:?}",
        report.mismatched
    );
    assert!(
        report.replaced_head.is_empty(),
        "replaced: {:?}",
        report.replaced_head
    );
    let applied: BTreeSet<String> = report.applied.iter().cloned().collect();
    let expected: BTreeSet<String> = sd.0.iter().map(|(n, _, _)| n.clone()).collect();
    assert_eq!(report.applied.len(), sd.0.len(), "{}", report.summary());
    assert_eq!(applied, expected);

    let net = net.valid(); // eval mode: BatchNorm uses the running statistics
    let (x, shape) = input(&fx);
    let got = forward(&net, &x, shape, &device);
    let want: Vec<f64> = fx["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    assert_eq!(got.len(), want.len(), "logit count");

    // Tolerance |got - want| <= 1e-5 + 1e-4 * |want|. Both sides compute in float32 with
    // different summation orders; the script measured PyTorch's own float32-vs-float64 gap at
    // ~3e-7 (`max_abs_f32_vs_f64` in fixture.json), so 1e-5 absolute leaves a 30x margin for
    // burn's different conv/matmul kernels. An absolute floor is needed because some logits
    // are ~1e-3 or smaller, where a purely relative bound would demand more than float32
    // accumulation over a 4608-term dot product delivers. The bugs the fixture is built to
    // catch (padding, kernel orientation, BatchNorm eps, downsample statistics) move the
    // logits by 5e-4 .. 0.35, i.e. at least ~40x the largest allowed error here.
    let mut worst = (0.0f64, 0usize);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let err = (*g as f64 - w).abs();
        let allowed = 1e-5 + 1e-4 * w.abs();
        if err / allowed > worst.0 {
            worst = (err / allowed, i);
        }
    }
    assert!(
        worst.0 <= 1.0,
        "logit {} differs: got {}, PyTorch {} ({}x the tolerance)\n got:  {got:?}\n want: {want:?}",
        worst.1,
        got[worst.1],
        want[worst.1],
        worst.0
    );
    // The two images must give different logits, or the comparison would say little.
    assert!(
        want[..10]
            .iter()
            .zip(&want[10..])
            .any(|(a, b)| (a - b).abs() > 1e-3),
        "the fixture's two inputs give (almost) the same logits"
    );
}

#[test]
fn different_class_count_replaces_only_the_head() {
    let fx = fixture();
    let sd = state_dict(&fx);
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "resnet18_torchvision.safetensors", &sd);
    let (ckpt, spec, net10, device) = load(&path);
    let (net10, _) = load_into(net10, &spec, &ckpt, false).expect("10-class load");

    let mut spec5 = spec.clone();
    spec5.classes = (0..5).map(|i| format!("c{i}")).collect();

    // Without head replacement the 10-class head does not fit: an error naming the tensor.
    let net5 = spec5.init(&device).unwrap();
    let err = load_into(net5, &spec5, &ckpt, false).expect_err("10-class head into 5 classes");
    let msg = err.to_string();
    assert!(msg.contains("fc.weight"), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");

    // With it, the body is applied and the head stays freshly initialized.
    let net5 = spec5.init(&device).unwrap();
    let (net5, report) = load_into(net5, &spec5, &ckpt, true).expect("replace head");
    assert_eq!(
        report.replaced_head,
        vec!["fc.weight".to_string(), "fc.bias".to_string()]
    );
    assert!(report.missing.is_empty(), "missing: {:?}", report.missing);
    assert!(report.unused.is_empty(), "unused: {:?}", report.unused);
    assert!(
        report.mismatched.is_empty(),
        "mismatched: {:?}",
        report.mismatched
    );
    let applied: BTreeSet<String> = report.applied.iter().cloned().collect();
    assert_eq!(applied, body_names(&fx));
    assert_eq!(report.applied.len(), 100);

    // Same body, same features; and the new head has 5 outputs.
    let (x, shape) = input(&fx);
    let (net5, net10) = (net5.valid(), net10.valid());
    let f5 = features(&net5, &x, shape, &device);
    let f10 = features(&net10, &x, shape, &device);
    assert_eq!(f5.len(), 2 * 512);
    let max_diff = f5
        .iter()
        .zip(&f10)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max_diff == 0.0, "features differ by {max_diff}");
    assert_eq!(forward(&net5, &x, shape, &device).len(), 2 * 5);
}

#[test]
fn wrong_body_shape_is_an_error_naming_tensor_and_file() {
    let fx = fixture();
    let mut sd = state_dict(&fx);
    let bad = "layer1.0.conv1.weight";
    let entry = sd.0.iter_mut().find(|(n, _, _)| n == bad).expect(bad);
    assert_eq!(entry.1, vec![64, 64, 3, 3]);
    entry.1 = vec![64, 32, 3, 3];
    entry.2 = formula(bad, &entry.1);
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "bad_shape.safetensors", &sd);
    let (ckpt, spec, _, device) = load(&path);
    for replace_head in [false, true] {
        let net = spec.init(&device).unwrap();
        let err = load_into(net, &spec, &ckpt, replace_head).expect_err("wrong shape must fail");
        let msg = err.to_string();
        assert!(msg.contains(bad), "replace_head={replace_head}: {msg}");
        assert!(
            msg.contains(&path.display().to_string()),
            "replace_head={replace_head}: {msg}"
        );
    }
    // The one-call loader used by the CLI says the same.
    let err = sptune::models::checkpoint::load_model(&path, Some("resnet18"), &device)
        .expect_err("load_model must fail too");
    let msg = err.to_string();
    assert!(
        msg.contains(bad) && msg.contains(&path.display().to_string()),
        "{msg}"
    );
}
