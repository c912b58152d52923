//! A user's own image folder, tried as a new user would (3 class folders of 15 PNGs, no test
//! split): `finetune` takes every class folder without `--classes`, accepts folder names and
//! indices alike, and says which images it trained and tested on (the test images held out of
//! the folder); `eval` on a flat folder evaluates every image of it.

mod common;

use common::{class_folders, run, s};

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn an_image_folder_without_traps() {
    let d = tempfile::tempdir().unwrap();
    let classes = ["boot", "sandal", "sneaker"];
    let (train, test) = (d.path().join("shoes/train"), d.path().join("shoes/test"));
    class_folders(&train, &classes, 15);
    class_folders(&test, &classes, 10);
    let src = d.path().join("src.safetensors");
    let r = run(&[
        "pretrain",
        "--data",
        s(&train),
        "--arch",
        "mlp",
        "--hidden",
        "16",
        "--epochs",
        "1",
        "--out",
        s(&src),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    // no --classes: every class folder; 45 images, 20 % held out as the test images
    let ft = d.path().join("ft.safetensors");
    let r = run(&[
        "--json",
        "finetune",
        "--init",
        s(&src),
        "--data",
        s(&train),
        "--epochs",
        "1",
        "--out",
        s(&ft),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rep = json(&r.stdout);
    let images = rep["images"].as_str().unwrap();
    assert!(
        images.contains("3 classes: boot, sandal, sneaker")
            && images.contains("training 36")
            && images.contains("test 9 held out of the training images"),
        "{images}"
    );
    assert_eq!(rep["test_images"], 9);

    // names and indices (the folders sorted by name) are the same classes
    let mut picked = vec![];
    for spec in ["sandal,sneaker", "1-2"] {
        let out = d
            .path()
            .join(format!("ft-{}.safetensors", spec.replace(',', "_")));
        let r = run(&[
            "--json",
            "finetune",
            "--init",
            s(&src),
            "--data",
            s(&train),
            "--classes",
            spec,
            "--epochs",
            "1",
            "--out",
            s(&out),
        ]);
        assert_eq!(r.code, 0, "{spec}: {}", r.stderr);
        let images = json(&r.stdout)["images"].as_str().unwrap().to_string();
        picked.push(images.split(':').nth(1).unwrap().to_string());
        assert!(
            images.contains("2 classes: sandal, sneaker"),
            "{spec}: {images}"
        );
    }

    // eval on a flat folder of 30 images: all 30 of them, and it says so
    let r = run(&["--json", "eval", "--model", s(&ft), "--data", s(&test)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let e = json(&r.stdout);
    assert_eq!(e["test_images"], 30, "{e}");
    assert!(e["images"].as_str().unwrap().contains("every image"), "{e}");
}
