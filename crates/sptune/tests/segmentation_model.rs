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
use sptune::segmentation::model::HeadConfig;
use sptune::segmentation::{Backbone, SegNet};

mod common;
use common::{shapes, write_scenes};

fn fixture(name: &str) -> Checkpoint {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/segmentation")
        .join(name);
    Checkpoint::read_file(&p).unwrap()
}

/// A classification network's tensors as a checkpoint (a starting point).
fn as_checkpoint(r: &ResNet) -> Checkpoint {
    Checkpoint {
        path: "source".into(),
        tensors: params::values(r)
            .into_iter()
            .map(|(i, v)| (i.name, (i.shape, v)))
            .collect(),
        metadata: Default::default(),
    }
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
    let net = tiny_fcn(&device);
    let net = loads_with_torchvision_logits(net, "fcn_tiny", &device);
    assert!(matches!(
        net.classifier,
        sptune::segmentation::model::Head::Fcn(_)
    ));
}

/// torchvision's DeepLab-v3 (`DeepLabV3` with `DeepLabHead`'s modules, ASPP rates 12, 24, 36,
/// 16 channels) on the same kind of backbone: same names, same logits.
#[test]
fn torchvision_deeplab_state_dict_loads_and_gives_its_logits() {
    let device = Device::flex();
    let r = ResNet::with_layout(true, [1, 1, 1, 1], 3, 1, 8, false, &device);
    let backbone = Backbone::from_resnet(r).dilate([false, true, true]);
    let net = SegNet::deeplab(backbone, 6, [12, 24, 36], 16, &device);
    let net = loads_with_torchvision_logits(net, "deeplab_tiny", &device);
    assert_eq!(net.classifier.kind(), "deeplabv3");
}

