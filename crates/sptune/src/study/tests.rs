//! Unit tests of the study's choice: the winner, halving, the budget, the finals' flags.
use super::objective::Measure;
use super::*;

fn trial(scheme: &str, alpha: f64, status: Status, acc: f64, loss: f64) -> Trial {
    Trial {
        id: 0,
        key: format!("search/{scheme}/{alpha}"),
        phase: "search".into(),
        scheme: scheme.into(),
        params: json!({"alpha": alpha, "beta": 0.01, "lr": 0.02, "backbone_lr_mult": 1.0}),
        seed: 0,
        status,
        metrics: Some(json!({"val_acc": acc, "val_loss": loss})),
        epochs: None,
        error: None,
        seconds: None,
        worker: None,
        host: None,
        started_at: None,
        finished_at: None,
    }
}

#[test]
fn the_best_accuracy_wins_then_the_lower_loss_then_the_earlier_trial() {
    let ts = [
        trial("l2-sp", 0.1, Status::Done, 0.90, 0.50),
        trial("l2-sp", 1.0, Status::Done, 0.92, 0.40),
        trial("l2-sp", 3.0, Status::Done, 0.92, 0.30), // same accuracy, lower loss
        trial("l2-sp", 9.0, Status::Stopped, 0.99, 0.10), // stopped early: not a candidate
        trial("l2", 0.01, Status::Done, 0.80, 0.70),
        trial("l2", 0.02, Status::Done, 0.80, 0.70), // a full tie: the earlier stays
    ];
    let c = chosen(&ts, &Goal::target());
    assert_eq!(c["l2-sp"].point.alpha, 3.0);
    assert_eq!(c["l2-sp"].val_acc, 0.92);
    assert_eq!(c["l2"].point.alpha, 0.01);
    let cfg = StudyConfig {
        schemes: vec![Scheme::L2, Scheme::L2Sp],
        ..StudyConfig::default()
    };
    assert_eq!(best_scheme(&cfg, &c), Some(Scheme::L2Sp));
}

/// A search trial of `scheme` at learning rate `lr` whose validation accuracy at epoch e
/// (1-based) is `curve(e)`, run for `epochs` epochs.
fn run_trial(lr: f64, epochs: usize, curve: impl Fn(usize) -> f64) -> Trial {
    let logs: Vec<Value> = (1..=epochs)
        .map(|e| json!({"epoch": e, "val_acc": curve(e)}))
        .collect();
    let mut t = trial("l2-sp", 0.1, Status::Done, curve(epochs), 0.5);
    t.params["lr"] = json!(lr);
    t.epochs = Some(Value::Array(logs));
    t
}

/// Halving at 20 epochs, η = 3 (milestones 2 and 6): three fast arms (lr 0.02, quick to
/// plateau at 70-74 %) run first, then three slow ones (lr 0.005, accuracy q·(1 − e^(−e/6)):
/// 24 % at epoch 2 for the best of them, 82 % at epoch 20). Compared only with trials of its
/// own learning rate, the best slow arm runs to the end and beats every fast arm; compared
/// with the fast arms, it would have been stopped at epoch 2.
#[test]
fn a_slow_but_better_arm_survives_halving() {
    let (epochs, eta) = (20, 3);
    let ms = search::milestones(epochs, eta);
    assert_eq!(ms, vec![2, 6]);
    let goal = Goal::target();
    let fast = |q: f64| move |e: usize| q * (1.0 - (-(e as f64)).exp());
    let slow = |q: f64| move |e: usize| q * (1.0 - (-(e as f64) / 6.0).exp());
    let mut done: Vec<Trial> = vec![];
    let mut finished = vec![];
    type Curve = Box<dyn Fn(usize) -> f64>;
    let arms: Vec<(f64, Curve)> = vec![
        (0.02, Box::new(fast(0.70))),
        (0.02, Box::new(fast(0.72))),
        (0.02, Box::new(fast(0.74))),
        (0.005, Box::new(slow(0.60))),
        (0.005, Box::new(slow(0.70))),
        (0.005, Box::new(slow(0.85))),
    ];
    for (i, (lr, curve)) in arms.iter().enumerate() {
        let recorded = recorded_measures(&done, "l2-sp", *lr, None);
        let mut ran = epochs;
        for &m in &ms {
            let here = measure(curve(m), None, None);
            if !halving_continues(&goal, &recorded, m, here, eta) {
                ran = m;
                break;
            }
        }
        if ran == epochs {
            finished.push(i);
        }
        let mut t = run_trial(*lr, ran, curve);
        if ran < epochs {
            t.status = Status::Stopped;
        }
        done.push(t);
    }
    assert!(
        finished.contains(&5),
        "the best slow arm was stopped: {finished:?}"
    );
    // it ends best of all, so it is the chosen point
    let c = chosen(&done, &goal);
    assert_eq!(c["l2-sp"].point.lr, 0.005);
    assert!(c["l2-sp"].val_acc > 0.8);
    // against every trial regardless of learning rate it would have lost at epoch 2
    let all: Vec<Vec<Measure>> = done[..3]
        .iter()
        .map(|t| {
            val_series(t.epochs.as_ref().unwrap())
                .into_iter()
                .map(|a| measure(a, None, None))
                .collect()
        })
        .collect();
    let here = measure(arms[5].1(2), None, None);
    assert!(!halving_continues(&goal, &all, 2, here, eta));
}

