//! The segmentation network against torchvision: a tiny `fcn_resnet50`-structured model made
//! by `fixtures/segmentation/make_fcn_fixture.py` (torchvision's Bottleneck blocks and
//! dilation rule, its `FCNHead` and `FCN` forward) loads by name into [`SegNet`] and gives the
//! same logits on the same input; every size gives logits of that size.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use sptune::models::ResNet;
use sptune::models::checkpoint::Checkpoint;
use sptune::params;
use sptune::segmentation::{Backbone, SegNet};

mod common;
use common::shapes;

fn fixture(name: &str) -> Checkpoint {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/segmentation")
        .join(name);
    Checkpoint::read_file(&p).unwrap()
}

/// The fixture's model: base width 8, one bottleneck per stage, torchvision's stem, stages 3
/// and 4 dilated, 6 classes.
fn tiny_fcn(device: &Device) -> SegNet {
    let r = ResNet::with_layout(true, [1, 1, 1, 1], 3, 1, 8, false, device);
    let backbone = Backbone::from_resnet(r).dilate([false, true, true]);
    SegNet::fcn(backbone, 6, device)
}

#[test]
fn torchvision_fcn_state_dict_loads_and_gives_its_logits() {
    let device = Device::flex();
    let sd = fixture("fcn_tiny.pth");
    let net = tiny_fcn(&device);
    // the same tensors by name and shape (PyTorch's BatchNorm counters aside)
    let ours: HashMap<String, Vec<usize>> = params::table(&net)
        .into_iter()
        .map(|p| (p.name, p.shape))
        .collect();
    let theirs: HashMap<String, Vec<usize>> = sd
        .tensors
        .iter()
        .filter(|(n, _)| !n.ends_with("num_batches_tracked"))
        .map(|(n, (s, _))| (n.clone(), s.clone()))
        .collect();
    let mut only_ours: Vec<_> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
    let mut only_theirs: Vec<_> = theirs.keys().filter(|k| !ours.contains_key(*k)).collect();
    only_ours.sort();
    only_theirs.sort();
    assert!(
        only_ours.is_empty() && only_theirs.is_empty(),
        "names differ: ours only {only_ours:?}, torchvision only {only_theirs:?}"
    );
    for (n, s) in &ours {
        assert_eq!(s, &theirs[n], "{n}");
    }
    assert!(
        ours.contains_key("classifier.4.bias")
            && ours.contains_key("backbone.layer4.0.downsample.1.running_var")
    );
    // loaded, the same logits on the same input (eval mode: no autodiff, running statistics)
    let values: HashMap<String, (Vec<usize>, Vec<f32>)> = sd.tensors.clone().into_iter().collect();
    let net = params::assign(net, &values);
    let io = fixture("fcn_tiny_io.pth");
    let (xs, xv) = &io.tensors["input"];
    let (ys, yv) = &io.tensors["output"];
    let x = Tensor::<4>::from_data(TensorData::new(xv.clone(), xs.clone()), &device);
    let y = net.forward(x);
    assert_eq!(y.dims().to_vec(), *ys, "logits shape");
    let got: Vec<f32> = y.into_data().convert::<f32>().try_to_vec().unwrap();
    let scale = yv.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(yv)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale;
    assert!(
        err < 1e-4,
        "logits differ from torchvision's by {err:e} of their largest"
    );
}

/// Logits come at the input's size, odd sizes included, with and without dilation, for basic
/// and bottleneck blocks, small and torchvision stems.
#[test]
fn logits_have_the_input_size() {
    let device = Device::flex();
    for (bottleneck, small_stem, dilate) in [
        (false, true, [false, false, false]),
        (false, true, [false, true, true]),
        (false, false, [false, false, true]),
        (true, false, [false, true, true]),
    ] {
        let r = ResNet::with_layout(bottleneck, [1, 1, 1, 1], 1, 1, 4, small_stem, &device);
        let net = SegNet::fcn(Backbone::from_resnet(r).dilate(dilate), 3, &device);
        for (h, w) in [(33, 29), (17, 40), (8, 8)] {
            let x = Tensor::<4>::ones([2, 1, h, w], &device);
            assert_eq!(
                net.forward(x).dims(),
                [2, 3, h, w],
                "bottleneck {bottleneck}, small stem {small_stem}, dilate {dilate:?}"
            );
        }
    }
}

/// Dilation keeps the resolution: with stages 3 and 4 dilated, the small stem's backbone
/// output is at 1/2 of the input (only stage 2 strides), without dilation at 1/8.
#[test]
fn dilation_sets_the_output_stride() {
    let device = Device::flex();
    let r = || ResNet::with_layout(false, [2, 2, 2, 2], 1, 1, 4, true, &device);
    let x = || Tensor::<4>::ones([1, 1, 32, 32], &device);
    let plain = Backbone::from_resnet(r()).forward(x());
    assert_eq!(plain.dims(), [1, 32, 4, 4]);
    let dilated = Backbone::from_resnet(r())
        .dilate([false, true, true])
        .forward(x());
    assert_eq!(dilated.dims(), [1, 32, 16, 16]);
}

