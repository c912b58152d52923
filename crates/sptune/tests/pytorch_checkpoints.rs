//! PyTorch checkpoints written by `torch.save` load through `Checkpoint::read` and give
//! PyTorch's logits; hostile and damaged files are refused with an error, never executed and
//! never a panic.
//!
//! How the expected numbers were produced: `tests/fixtures/pytorch/make_fixtures.py` (torch
//! 2.15, torchvision 0.29.2, CPU; the versions are recorded in `fixture.json`) builds
//! torchvision's ResNet-18 structure from torchvision's own `BasicBlock` with base width 2,
//! draws seeded random weights and BatchNorm statistics, saves the state dict with
//! `torch.save` in the zip format, the legacy format and nested under `state_dict`, with
//! `fc.weight` a transposed (strided) view and `conv1.weight` an offset view, and records the
//! eval-mode float32 logits of the input `x[k] = sin(0.013 k) * 1.5`, shape [2, 3, 32, 32].

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde_json::Value;
use sptune::models::checkpoint::{Checkpoint, load_into};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pytorch")
}

fn fixture() -> Value {
    let text = std::fs::read_to_string(dir().join("fixture.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn logits_of(path: &Path, fx: &Value) -> Vec<f32> {
    let ckpt = Checkpoint::read(path).unwrap_or_else(|e| panic!("{e}"));
    // every state_dict key, nesting removed, num_batches_tracked included
    let mut want: Vec<(String, Vec<usize>)> = fx["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let shape = k[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize);
            (k[0].as_str().unwrap().to_string(), shape.collect())
        })
        .collect();
    want.sort();
    let got: Vec<(String, Vec<usize>)> = ckpt
        .tensors
        .iter()
        .map(|(n, (s, _))| (n.clone(), s.clone()))
        .collect();
    assert_eq!(got, want, "{}", path.display());

    let spec = ckpt.infer_spec("resnet18").unwrap();
    assert_eq!(spec.width, fx["width"].as_u64().unwrap() as usize);
    assert!(!spec.small_stem);
    assert_eq!(
        spec.num_classes(),
        fx["num_classes"].as_u64().unwrap() as usize
    );
    let device = Device::flex();
    let (net, report) = load_into(spec.init(&device).unwrap(), &spec, &ckpt, false).unwrap();
    assert!(
        report.missing.is_empty() && report.unused.is_empty(),
        "{}",
        report.summary()
    );
    let net = net.valid();
    let shape: Vec<usize> = fx["input_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let n: usize = shape.iter().product();
    let x: Vec<f32> = (0..n)
        .map(|k| ((0.013 * k as f64).sin() * 1.5) as f32)
        .collect();
    let x = Tensor::<4>::from_data(
        TensorData::new(x, [shape[0], shape[1], shape[2], shape[3]]),
        &device,
    );
    net.forward(x)
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .unwrap()
}

#[test]
fn zip_legacy_and_nested_files_give_pytorch_logits() {
    let fx = fixture();
    let want: Vec<f64> = fx["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    // the two inputs must be told apart, or the comparison says little
    let k = want.len() / 2;
    assert!(
        want[..k]
            .iter()
            .zip(&want[k..])
            .any(|(a, b)| (a - b).abs() > 1e-2)
    );
    for file in [
        "resnet18_w2.pth",
        "resnet18_w2_legacy.pth",
        "resnet18_w2_nested.pth",
    ] {
        let got = logits_of(&dir().join(file), &fx);
        assert_eq!(got.len(), want.len());
        // float32 on both sides with different summation orders: 1e-5 absolute + 1e-4
        // relative (the same bound as tests/torchvision_resnet.rs, which explains it)
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (*g as f64 - w).abs() <= 1e-5 + 1e-4 * w.abs(),
                "{file}: logit {i}: {g} vs PyTorch {w}"
            );
        }
    }
}

fn read_err(path: &Path) -> String {
    let r = std::panic::catch_unwind(|| Checkpoint::read(path));
    let r = r.unwrap_or_else(|_| panic!("reading {} panicked", path.display()));
    let e = r
        .expect_err("a damaged or hostile file must be refused")
        .to_string();
    assert!(!e.contains('\n'), "one line: {e}");
    assert!(
        e.contains(&path.display().to_string()),
        "names the file: {e}"
    );
    e
}

#[test]
fn a_pickle_naming_os_system_is_refused_and_never_run() {
    let fx = fixture();
    let marker = Path::new(fx["marker"].as_str().unwrap());
    let _ = std::fs::remove_file(marker);
    for file in ["evil_global.pth", "evil_zip.pth"] {
        let e = read_err(&dir().join(file));
        assert!(e.contains("refused") && e.contains("posix.system"), "{e}");
        assert!(!marker.exists(), "{file}: the pickle's os.system call ran");
    }
}

#[test]
fn truncated_wrong_magic_and_short_storage_are_errors() {
    let d = tempfile::tempdir().unwrap();
    for file in ["resnet18_w2.pth", "resnet18_w2_legacy.pth"] {
        let bytes = std::fs::read(dir().join(file)).unwrap();
        for cut in [bytes.len() / 2, bytes.len() - 10, 3] {
            let p = d.path().join(format!("cut{cut}-{file}"));
            std::fs::write(&p, &bytes[..cut]).unwrap();
            read_err(&p);
        }
    }
    let p = d.path().join("garbage.pth");
    std::fs::write(&p, b"this is not a checkpoint at all, just text\n").unwrap();
    read_err(&p);
    // a storage of 40 bytes behind a tensor of 100 floats
    let e = read_err(&dir().join("short_storage.pth"));
    assert!(e.contains('w'), "{e}");
}

#[test]
fn safetensors_whose_header_length_starts_like_a_pickle_is_not_taken_for_one() {
    use sptune::models::pytorch::is_pytorch_file;
    let d = tempfile::tempdir().unwrap();
    // header length 0x280 = 640: its first byte is 0x80, the pickle PROTO opcode
    let mut bytes = 640u64.to_le_bytes().to_vec();
    bytes.push(b'{');
    let p = d.path().join("model"); // no extension: the signature decides
    std::fs::write(&p, &bytes).unwrap();
    assert!(!is_pytorch_file(&p));
    std::fs::write(&p, [0x80u8, 0x02, 0x8a, 0x0a]).unwrap();
    assert!(is_pytorch_file(&p));
    assert!(is_pytorch_file(&dir().join("resnet18_w2.pth")));
}

/// Pickle BINUNICODE and BININT.
fn pk_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn pk_int(out: &mut Vec<u8>, v: i32) {
    out.push(b'J');
    out.extend_from_slice(&v.to_le_bytes());
}

/// A `torch.save` zip file written by hand: float tensors `(name, shape, strides)`, all views
/// of one storage of `storage_len` floats (what `torch.save` writes for views of one tensor,
/// e.g. tied weights; a stride-0 view is what `expand` gives, which PyTorch itself would clone).
fn pth_views(path: &Path, storage_len: usize, views: &[(&str, &[i32], &[i32])]) {
    let mut p = vec![0x80, 2, b'}', b'('];
    for (name, shape, strides) in views {
        pk_str(&mut p, name);
        p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        pk_str(&mut p, "storage");
        p.extend_from_slice(b"ctorch\nFloatStorage\n");
        pk_str(&mut p, "0");
        pk_str(&mut p, "cpu");
        pk_int(&mut p, storage_len as i32);
        p.extend_from_slice(b"tQ");
        pk_int(&mut p, 0);
        p.push(b'(');
        shape.iter().for_each(|&d| pk_int(&mut p, d));
        p.extend_from_slice(b"t(");
        strides.iter().for_each(|&d| pk_int(&mut p, d));
        p.extend_from_slice(b"t\x89ccollections\nOrderedDict\n)RtR");
    }
    p.extend_from_slice(b"u."); // SETITEMS, STOP
    let storage: Vec<u8> = (0..storage_len)
        .flat_map(|i| (i as f32).to_le_bytes())
        .collect();
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (entry, bytes) in [
        ("archive/data.pkl", &p[..]),
        ("archive/data/0", &storage[..]),
        ("archive/version", b"3\n"),
    ] {
        z.start_file(entry, opts).unwrap();
        std::io::Write::write_all(&mut z, bytes).unwrap();
    }
    z.finish().unwrap();
}

#[test]
fn stride_zero_view_larger_than_the_file_is_refused_before_reading() {
    let d = tempfile::tempdir().unwrap();
    // one float seen as 25000x25000 (2.5 GB): refused from the metadata, nothing materialized
    let p = d.path().join("expand.pth");
    pth_views(&p, 1, &[("w", &[25000, 25000], &[0, 0])]);
    let e = read_err(&p);
    assert!(
        e.contains("w [25000, 25000]") && e.contains("2500000000") && e.contains("stride 0"),
        "{e}"
    );
    // a smaller expansion (4 MB from a file of about 1 KB) too
    pth_views(&p, 1, &[("w", &[1000, 1000], &[0, 0])]);
    let e = read_err(&p);
    assert!(e.contains("4000000"), "{e}");
}

#[test]
fn views_sharing_a_storage_within_the_bound_load() {
    // a 10x10 matrix and its transpose on one storage (tied weights), as PyTorch saves them
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("tied.pth");
    pth_views(
        &p,
        100,
        &[("a", &[10, 10], &[10, 1]), ("b", &[10, 10], &[1, 10])],
    );
    let c = Checkpoint::read(&p).unwrap_or_else(|e| panic!("{e}"));
    let (sa, a) = &c.tensors["a"];
    let (sb, b) = &c.tensors["b"];
    assert_eq!((sa, sb), (&vec![10, 10], &vec![10, 10]));
    assert_eq!(a[12], 12.0);
    assert_eq!(b[12], 21.0);
    // a small stride-0 expansion within the bound (a bias broadcast) loads as well
    pth_views(&p, 1, &[("bias", &[64], &[0])]);
    let c = Checkpoint::read(&p).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.tensors["bias"].1, vec![0.0; 64]);
}
