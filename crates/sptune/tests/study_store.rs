//! The study file: planning, claiming, finishing, requeueing, sharing between workers, and
//! refusing files that are not this study's.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;
use sptune::study::store::{NewTrial, SCHEMA_VERSION, Status, Store};

const CONFIG: &str = "[study]\nname = \"test\"\nseeds = 3\n";

fn new_trial(phase: &str, i: usize) -> NewTrial {
    NewTrial {
        key: format!("{phase}/l2-sp/{i:03}"),
        phase: phase.to_string(),
        scheme: "l2-sp".to_string(),
        params: json!({ "alpha": 0.01 * i as f64, "beta": 0.1, "lr": 1e-3 }),
        seed: u64::MAX - i as u64,
    }
}

fn trials(phase: &str, n: usize) -> Vec<NewTrial> {
    (0..n).map(|i| new_trial(phase, i)).collect()
}

fn fresh(dir: &Path) -> std::path::PathBuf {
    dir.join("study.sqlite")
}

#[test]
fn plan_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&fresh(dir.path()), CONFIG).unwrap();
    assert_eq!(store.plan(&trials("search", 5)).unwrap(), 5);
    assert_eq!(store.plan(&trials("search", 5)).unwrap(), 0);
    // a superset adds only the new ones
    assert_eq!(store.plan(&trials("search", 7)).unwrap(), 2);
    let all = store.trials().unwrap();
    assert_eq!(all.len(), 7);
    for (t, want) in all.iter().zip(trials("search", 7)) {
        assert_eq!(t.key, want.key);
        assert_eq!(t.params, want.params);
        assert_eq!(t.seed, want.seed);
        assert_eq!(t.status, Status::Pending);
        assert!(t.worker.is_none() && t.metrics.is_none() && t.started_at.is_none());
    }
    assert_eq!(store.config().unwrap(), CONFIG);
    assert_eq!(store.counts().unwrap()["pending"], 7);
    assert_eq!(store.counts().unwrap()["done"], 0);
}

#[test]
fn claim_takes_the_lowest_pending_id_and_filters_by_phase() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&fresh(dir.path()), CONFIG).unwrap();
    let mut planned = trials("search", 2);
    planned.extend(trials("final", 2));
    planned.extend(trials("search", 3).into_iter().skip(2));
    store.plan(&planned).unwrap();

    let a = store.claim("w0", None).unwrap().unwrap();
    assert_eq!(a.key, "search/l2-sp/000");
    assert_eq!(a.status, Status::Running);
    assert_eq!(a.worker.as_deref(), Some("w0"));
    assert!(a.host.is_some() && a.started_at.is_some());

    let f = store.claim("w1", Some("final")).unwrap().unwrap();
    assert_eq!(f.key, "final/l2-sp/000");
    let b = store.claim("w1", Some("search")).unwrap().unwrap();
    assert_eq!(b.key, "search/l2-sp/001");
    let c = store.claim("w1", Some("search")).unwrap().unwrap();
    assert_eq!(c.key, "search/l2-sp/002");
    assert!(store.claim("w1", Some("search")).unwrap().is_none());
    assert!(store.claim("w1", Some("nope")).unwrap().is_none());
    let d = store.claim("w1", None).unwrap().unwrap();
    assert_eq!(d.key, "final/l2-sp/001");
    assert!(store.claim("w1", None).unwrap().is_none());
    assert_eq!(store.counts().unwrap()["running"], 5);
    assert_eq!(store.trials_of("final").unwrap().len(), 2);
    assert_eq!(store.trials_of("search").unwrap().len(), 3);
}