/// With a classification checkpoint as the starting point, the backbone is the shared part `S`
/// (anchored) and the FCN head the new part `S̄`.
#[test]
fn backbone_is_shared_and_head_new() {
    use sptune::regularizer::{Anchor, Penalty, PenaltyConfig, Scheme};
    let device = Device::flex();
    let r = ResNet::with_layout(false, [1, 1, 1, 1], 1, 4, 4, true, &device);
    let source = Checkpoint {
        path: "source".into(),
        tensors: params::values(&r)
            .into_iter()
            .map(|(i, v)| (i.name, (i.shape, v)))
            .collect(),
        metadata: Default::default(),
    };
    let net = SegNet::fcn(Backbone::from_resnet(r), 3, &device);
    let start = sptune::segmentation::starting_point(&source);
    let cfg = PenaltyConfig {
        scheme: Scheme::L2Sp,
        alpha: 0.1,
        beta: 0.01,
        anchor: Anchor::All,
    };
    let p = Penalty::new(&net, Some(&start), cfg, &|_| false, &device).unwrap();
    let roles = p.roles();
    assert!(!roles.is_empty());
    for (name, role) in roles {
        let want = if name.starts_with("backbone.") {
            "shared"
        } else {
            "new"
        };
        assert_eq!(role, want, "{name}");
    }
}

/// `segment` end to end from a classification checkpoint file: scenes written in the folder
/// layout, two epochs, the test metrics within range, the network saved under torchvision's
/// names; a wrong output stride and a non-ResNet checkpoint are refused naming the value.
#[test]
fn segment_runs_from_a_checkpoint_file() {
    use sptune::models::ModelSpec;
    use sptune::models::checkpoint::save_model;
    use sptune::segmentation::run::default_train;
    use sptune::segmentation::{
        SceneOptions, SegmentConfig, compose_scenes, segment, write_mask_folder,
    };
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let spec = |arch: &str| ModelSpec {
        arch: arch.into(),
        classes: vec!["square".into(), "plus".into()],
        input: [1, 24, 24],
        width: 4,
        small_stem: true,
        hidden: vec![8],
        mean: vec![0.2],
        std: vec![0.3],
    };
    let init = dir.path().join("src.safetensors");
    save_model(
        &spec("resnet18").init(&device).unwrap(),
        &spec("resnet18"),
        &init,
        &[],
    )
    .unwrap();
    for (split, count, seed) in [("train", 16, 1), ("test", 4, 2)] {
        let o = SceneOptions {
            count,
            size: 24,
            items: (1, 2),
            threshold: 0.1,
            seed,
        };
        let ds = compose_scenes(&shapes(), &o).unwrap();
        write_mask_folder(&ds, &dir.path().join("scenes").join(split)).unwrap();
    }
    let mut train = default_train(sptune::regularizer::Scheme::L2Sp);
    train.epochs = 2;
    train.batch_size = 8;
    train.augment.crop = Some((24, 24));
    let out = dir.path().join("seg.safetensors");
    let cfg = SegmentConfig {
        init: init.clone(),
        data: dir.path().join("scenes"),
        out: Some(out.clone()),
        output_stride: 4,
        train,
        source: None,
        fisher: None,
    };
    let o = segment(&cfg, &device).unwrap();
    assert_eq!(o.classes, ["background", "square", "plus"]);
    assert_eq!(o.losses.len(), 2);
    assert!((0.0..=1.0).contains(&o.miou) && (0.0..=1.0).contains(&o.pixel_accuracy));
    let saved = Checkpoint::read_file(&out).unwrap();
    assert!(saved.tensors.contains_key("classifier.4.weight"));
    assert!(saved.tensors.contains_key("backbone.layer4.1.conv2.weight"));
    assert!(!saved.tensors.keys().any(|k| k.starts_with("backbone.fc")));
    // the Fisher schemes take the source's Fisher file, renamed onto the backbone; a file of
    // another model is refused naming the tensor
    let src = Checkpoint::read_file(&init).unwrap();
    let ones = |skip: &str| sptune::fisher::Fisher {
        tensors: src
            .tensors
            .iter()
            .filter(|(n, _)| !params::is_buffer_name(n) && !n.starts_with(skip))
            .map(|(n, (s, v))| (n.clone(), (s.clone(), vec![1.0; v.len()])))
            .collect(),
        estimator: sptune::fisher::Estimator::Exact,
        samples: 1,
        mc_samples: 0,
        path: None,
    };
    let fisher = dir.path().join("src.fisher");
    ones("none").save(&fisher, &spec("resnet18")).unwrap();
    let mut fcfg = SegmentConfig {
        fisher: Some(fisher),
        out: None,
        ..cfg.clone()
    };
    fcfg.train.scheme = sptune::regularizer::Scheme::L2SpFisher;
    assert!(segment(&fcfg, &device).unwrap().miou.is_finite());
    let partial = dir.path().join("partial.fisher");
    ones("layer4").save(&partial, &spec("resnet18")).unwrap();
    fcfg.fisher = Some(partial);
    let e = segment(&fcfg, &device).unwrap_err().to_string();
    assert!(e.contains("layer4"), "{e}");
    // refused: an output stride the stem cannot give, a checkpoint that is not a ResNet
    let bad = SegmentConfig {
        output_stride: 16,
        out: None,
        ..cfg.clone()
    };
    let e = segment(&bad, &device).unwrap_err().to_string();
    assert!(e.contains("--output-stride") && e.contains("16"), "{e}");
    let mlp = dir.path().join("mlp.safetensors");
    save_model(&spec("mlp").init(&device).unwrap(), &spec("mlp"), &mlp, &[]).unwrap();
    let e = segment(
        &SegmentConfig {
            init: mlp,
            out: None,
            ..cfg
        },
        &device,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("mlp") && e.contains("ResNet"), "{e}");
}
