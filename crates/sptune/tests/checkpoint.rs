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
