//! Checkpoint round trips and bad checkpoints.

use burn::tensor::Device;
use sptune::models::ModelSpec;
use sptune::models::checkpoint::{Checkpoint, load_into, load_model, save_model};
use sptune::params;

fn spec(arch: &str) -> ModelSpec {
    ModelSpec {
        arch: arch.into(),
        classes: vec!["a".into(), "b".into(), "c".into()],
        input: [1, 12, 12],
        width: 4,
        small_stem: true,
        hidden: vec![7, 5],
        mean: vec![0.3],
        std: vec![0.2],
    }
}

#[test]
fn save_then_read_restores_every_tensor_and_the_spec() {
    for arch in ["resnet18", "resnet50", "mlp"] {
        let s = spec(arch);
        let dev = Device::flex();
        dev.seed(11);
        let net = s.init(&dev).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        save_model(&net, &s, &path, &[]).unwrap();
        let ck = Checkpoint::read(&path).unwrap();
        assert_eq!(ck.spec().unwrap(), s);
        assert_eq!(ck.metadata["arch"], arch);
        let want = params::values(&net);
        for (info, vals) in &want {
            let (shape, got) = &ck.tensors[&info.name];
            assert_eq!(shape, &info.shape, "{}", info.name);
            assert_eq!(got, vals, "{}", info.name);
        }
        if arch == "mlp" {
            // torch layout: fc1 is [out=7, in=144]
            assert_eq!(ck.tensors["fc1.weight"].0, vec![7, 144]);
            assert_eq!(ck.tensors["fc3.weight"].0, vec![3, 5]);
        } else {
            assert!(ck.tensors.contains_key("bn1.num_batches_tracked"));
            assert_eq!(ck.tensors["fc.weight"].0[0], 3);
        }
        // and back into a fresh network
        let (net2, s2) = load_model(&path, None, &dev).unwrap();
        assert_eq!(s2, s);
        let got = params::values(&net2);
        for ((a, va), (b, vb)) in want.iter().zip(&got) {
            assert_eq!(a.name, b.name);
            assert_eq!(va, vb, "{}", a.name);
        }
        // no temp file left beside the output
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}

#[test]
fn truncated_checkpoint_is_a_one_line_error_naming_the_file() {
    let s = spec("mlp");
    let dev = Device::flex();
    let net = s.init(&dev).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    save_model(&net, &s, &path, &[]).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let msg = Checkpoint::read(&path).unwrap_err().to_string();
    assert!(
        msg.contains("m.safetensors") && !msg.contains('\n'),
        "{msg}"
    );
    std::fs::write(&path, b"not a checkpoint at all").unwrap();
    let msg = Checkpoint::read(&path).unwrap_err().to_string();
    assert!(msg.contains("m.safetensors"), "{msg}");
}

#[test]
fn nan_in_checkpoint_and_wrong_shapes_are_errors() {
    let s = spec("mlp");
    let dev = Device::flex();
    let net = s.init(&dev).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    save_model(&net, &s, &path, &[]).unwrap();
    let mut ck = Checkpoint::read(&path).unwrap();
    ck.tensors.get_mut("fc2.bias").unwrap().1[1] = f32::NAN;
    let msg = load_into(s.init(&dev).unwrap(), &s, &ck, false)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("fc2.bias") && msg.contains("NaN"), "{msg}");
    // the same file loaded into a wider MLP: fc1 mismatches and is not a head
    let wide = ModelSpec {
        hidden: vec![9, 5],
        ..s.clone()
    };
    let ck = Checkpoint::read(&path).unwrap();
    let msg = load_into(wide.init(&dev).unwrap(), &wide, &ck, true)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("fc1.weight") && msg.contains("m.safetensors"),
        "{msg}"
    );
}

