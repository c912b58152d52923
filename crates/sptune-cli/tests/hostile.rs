//! Hostile use (issue 25): outputs that are inputs, under other spellings. Each case runs the
//! release binary and asserts exit 2, one line naming the output and the input, and the input
//! left byte for byte as it was.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_clean_failure, assert_success, class_folders, pretrain_mlp, run, s, tiny_idx};

/// The bytes of every file under `dir` (recursively), by path.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Every command that writes refuses an output that is one of its inputs, whatever the
/// spelling (`./x`, `d/../x`, a symbolic link, a hard link) or an output inside the data
/// folder it reads; the message names both, and no input changes. Planted once: with `util::refuse_input`
/// returning early, `auto` replaced its own `--init` through the symbolic link and exited 0.
#[test]
fn an_output_that_is_an_input_is_refused_by_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = t.join("data");
    std::fs::create_dir(&data).unwrap();
    tiny_idx(&data, 4, 8);
    let src = t.join("src.safetensors");
    pretrain_mlp(&data, &src);
    let link = t.join("link.safetensors");
    std::os::unix::fs::symlink(&src, &link).unwrap();
    let hard = t.join("hard.safetensors");
    std::fs::hard_link(&src, &hard).unwrap();
    let labels = data.join("train-labels-idx1-ubyte");
    let dotted = format!("{}/../{}", s(&data), "src.safetensors");
    let config = t.join("run.toml");
    std::fs::write(&config, "[train]\nepochs = 1\n").unwrap();

    // a tiny automatic study, whose folder the report must not write into
    let auto_out = t.join("auto.safetensors");
    let r = run(&[
        "auto",
        "--init",
        s(&src),
        "--data",
        s(&data),
        "--classes",
        "2,3",
        "--schemes",
        "l2-sp",
        "--trials",
        "1",
        "--epochs",
        "1",
        "--out",
        s(&auto_out),
    ]);
    assert_success(&r);
    let study = t.join("auto.auto");
    assert!(study.join("study.sqlite").is_file(), "{}", r.stderr);

    let images = t.join("images");
    class_folders(&images, &["a", "b"], 4);
    let study_toml = t.join("study.toml");
    std::fs::write(
        &study_toml,
        format!(
            "schemes = [\"l2-sp\"]\nseeds = 1\n[source]\ninit = {:?}\n[target]\ndata = {:?}\n\
             classes = \"a,b\"\n",
            s(&src),
            s(&images)
        ),
    )
    .unwrap();
    let kept = snapshot(&study)
        .into_iter()
        .map(|(p, _)| p)
        .find(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .expect("a checkpoint in the study folder");
    let before = (snapshot(t), std::fs::read(&src).unwrap());
    let common = ["--data", s(&data), "--classes", "2,3", "--epochs", "1"];
    let cases: Vec<(&str, Vec<String>, Vec<&str>)> = vec![
        (
            "auto --out = --init through a symbolic link",
            [
                &[
                    "auto",
                    "--init",
                    s(&src),
                    "--trials",
                    "1",
                    "--out",
                    s(&link),
                ][..],
                &common,
            ]
            .concat(),
            vec![s(&link), "is also the input"],
        ),
        (
            "finetune --out = the labels file it trains on",
            [
                &["finetune", "--init", s(&src), "--out", s(&labels)][..],
                &common,
            ]
            .concat(),
            vec![s(&labels), "lies inside", "reads"],
        ),
        (
            "finetune --out = --init through data/../",
            [
                &["finetune", "--init", s(&src), "--out", &dotted][..],
                &common,
            ]
            .concat(),
            vec![&dotted, "is also the starting point"],
        ),
        (
            "finetune --out = its --config file",
            [
                &[
                    "finetune",
                    "--init",
                    s(&src),
                    "--config",
                    s(&config),
                    "--out",
                    s(&config),
                ][..],
                &common,
            ]
            .concat(),
            vec![s(&config), "is also the input"],
        ),
        (
            "pretrain --out = its --config file",
            [
                &[
                    "pretrain",
                    "--arch",
                    "mlp",
                    "--config",
                    s(&config),
                    "--out",
                    s(&config),
                ][..],
                &common,
            ]
            .concat(),
            vec![s(&config), "is also the input"],
        ),
        (
            "fisher --out = the model, through a hard link",
            vec![
                "fisher",
                "--model",
                s(&src),
                "--data",
                s(&data),
                "--out",
                s(&hard),
            ],
            vec![s(&hard), "is also the input", s(&src)],
        ),
        (
            "convert OUTPUT = INPUT",
            vec!["convert", s(&src), s(&link), "--arch", "mlp"],
            vec!["OUTPUT", s(&link), "is also the input"],
        ),
        (
            "interpolate --out = --to",
            vec![
                "interpolate",
                "--from",
                s(&src),
                "--to",
                s(&auto_out),
                "--at",
                "0.5",
                "--data",
                s(&data),
                "--out",
                s(&auto_out),
            ],
            vec![s(&auto_out), "is also the input"],
        ),
        (
            "report -o the study file",
            vec!["report", s(&study), "-o", s(&study.join("study.sqlite"))],
            vec!["study.sqlite", "is also the input"],
        ),
        (
            "report -o a checkpoint of the study",
            vec!["report", s(&study), "-o", s(&kept)],
            vec![s(&kept), "is a file of the study"],
        ),
        (
            "study --dir inside its data folder",
            vec![
                "study",
                "--config",
                s(&study_toml),
                "--dir",
                s(&images.join("study")),
            ],
            vec!["--dir", "lies inside"],
        ),
        (
            "auto --dir inside its data folder",
            [
                &[
                    "auto",
                    "--init",
                    s(&src),
                    "--trials",
                    "1",
                    "--out",
                    s(&t.join("x.safetensors")),
                ][..],
                &[
                    "--dir",
                    s(&images.join("study")),
                    "--data",
                    s(&images),
                    "--epochs",
                    "1",
                ],
            ]
            .concat(),
            vec!["--dir", "lies inside"],
        ),
    ]
    .into_iter()
    .map(|(what, args, needles)| (what, args.into_iter().map(String::from).collect(), needles))
    .collect();
    for (what, args, needles) in &cases {
        let r = run(args);
        eprintln!("{what}: {}", r.stderr.trim());
        assert_clean_failure(&r, needles, None);
    }
    let after = (snapshot(t), std::fs::read(&src).unwrap());
    assert!(before == after, "an input changed");
    assert!(
        !images.join("study").exists(),
        "the study folder was created"
    );
}