/// Under a forgetting budget a scheme's point is the most accurate one within it, and with
/// none within it the one that forgets least; the target-only choice ignores forgetting.
#[test]
fn budget_chooses_within_the_budget_or_the_least_forgetting() {
    let with_f = |alpha: f64, acc: f64, f: f64| {
        let mut t = trial("l2-sp", alpha, Status::Done, acc, 0.5);
        t.metrics.as_mut().unwrap()["val_forgetting"] = json!(f);
        t
    };
    let ts = [
        with_f(0.01, 0.90, 20.0),
        with_f(1.0, 0.80, 2.5),
        with_f(3.0, 0.82, 2.9),
        with_f(9.0, 0.60, 0.5),
    ];
    let budget = Goal {
        objective: config::Objective::Budget,
        max_forgetting: 3.0,
        lambda: 1.0,
    };
    assert_eq!(chosen(&ts, &budget)["l2-sp"].point.alpha, 3.0);
    assert_eq!(chosen(&ts, &Goal::target())["l2-sp"].point.alpha, 0.01);
    let strict = Goal {
        max_forgetting: 0.1,
        ..budget
    };
    let c = chosen(&ts, &strict)["l2-sp"];
    assert_eq!(c.point.alpha, 9.0);
    assert!(!c.feasible);
}

fn report(test_acc: f64, losses: &[f64]) -> run::RunReport {
    run::RunReport {
        out: None,
        run_dir: None,
        test_acc,
        test_images: 100,
        images: String::new(),
        val_acc: None,
        epochs: losses
            .iter()
            .enumerate()
            .map(|(i, &l)| EpochLog {
                epoch: i + 1,
                lr: 0.01,
                task_loss: l,
                penalty_shared: 0.0,
                penalty_new: 0.0,
                train_acc: 0.5,
                val_acc: None,
                val_loss: None,
                seconds: 1.0,
                source_val_acc: None,
            })
            .collect(),
        load: None,
        bn: crate::train::BnMode::Train,
        best_epoch: None,
        stopped: false,
    }
}

/// The Lite0 collapse seen in PyTorch too: 20.6 % on 5 classes is one class predicted.
#[test]
fn finals_at_chance_or_with_a_rising_loss_are_flagged() {
    assert!(health(&report(0.86, &[1.2, 0.4, 0.1]), 5).is_empty());
    let at_chance = health(&report(0.206, &[1.6, 1.6, 1.6]), 5);
    assert_eq!(at_chance.len(), 1, "{at_chance:?}");
    assert!(
        at_chance[0].contains("near chance (20.0 %)"),
        "{at_chance:?}"
    );
    // 1.5 / 10 classes = 15 %: 16 % is not flagged
    assert!(health(&report(0.16, &[2.3, 1.0]), 10).is_empty());
    let rose = health(&report(0.7, &[0.9, 0.5, 1.1]), 5);
    assert!(
        rose.len() == 1 && rose[0].contains("rose from 0.900"),
        "{rose:?}"
    );
    assert_eq!(health(&report(0.7, &[0.9, f64::NAN]), 5).len(), 1);
}