/// A checkpoint of a small MLP whose `spec` metadata is `spec_json`.
fn checkpoint_with_spec(path: &std::path::Path, spec_json: String) {
    let s = spec("mlp");
    let net = s.init(&Device::flex()).unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = params::values(&net)
        .into_iter()
        .map(|(i, v)| (i.name, i.shape, v))
        .collect();
    let mut meta = std::collections::HashMap::new();
    meta.insert("spec".to_string(), spec_json);
    let bytes = sptune::models::checkpoint::to_bytes(&tensors, &[], meta).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn spec_metadata_sizes_are_bounded_before_anything_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.safetensors");
    let base = serde_json::to_value(spec("mlp")).unwrap();
    let with = |key: &str, v: serde_json::Value| {
        let mut s = base.clone();
        s[key] = v;
        s
    };
    let mut wide = with("width", 4096.into());
    wide["arch"] = "resnet101".into();
    let cases = [
        (with("hidden", serde_json::json!([1u64 << 40])), "hidden"),
        (with("hidden", serde_json::json!([0])), "hidden"),
        (
            with("input", serde_json::json!([1, 1 << 20, 1 << 20])),
            "input",
        ),
        (with("input", serde_json::json!([1, 8192, 8])), "input"),
        (with("input", serde_json::json!([1, 1, 1 << 25])), "input"),
        (with("width", (1u64 << 20).into()), "width"),
        (
            with("hidden", serde_json::json!([1 << 20, 1 << 20, 1 << 20])),
            "over the limit",
        ),
        (wide, "resnet101"),
    ];
    for (json, field) in cases {
        checkpoint_with_spec(&path, json.to_string());
        let ckpt = Checkpoint::read(&path).unwrap();
        let e = ckpt.spec().unwrap_err().to_string();
        assert!(
            e.contains("bomb.safetensors") && e.contains(field) && !e.contains('\n'),
            "{json}: {e}"
        );
        // every path that builds a network from a checkpoint goes through `spec`
        let e = load_model(&path, None, &Device::flex())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(field), "{e}");
    }
    // many input channels, and too many classes
    let mut s = spec("mlp");
    s.input = [65, 2, 2];
    s.mean = vec![0.0; 65];
    s.std = vec![1.0; 65];
    assert!(s.validate().unwrap_err().to_string().contains("channels"));
    let mut s = spec("mlp");
    s.classes = (0..(1 << 20) + 1).map(|i| i.to_string()).collect();
    assert!(s.validate().unwrap_err().to_string().contains("classes"));
    // a flat MLP input (as inferred from a state dict) of 3x224x224 values is fine
    let mut s = spec("mlp");
    s.input = [1, 1, 3 * 224 * 224];
    s.validate().unwrap();
}

#[test]
fn param_count_matches_the_networks_built() {
    let dev = Device::flex();
    for (arch, stem) in [
        ("resnet18", true),
        ("resnet18", false),
        ("resnet50", false),
        ("mlp", true),
        ("efficientnet-lite0", false),
    ] {
        let mut s = spec(arch);
        s.small_stem = stem;
        if arch == "efficientnet-lite0" {
            s.input = [1, 32, 32];
        }
        let net = s.init(&dev).unwrap();
        let table = params::table(&net);
        let values: u128 = table
            .iter()
            .map(|i| i.shape.iter().product::<usize>() as u128)
            .sum();
        // ResNet counts one num_batches_tracked per BatchNorm too
        let bns = table
            .iter()
            .filter(|i| i.name.ends_with("running_mean"))
            .count() as u128;
        let counted = s.architecture().unwrap().param_count(&s).unwrap();
        if arch == "efficientnet-lite0" {
            assert!(counted >= values, "{arch}: {counted} < {values}");
        } else if arch == "mlp" {
            assert_eq!(counted, values, "{arch}");
        } else {
            assert_eq!(counted, values + bns, "{arch} small_stem {stem}");
        }
    }
}

/// A header longer than 65,535 bytes (a long run's log in the metadata) is saved and read
/// back: the header canonicalization once padded it with a format width, which panics above
/// that (found by a 400-epoch study trial). The metadata read back is the one saved.
#[test]
fn a_header_longer_than_64_kib_is_saved_and_read() {
    let s = spec("mlp");
    let net = s.init(&Device::flex()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let log = "x".repeat(100_000);
    save_model(&net, &s, &path, &[("log", log.clone())]).unwrap();
    let ck = Checkpoint::read(&path).unwrap();
    assert_eq!(ck.metadata.get("log"), Some(&log));
    let n = u64::from_le_bytes(std::fs::read(&path).unwrap()[..8].try_into().unwrap());
    assert!(n > 100_000, "header of {n} bytes");
}

/// A header naming one tensor twice is refused naming the tensor (the `safetensors` parser
/// alone keeps the last one silently). The file is written by hand: an 8-byte length, the JSON
/// header, then the data both entries point at.
#[test]
fn a_header_naming_a_tensor_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dup.safetensors");
    let entry = r#"{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#;
    for (name, header, refused) in [
        ("dup", format!(r#"{{"w":{entry},"w":{entry}}}"#), true),
        ("one", format!(r#"{{"w":{entry}}}"#), false),
    ] {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.extend(1.5f32.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        match Checkpoint::read_file(&path) {
            Err(e) if refused => {
                let msg = e.to_string();
                assert!(
                    msg.contains("dup.safetensors") && msg.contains("\"w\" twice"),
                    "{name}: {msg}"
                );
            }
            Ok(ck) if !refused => assert_eq!(ck.tensors["w"].1, vec![1.5]),
            other => panic!("{name}: {:?}", other.map(|c| c.tensors.len())),
        }
    }
}
