//! The same run twice gives the same bytes: a pretrain's checkpoint, its run directory's files
//! (apart from the ones that record times) and a Fisher file compare equal byte for byte
//! (the safetensors crate writes metadata from a `HashMap` in a random order; sptune sorts the
//! header, `models::checkpoint::canonical_header`).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::Device;
use sptune::run::{self, FisherConfig, PretrainConfig};

/// Every file under `dir`, by relative path, with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Whether a JSON key or CSV column holds a time.
fn is_time(k: &str) -> bool {
    k == "seconds" || k.ends_with("_seconds") || k.ends_with("_at")
}

/// A JSON (or JSON-lines) file's values without the keys that hold times.
fn untimed_json(bytes: &[u8]) -> Vec<serde_json::Value> {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.retain(|k, _| !is_time(k));
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let text = String::from_utf8_lossy(bytes);
    let mut values: Vec<serde_json::Value> = match serde_json::from_str(&text) {
        Ok(v) => vec![v],
        Err(_) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    };
    values.iter_mut().for_each(strip);
    values
}

/// A CSV file's rows without the columns that hold times.
fn untimed_csv(bytes: &[u8]) -> Vec<Vec<String>> {
    let text = String::from_utf8_lossy(bytes);
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    let keep: Vec<bool> = rows
        .first()
        .map(|h| h.iter().map(|c| !is_time(c)).collect())
        .unwrap_or_default();
    rows.iter()
        .map(|r| {
            r.iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(c, _)| c.to_string())
                .collect()
        })
        .collect()
}

#[test]
fn the_same_pretrain_and_fisher_twice_give_the_same_bytes() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    common::tiny_idx(&data);
    let dev = Device::flex();
    let mut runs = vec![];
    // both runs write to the same paths (the run's config names them), one after the other
    let dir = d.path().join("run");
    for _ in 0..2 {
        let mut pre = PretrainConfig::default();
        pre.data.data = data.to_str().unwrap().into();
        pre.data.classes = "0-2".into();
        pre.model.arch = "mlp".into();
        pre.model.hidden = vec![16];
        (pre.train.epochs, pre.train.batch_size, pre.train.lr) = (2, 16, 0.1);
        pre.out = Some(dir.join("src.safetensors"));
        run::pretrain(&pre, &dev, &mut |_| {}).unwrap();
        run::fisher(
            &FisherConfig {
                model: dir.join("src.safetensors"),
                data: sptune::task::DataConfig {
                    data: data.to_str().unwrap().into(),
                    classes: "0-2".into(),
                    ..Default::default()
                },
                samples: 30,
                out: Some(dir.join("src.fisher.safetensors")),
                ..FisherConfig::default()
            },
            &dev,
            &mut |_, _| {},
        )
        .unwrap();
        runs.push(files(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }
    let (a, b) = (&runs[0], &runs[1]);
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the two runs wrote different files"
    );
    assert!(a.contains_key("src.safetensors") && a.contains_key("src.fisher.safetensors"));
    let mut compared = 0;
    for (name, bytes) in a {
        // the run's records carry wall-clock times: equal once those are dropped
        if name.ends_with(".json") || name.ends_with(".jsonl") {
            let (x, y) = (untimed_json(bytes), untimed_json(&b[name]));
            assert_eq!(
                x, y,
                "{name} differs (apart from times) between two identical runs"
            );
            compared += 1;
            continue;
        }
        if name.ends_with(".csv") {
            let (x, y) = (untimed_csv(bytes), untimed_csv(&b[name]));
            assert_eq!(
                x, y,
                "{name} differs (apart from times) between two identical runs"
            );
            compared += 1;
            continue;
        }
        assert!(
            bytes == &b[name],
            "{name} differs between two identical runs:\n{}\n{}",
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&b[name])
        );
        compared += 1;
    }
    assert!(
        compared >= 3,
        "compared only {compared} files: {:?}",
        a.keys()
    );
}