#[test]
fn finish_round_trips_through_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = fresh(dir.path());
    let metrics = json!({ "target_acc": 0.8125, "source_acc": 0.5, "dist_w0": 1.25e-3, "nested": { "ci": [0.1, 0.2] } });
    let epochs = json!([{ "epoch": 1, "val_acc": 0.5 }, { "epoch": 2, "val_acc": 0.75 }]);
    {
        let store = Store::open(&path, CONFIG).unwrap();
        store.plan(&trials("search", 3)).unwrap();
        let a = store.claim("w", None).unwrap().unwrap();
        store
            .finish(
                a.id,
                Status::Done,
                Some(&metrics),
                Some(&epochs),
                None,
                12.5,
            )
            .unwrap();
        let b = store.claim("w", None).unwrap().unwrap();
        store
            .finish(
                b.id,
                Status::Failed,
                None,
                None,
                Some("training diverged: loss is NaN"),
                1.0,
            )
            .unwrap();
        let c = store.claim("w", None).unwrap().unwrap();
        store
            .finish(c.id, Status::Stopped, Some(&metrics), None, None, 3.0)
            .unwrap();
        // finishing twice, or a trial that is not running, is refused
        let err = store
            .finish(a.id, Status::Done, None, None, None, 1.0)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("study.sqlite") && err.contains("not running"),
            "{err}"
        );
        assert!(
            store
                .finish(a.id, Status::Running, None, None, None, 1.0)
                .is_err()
        );
        assert!(
            store
                .finish(9999, Status::Done, None, None, None, 1.0)
                .is_err()
        );
    }
    let store = Store::open(&path, CONFIG).unwrap();
    let a = store.get("search/l2-sp/000").unwrap().unwrap();
    assert_eq!(a.status, Status::Done);
    assert_eq!(a.metrics.as_ref(), Some(&metrics));
    assert_eq!(a.epochs.as_ref(), Some(&epochs));
    assert_eq!(a.seconds, Some(12.5));
    assert!(a.error.is_none() && a.finished_at.is_some());
    assert_eq!(a.seed, u64::MAX);
    let b = store.get("search/l2-sp/001").unwrap().unwrap();
    assert_eq!(b.status, Status::Failed);
    assert_eq!(b.error.as_deref(), Some("training diverged: loss is NaN"));
    assert!(b.metrics.is_none());
    let c = store.get("search/l2-sp/002").unwrap().unwrap();
    assert_eq!(c.status, Status::Stopped);
    assert!(store.get("search/l2-sp/999").unwrap().is_none());
    let counts = store.counts().unwrap();
    let want: BTreeMap<String, usize> = [
        ("done", 1),
        ("failed", 1),
        ("pending", 0),
        ("running", 0),
        ("stopped", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(counts, want);
}

#[test]
fn requeue_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let path = fresh(dir.path());
    let claimed = {
        let store = Store::open(&path, CONFIG).unwrap();
        store.plan(&trials("search", 3)).unwrap();
        let a = store.claim("killed", None).unwrap().unwrap();
        let b = store.claim("killed", None).unwrap().unwrap();
        store
            .finish(
                b.id,
                Status::Done,
                Some(&json!({"acc": 1})),
                None,
                None,
                2.0,
            )
            .unwrap();
        a
        // dropped without finishing `a`: the study was killed
    };
    let store = Store::open(&path, CONFIG).unwrap();
    assert_eq!(store.counts().unwrap()["running"], 1);
    assert_eq!(store.requeue_running().unwrap(), 1);
    assert_eq!(store.requeue_running().unwrap(), 0);
    let t = store.get(&claimed.key).unwrap().unwrap();
    assert_eq!(t.status, Status::Pending);
    assert!(t.worker.is_none() && t.started_at.is_none());
    // claimable again, before the never-claimed one (lowest id first)
    let again = store.claim("resumed", None).unwrap().unwrap();
    assert_eq!(again.id, claimed.id);
    assert_eq!(again.worker.as_deref(), Some("resumed"));
    // the finished one stays finished
    assert_eq!(
        store.get("search/l2-sp/001").unwrap().unwrap().status,
        Status::Done
    );
}

#[test]
fn parallel_workers_never_share_a_trial() {
    const N_TRIALS: usize = 40;
    for workers in 2..=4 {
        let dir = tempfile::tempdir().unwrap();
        let path = fresh(dir.path());
        Store::open(&path, CONFIG)
            .unwrap()
            .plan(&trials("search", N_TRIALS))
            .unwrap();
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let store = Store::open(&path, CONFIG).unwrap();
                    let name = format!("w{w}");
                    let mut got = Vec::new();
                    while let Some(t) = store.claim(&name, None).unwrap() {
                        assert_eq!(t.status, Status::Running);
                        let m = json!({ "worker": name, "key": t.key });
                        store
                            .finish(t.id, Status::Done, Some(&m), None, None, 0.0)
                            .unwrap();
                        got.push(t.key);
                    }
                    got
                })
            })
            .collect();
        let mut claims: BTreeMap<String, usize> = BTreeMap::new();
        for h in handles {
            for key in h.join().unwrap() {
                *claims.entry(key).or_default() += 1;
            }
        }
        assert_eq!(claims.len(), N_TRIALS, "{workers} workers");
        assert!(
            claims.values().all(|&n| n == 1),
            "{workers} workers: {claims:?}"
        );
        let store = Store::open(&path, CONFIG).unwrap();
        assert_eq!(store.counts().unwrap()["done"], N_TRIALS);
        for t in store.trials().unwrap() {
            let m = t.metrics.unwrap();
            assert_eq!(m["key"], t.key.as_str());
            assert_eq!(m["worker"], t.worker.unwrap().as_str());
        }
    }
}

#[test]
fn parallel_opens_of_a_new_file_agree() {
    let dir = tempfile::tempdir().unwrap();
    let path = fresh(dir.path());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let store = Store::open(&path, CONFIG).unwrap();
                store.plan(&trials("search", 10)).unwrap()
            })
        })
        .collect();
    let added: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(added, 10);
}

#[test]
fn another_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = fresh(dir.path());
    Store::open(&path, CONFIG).unwrap();
    let err = Store::open(&path, "[study]\nname = \"other\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("another study config"), "{err}");
    assert!(!err.contains('\n'), "{err}");
    Store::open(&path, CONFIG).unwrap();
}

#[test]
fn another_schema_version_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = fresh(dir.path());
    {
        let store = Store::open(&path, CONFIG).unwrap();
        store.plan(&trials("search", 3)).unwrap();
    }
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = Store::open(&path, CONFIG).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(
        err.contains("99") && err.contains(&SCHEMA_VERSION.to_string()),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn foreign_files_are_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    // random bytes
    let path = dir.path().join("random.bin");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let bytes: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&path, &bytes).unwrap();
    let err = Store::open(&path, CONFIG).unwrap_err().to_string();
    assert!(
        err.contains("random.bin") && err.contains("not an sptune study"),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    // text that is not SQLite
    let path = dir.path().join("study.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let err = Store::open(&path, CONFIG).unwrap_err().to_string();
    assert!(err.contains("study.toml"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), CONFIG);

    // an SQLite database of something else
    let path = dir.path().join("other.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = Store::open(&path, CONFIG).unwrap_err().to_string();
    assert!(
        err.contains("other.db") && err.contains("not an sptune study"),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
}