/// Loads the fixture `NAME.pth` into `net` after checking that both hold the same tensors by
/// name and shape, checks the logits on `NAME_io.pth`'s input against torchvision's to 1e-4
/// of their largest, then saves `net` and reads it back as torchvision's state dict.
fn loads_with_torchvision_logits(net: SegNet, name: &str, device: &Device) -> SegNet {
    let device = device.clone();
    let sd = fixture(&format!("{name}.pth"));
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
    assert_eq!(ours.len(), theirs.len());
    // loaded, the same logits on the same input (eval mode: no autodiff, running statistics)
    let values: HashMap<String, (Vec<usize>, Vec<f32>)> = sd.tensors.clone().into_iter().collect();
    let net = params::assign(net, &values);
    let io = fixture(&format!("{name}_io.pth"));
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
    ); // saved by sptune and read back, the state dict is torchvision's: every name, shape and
    // value, BatchNorm counters included
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fcn.safetensors");
    let spec = sptune::models::ModelSpec {
        arch: "resnet50".into(),
        classes: vec!["x".into()],
        input: [3, 32, 32],
        width: 8,
        small_stem: false,
        hidden: vec![],
        mean: vec![0.5; 3],
        std: vec![0.25; 3],
    };
    let classes: Vec<String> = (0..6).map(|i| i.to_string()).collect();
    let head = match &net.classifier {
        sptune::segmentation::model::Head::Fcn(_) => HeadConfig::Fcn,
        sptune::segmentation::model::Head::DeepLab(_) => HeadConfig::DeepLab {
            rates: [12, 24, 36],
            channels: 16,
        },
    };
    let run = serde_json::json!({"made by": "the torchvision fixture"});
    sptune::segmentation::saved::save(&net, &head, &classes, &spec, 8, &run, &path).unwrap();
    let back = Checkpoint::read_file(&path).unwrap();
    let names = |c: &Checkpoint| c.tensors.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&back), names(&sd));
    for (n, (shape, v)) in &sd.tensors {
        assert_eq!(&back.tensors[n].0, shape, "{n}");
        assert_eq!(&back.tensors[n].1, v, "{n}");
    }
    net
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
    let source = as_checkpoint(&r);
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
    use sptune::segmentation::{SegmentConfig, segment};
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
    write_scenes(&dir.path().join("scenes"), 24, 16, 4);
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
        head: sptune::segmentation::model::HeadConfig::Fcn,
        train,
        source: None,
        fisher: None,
        alphas: vec![],
        lrs: vec![],
        validation: 0.2,
    };
    let o = segment(&cfg, &device).unwrap();
    assert_eq!(o.classes, ["background", "square", "plus"]);
    assert_eq!(o.losses.len(), 2);
    assert!((0.0..=1.0).contains(&o.miou) && (0.0..=1.0).contains(&o.pixel_accuracy));
    assert!(o.validation.is_empty() && o.alpha == 0.01);
    let saved = Checkpoint::read_file(&out).unwrap();
    assert!(saved.tensors.contains_key("classifier.4.weight"));
    saved_network_evaluates_and_predicts(&out, dir.path(), &init, o.miou, o.pixel_accuracy);
    // the DeepLab-v3 head: trained, saved, rebuilt from the file's metadata alone
    let dl_out = dir.path().join("deeplab.safetensors");
    let dl = SegmentConfig {
        head: HeadConfig::DeepLab {
            rates: [1, 2, 3],
            channels: 8,
        },
        out: Some(dl_out.clone()),
        ..cfg.clone()
    };
    let d = segment(&dl, &device).unwrap();
    let back = sptune::segmentation::saved::load(&dl_out, &device).unwrap();
    assert_eq!(back.head, dl.head);
    // how it was made travels with it
    let run = back.run.as_ref().unwrap();
    assert_eq!(run["train"]["alpha"], 0.01);
    assert_eq!(run["train"]["epochs"], 2);
    assert_eq!(run["train"]["scheme"], "l2-sp");
    assert!(back.net.classifier.kind() == "deeplabv3");
    let e = sptune::segmentation::run::evaluate_saved(
        &sptune::segmentation::run::SegEvalConfig {
            model: dl_out,
            data: dir.path().join("scenes"),
            source: None,
        },
        &device,
    )
    .unwrap();
    assert_eq!((e.miou, e.pixel_accuracy), (d.miou, d.pixel_accuracy));
    // candidates for alpha and the rate: each pair validated on the held-out quarter, the
    // best one kept
    let grid = SegmentConfig {
        alphas: vec![0.1, 0.001],
        lrs: vec![0.01, 0.05],
        validation: 0.25,
        out: None,
        ..cfg.clone()
    };
    let g = segment(&grid, &device).unwrap();
    let got: Vec<(f64, f64)> = g.validation.iter().map(|t| (t.alpha, t.lr)).collect();
    assert_eq!(
        got,
        [(0.1, 0.01), (0.1, 0.05), (0.001, 0.01), (0.001, 0.05)]
    );
    assert_eq!(
        (g.alpha, g.lr),
        sptune::segmentation::run::choose(&g.validation)
    );
    // a candidate that diverges loses (recorded, not an error); all diverging is an error.
    // Rates that overflow float32: BatchNorm in training mode makes the layers before it
    // invariant to their scale, so a network can survive rates like 1e6
    let wild = SegmentConfig {
        alphas: vec![0.01],
        lrs: vec![0.01, 1e30],
        ..grid.clone()
    };
    let w = segment(&wild, &device).unwrap();
    assert!(w.validation[1].diverged && w.validation[1].val_miou.is_nan());
    assert!(!w.validation[0].diverged && w.lr == 0.01);
    let e = segment(
        &SegmentConfig {
            lrs: vec![1e30, 1e35],
            ..wild.clone()
        },
        &device,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("every candidate"), "{e}");
    let e = segment(
        &SegmentConfig {
            validation: 1.5,
            ..grid.clone()
        },
        &device,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--validation") && e.contains("1.5"), "{e}");
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

/// The file `segment` wrote, used as `sptune eval` and `sptune predict` use it: read back it
/// gives the metrics `segment` reported on the same test scenes (so every tensor and the
/// output stride came back), its masks are the network's argmax, written as palette PNGs;
/// wrong inputs are refused naming what is wrong.
fn saved_network_evaluates_and_predicts(
    model: &Path,
    dir: &Path,
    source: &Path,
    miou: f64,
    pixel_accuracy: f64,
) {
    use sptune::segmentation::run::{
        SegEvalConfig, SegPredictConfig, evaluate_saved, predict_saved,
    };
    use sptune::segmentation::saved;
    let device = Device::flex();
    assert!(saved::probe(model) && !saved::probe(source) && !saved::probe(&dir.join("none")));
    let cfg = SegEvalConfig {
        model: model.to_path_buf(),
        data: dir.join("scenes"),
        source: None,
    };
    let e = evaluate_saved(&cfg, &device).unwrap();
    assert_eq!(e.images, 4);
    assert_eq!((e.miou, e.pixel_accuracy), (miou, pixel_accuracy));
    // the network's classes must be the folder's
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    for sub in ["images", "masks"] {
        copy_dir(&dir.join("scenes/test").join(sub), &other.join(sub));
    }
    std::fs::write(other.join("classes.txt"), "a\nb\nc\n").unwrap();
    let err = evaluate_saved(
        &SegEvalConfig {
            data: other.clone(),
            ..cfg.clone()
        },
        &device,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("classes.txt") && err.contains("a,b,c"),
        "{err}"
    );
    // a classification checkpoint is not a segmentation network
    let err = saved::load(source, &device).unwrap_err().to_string();
    assert!(err.contains("not a segmentation network"), "{err}");
    // a tensor missing from the file is named
    let mut ck = Checkpoint::read_file(model).unwrap();
    ck.tensors.remove("backbone.layer3.0.conv1.weight");
    let err = saved::from_checkpoint(&ck, &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("backbone.layer3.0.conv1.weight") && err.contains("missing"),
        "{err}"
    );
    // predictions: masks are the network's argmax, the panel three pictures wide
    let images: Vec<_> = ["00000.png", "00001.png"]
        .iter()
        .map(|n| dir.join("scenes/test/images").join(n))
        .collect();
    let out = dir.join("pred");
    let pcfg = SegPredictConfig {
        model: model.to_path_buf(),
        images: images.clone(),
        out: out.clone(),
        panel: Some(3),
        truth: Some(dir.join("scenes/test/masks")),
    };
    let preds = predict_saved(&pcfg, &device).unwrap();
    let loaded = saved::load(model, &device).unwrap();
    for (p, img) in preds.iter().zip(&images) {
        let (mask, w, h) = sptune::segmentation::data::read_mask(&p.mask).unwrap();
        assert_eq!((w, h), (24, 24));
        let ds = sptune::segmentation::load_mask_folder(&dir.join("scenes/test"), 1).unwrap();
        let i = images.iter().position(|x| x == img).unwrap();
        let x: Vec<f32> = ds.images[i]
            .pixels
            .iter()
            .map(|v| (v - 0.2) / 0.3)
            .collect();
        let want = sptune::segmentation::predict(
            &loaded.net,
            Tensor::<4>::from_data(TensorData::new(x, [1, 1, 24, 24]), &device),
        );
        assert_eq!(mask, want, "{}", p.mask.display());
        assert_eq!(p.pixels.iter().sum::<u64>(), 24 * 24);
        let panel = image::open(p.panel.as_ref().unwrap()).unwrap();
        // image | truth | prediction, 2-pixel gaps, zoom 3
        assert_eq!(
            (panel.width(), panel.height()),
            ((3 * 24 + 2 * 2) * 3, 24 * 3)
        );
    }
    // two images that would write the same mask are refused before anything is written
    let err = predict_saved(
        &SegPredictConfig {
            images: vec![images[0].clone(), dir.join("other/images/00000.png")],
            out: dir.join("pred2"),
            ..pcfg.clone()
        },
        &device,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("00000.png") && err.contains("both"), "{err}");
    assert!(!dir.join("pred2").exists());
    // a corrupt image after a good one: the error names it, and no mask is written
    let broken = dir.join("broken.png");
    std::fs::write(&broken, b"\x89PNG\r\n\x1a\n not a png").unwrap();
    let err = predict_saved(
        &SegPredictConfig {
            images: vec![images[0].clone(), broken],
            out: dir.join("pred3"),
            ..pcfg.clone()
        },
        &device,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("broken.png"), "{err}");
    assert!(!dir.join("pred3").exists());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// `--freeze 2 --bn frozen`: the stem and stages 1-2 leave training bit for bit as they
/// started, the later stages and the head move, and no BatchNorm statistic changes.
#[test]
fn freeze_keeps_the_first_stages() {
    use sptune::regularizer::Scheme;
    use sptune::segmentation::run::default_train;
    use sptune::segmentation::{SceneOptions, compose_scenes, finetune, starting_point};
    let device = Device::flex();
    let ad = device.clone().autodiff();
    let r = ResNet::with_layout(false, [1, 1, 1, 1], 1, 1, 4, true, &ad);
    let source = as_checkpoint(&r);
    let net = SegNet::fcn(Backbone::from_resnet(r), 3, &ad);
    let before: HashMap<String, Vec<f32>> = params::values(&net)
        .into_iter()
        .map(|(i, v)| (i.name, v))
        .collect();
    let o = SceneOptions {
        count: 8,
        size: 16,
        items: (1, 2),
        threshold: 0.1,
        seed: 1,
    };
    let scenes = compose_scenes(&shapes(), &o).unwrap();
    let mut cfg = default_train(Scheme::L2Sp);
    cfg.epochs = 1;
    cfg.batch_size = 4;
    cfg.lr = 0.1;
    cfg.augment.crop = Some((16, 16));
    cfg.mean = vec![0.2];
    cfg.std = vec![0.3];
    cfg.freeze = Some(2);
    cfg.bn = sptune::train::BnMode::Frozen;
    let start = starting_point(&source);
    let (tuned, _) = finetune(net, Some(&start), &scenes, &cfg, &ad).unwrap();
    let mut moved = (0, 0);
    for (i, v) in params::values(&tuned) {
        let same = before[&i.name] == v;
        let stage = Backbone::stage_of(&i.name);
        if i.name.contains("running_") || stage.is_some_and(|s| s <= 2) {
            assert!(same, "{} changed", i.name);
        } else if i.kind != params::Kind::Buffer && !same {
            if stage.is_some() {
                moved.0 += 1;
            } else {
                moved.1 += 1;
            }
        }
    }
    assert!(
        moved.0 > 0 && moved.1 > 0,
        "trainable tensors moved: {moved:?}"
    );
    assert_eq!(Backbone::stage_of("backbone.bn1.weight"), Some(0));
    assert_eq!(
        Backbone::stage_of("backbone.layer4.0.conv1.weight"),
        Some(4)
    );
    assert_eq!(Backbone::stage_of("classifier.0.weight"), None);
    cfg.freeze = Some(5);
    let net = SegNet::fcn(
        Backbone::from_resnet(ResNet::with_layout(false, [1, 1, 1, 1], 1, 1, 4, true, &ad)),
        3,
        &ad,
    );
    let e = finetune(net, Some(&start), &scenes, &cfg, &ad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--freeze") && e.contains('5'), "{e}");
}

/// EfficientNet-Lite0 as a backbone: output stride 32, 16 or 8 by dilating its last striding
/// stages (6, then 4) as torchvision dilates MobileNet-V3 (every depthwise convolution from the
/// dilated stage on: stride 1, the dilation reached, padding `d·(k−1)/2`, worked out by hand
/// below); logits at the input size; `--freeze` counts its stages by name; `segment` fine-tunes
/// it from a checkpoint file with BatchNorm frozen (`--bn auto` for its momentum of 0.01) and
/// saves a network that reads back to the same metrics.
#[test]
fn efficientnet_lite0_backbone() {
    use sptune::models::checkpoint::save_model;
    use sptune::models::{ModelSpec, Net};
    use sptune::segmentation::run::{SegEvalConfig, default_train, evaluate_saved};
    use sptune::segmentation::saved::backbone_of;
    use sptune::segmentation::{SegmentConfig, segment};
    let device = Device::flex();
    let spec = ModelSpec {
        arch: "efficientnet-lite0".into(),
        classes: vec!["square".into(), "plus".into()],
        input: [1, 32, 32],
        width: 0,
        small_stem: false,
        hidden: vec![],
        mean: vec![0.2],
        std: vec![0.3],
    };
    let x = || Tensor::<4>::ones([1, 1, 64, 64], &device);
    for (os, side) in [(32, 2), (16, 4), (8, 8)] {
        let b = backbone_of(&spec, spec.init(&device).unwrap(), os).unwrap();
        assert_eq!(
            b.forward(x()).dims(),
            [1, 1280, side, side],
            "output stride {os}"
        );
    }
    assert!(backbone_of(&spec, spec.init(&device).unwrap(), 4).is_err());
    // the dilation rule at output stride 8 (blocks: stage 3 is 3-4, stage 4 is 5-7 with k 3,
    // stage 5 is 8-10 with k 5, stage 6 is 11-14 with k 5, stage 7 is 15 with k 3): stage 3
    // keeps its stride 2 and "SAME"; stages 4 and 5 get dilation 2, stages 6 and 7 dilation 4,
    // all stride 1, padding d·(k−1)/2
    let b = backbone_of(&spec, spec.init(&device).unwrap(), 8).unwrap();
    for (i, k, want) in [
        (3, 5, (2, 1, None)),
        (5, 3, (1, 2, Some(2))),
        (8, 5, (1, 2, Some(4))),
        (11, 5, (1, 4, Some(8))),
        (15, 3, (1, 4, Some(4))),
    ] {
        let name = format!("backbone._blocks.{i}._depthwise_conv.weight");
        assert_eq!(b.depthwise(i), Some(want), "{name}");
        let net = SegNet::fcn(
            backbone_of(&spec, spec.init(&device).unwrap(), 32).unwrap(),
            3,
            &device,
        );
        let shape = params::table(&net)
            .into_iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .shape;
        assert_eq!(shape[2], k, "{name}");
    }
    let net = SegNet::fcn(b, 3, &device);
    for (h, w) in [(45, 37), (32, 32)] {
        let y = net.forward(Tensor::<4>::ones([1, 1, h, w], &device));
        assert_eq!(y.dims(), [1, 3, h, w]);
    }
    for (name, stage) in [
        ("backbone._conv_stem.weight", Some(0)),
        ("backbone._blocks.0._bn1.weight", Some(1)),
        ("backbone._blocks.15._project_conv.weight", Some(7)),
        ("backbone._bn1.running_var", Some(8)),
        ("classifier.4.bias", None),
    ] {
        assert_eq!(Backbone::stage_of(name), stage, "{name}");
    }
    // segment from a Lite0 checkpoint
    let dir = tempfile::tempdir().unwrap();
    let init = dir.path().join("lite0.safetensors");
    let source_net = spec.init(&device).unwrap();
    save_model(&source_net, &spec, &init, &[]).unwrap();
    write_scenes(&dir.path().join("scenes"), 32, 8, 2);
    let mut train = default_train(sptune::regularizer::Scheme::L2Sp);
    train.epochs = 1;
    train.batch_size = 4;
    train.augment.crop = Some((32, 32));
    let out = dir.path().join("seg.safetensors");
    let cfg = SegmentConfig {
        init,
        data: dir.path().join("scenes"),
        out: Some(out.clone()),
        output_stride: 16,
        head: HeadConfig::Fcn,
        train,
        source: None,
        fisher: None,
        alphas: vec![],
        lrs: vec![],
        validation: 0.2,
    };
    let o = segment(&cfg, &device).unwrap();
    let saved = Checkpoint::read_file(&out).unwrap();
    // BatchNorm frozen: the backbone's running statistics are the source's
    let Net::EfficientNet(_) = &source_net else {
        panic!("not an EfficientNet")
    };
    let src: HashMap<String, Vec<f32>> = params::values(&source_net)
        .into_iter()
        .map(|(i, v)| (i.name, v))
        .collect();
    for n in ["_blocks.7._bn1.running_mean", "_bn1.running_var"] {
        assert_eq!(saved.tensors[&format!("backbone.{n}")].1, src[n], "{n}");
    }
    let e = evaluate_saved(
        &SegEvalConfig {
            model: out,
            data: dir.path().join("scenes"),
            source: None,
        },
        &device,
    )
    .unwrap();
    assert_eq!((e.miou, e.pixel_accuracy), (o.miou, o.pixel_accuracy));
    // forgetting's classifier: the fine-tuned backbone with the source's `_fc` fills a Lite0
    let back = sptune::segmentation::saved::load(&e.model, &device).unwrap();
    let src_ckpt = Checkpoint::read_file(&cfg.init).unwrap();
    let tuned = sptune::segmentation::run::as_classifier(&back.net, &src_ckpt);
    let (_, report) =
        sptune::models::checkpoint::load_into(spec.init(&device).unwrap(), &spec, &tuned, false)
            .unwrap();
    assert!(
        report.missing.is_empty() && report.unused.is_empty() && report.mismatched.is_empty(),
        "{report:?}"
    );
    assert_eq!(tuned.tensors["_fc.weight"], src_ckpt.tensors["_fc.weight"]);
}
