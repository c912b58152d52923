//! Resumable training (`train::resume`): a run stopped after any epoch and resumed from the
//! state saved there ends with exactly the bits of a run never stopped: every tensor of the
//! last network and of the best-validation network, and every epoch log. Covered: a ResNet
//! with BatchNorm in training mode, augmentation (the random stream), momentum, a validation
//! split (the best epoch), L2-SP from a starting point, and the step schedule's lr drops.

use std::path::Path;

use burn::tensor::Device;
use sptune::data::Dataset;
use sptune::models::{ModelSpec, Net};
use sptune::params;
use sptune::regularizer::{Scheme, StartingPoint};
use sptune::train::{self, EpochLog, EpochState, Hooks, TrainConfig, resume};

fn spec() -> ModelSpec {
    ModelSpec {
        arch: "resnet18".into(),
        classes: (0..3).map(|c| c.to_string()).collect(),
        input: [1, 12, 12],
        width: 4,
        small_stem: true,
        hidden: vec![],
        mean: vec![0.5],
        std: vec![0.25],
    }
}

fn dataset(n: usize, offset: usize) -> Dataset {
    let side = 12;
    let images: Vec<f32> = (0..n * side * side)
        .map(|i| (((i + offset * 977) as f32) * 0.618).fract())
        .collect();
    Dataset {
        images,
        labels: (0..n).map(|i| (i * 7 + offset) % 3).collect(),
        classes: (0..3).map(|c| c.to_string()).collect(),
        channels: 1,
        height: side,
        width: side,
    }
}

fn cfg() -> TrainConfig {
    TrainConfig {
        epochs: 4,
        batch_size: 8,
        lr: 0.05,
        augment: true,
        reg: Scheme::L2Sp,
        alpha: 0.01,
        seed: 3,
        ..TrainConfig::finetune()
    }
}

type Tensors = Vec<(String, Vec<u32>)>;

struct Outcome {
    last: Tensors,
    best: (usize, Tensors),
    logs: Vec<EpochLog>,
    per_epoch: Vec<(usize, Tensors)>,
}

fn bits(net: &Net) -> Tensors {
    params::values(net)
        .into_iter()
        .map(|(i, v)| (i.name, v.iter().map(|x| x.to_bits()).collect()))
        .collect()
}

/// The starting network (seeded) and its starting point.
fn start(dev: &Device) -> (Net, StartingPoint) {
    dev.seed(11);
    let s = spec();
    let net = s.init(dev).unwrap();
    let sp = StartingPoint::of_network(&net, &s.head_names());
    (net, sp)
}

/// Trains, saving the state into `dir` at every epoch end; `kill_after` ends the run right after
/// that epoch's state is written (as a kill would); `resume_from` continues from `dir`.
/// Returns the last network, the best one, the logs and the network at each epoch end of
/// this process.
fn run(dir: &Path, kill_after: Option<usize>, resume_from: bool) -> Option<Outcome> {
    let dev = Device::flex().autodiff();
    let (net, sp) = start(&dev);
    let (train_set, val_set) = (dataset(40, 0), dataset(12, 1));
    let state = if resume_from {
        resume::read(dir).unwrap()
    } else {
        None
    };
    let mut per_epoch = vec![];
    let mut save = |st: &EpochState<'_>| -> sptune::Result<()> {
        per_epoch.push((st.epochs_done, bits(st.net)));
        resume::save(dir, st)?;
        if Some(st.epochs_done) == kill_after {
            return Err(sptune::Error::Other("killed".into()));
        }
        Ok(())
    };
    let hooks = Hooks {
        progress: &mut |_| {},
        stop: &mut |_| false,
        resume: state,
        save_state: Some(&mut save),
        probe: None,
    };
    let spec = spec();
    match train::fit_with(
        net,
        &spec,
        Some(&sp),
        &train_set,
        Some(&val_set),
        &cfg(),
        &dev,
        hooks,
    ) {
        Ok(f) => {
            let (e, best) = f.best.expect("a validation split gives a best epoch");
            assert!((1..=4).contains(&e));
            Some(Outcome {
                last: bits(&f.net),
                best: (e, bits(&best)),
                logs: f.logs,
                per_epoch,
            })
        }
        Err(sptune::Error::Other(m)) if m == "killed" => None,
        Err(e) => panic!("{e}"),
    }
}

fn same_logs(a: &[EpochLog], b: &[EpochLog]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        // wall time is the only field allowed to differ
        let y = EpochLog {
            seconds: x.seconds,
            ..y.clone()
        };
        assert_eq!(*x, y, "epoch {} differs", x.epoch);
    }
}

#[test]
fn resumed_after_any_epoch_ends_with_the_same_bits() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = run(&tmp.path().join("whole"), None, false).unwrap();
    let (last, best, logs) = (&whole.last, &whole.best, &whole.logs);
    assert_eq!(logs.len(), 4);
    // the best network is the one of its epoch, BatchNorm running statistics included (a
    // plain clone of the network would share them with the training network)
    let at_best = &whole
        .per_epoch
        .iter()
        .find(|(e, _)| *e == best.0)
        .unwrap()
        .1;
    assert!(best.1 == *at_best, "best network is not epoch {}'s", best.0);
    assert!(
        best.0 < 4,
        "the test needs a best epoch before the last one"
    );
    // the lr drops (step schedule) and the random stream both lie across the kill points
    assert!(logs.iter().any(|l| l.lr < cfg().lr));
    for kill in 1..=3 {
        let dir = tmp.path().join(format!("kill{kill}"));
        assert!(run(&dir, Some(kill), false).is_none());
        let st = resume::read(&dir).unwrap().expect("a state was saved");
        assert_eq!(st.epochs_done, kill);
        let again = run(&dir, None, true).unwrap();
        same_logs(logs, &again.logs);
        assert!(
            *last == again.last,
            "last network differs after a kill at epoch {kill}"
        );
        assert!(
            *best == again.best,
            "best network differs after a kill at epoch {kill}"
        );
    }
}

#[test]
fn a_missing_state_reads_as_none_and_a_foreign_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(resume::read(tmp.path()).unwrap().is_none());
    std::fs::write(tmp.path().join("state.safetensors"), b"not a state").unwrap();
    let e = resume::read(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("state.safetensors"), "{e}");
}
