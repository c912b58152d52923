//! Image-folder loading: layouts, exact PNG pixels, channel conversion, resizing, errors.

use image::{GrayImage, RgbImage};
use sptune::data::load_image_folder;
use std::path::Path;

fn gray_png(path: &Path, w: u32, h: u32, px: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    GrayImage::from_raw(w, h, px.to_vec())
        .unwrap()
        .save(path)
        .unwrap();
}

fn rgb_img(path: &Path, w: u32, h: u32, px: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    RgbImage::from_raw(w, h, px.to_vec())
        .unwrap()
        .save(path)
        .unwrap();
}

fn f(b: u8) -> f32 {
    b as f32 / 255.0
}

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

#[test]
fn gray_png_round_trip_is_exact_and_ordered() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    // Classes sorted by name ("bag" < "coat"); files sorted by name, lexically
    // ("a10.png" < "a2.png" < "z.png"), written in another order on purpose.
    gray_png(&r.join("coat/z.png"), 2, 2, &[1, 2, 3, 4]);
    gray_png(&r.join("coat/a2.png"), 2, 2, &[5, 6, 7, 8]);
    gray_png(&r.join("coat/a10.png"), 2, 2, &[9, 10, 11, 12]);
    gray_png(&r.join("bag/x.png"), 2, 2, &[0, 128, 254, 255]);
    std::fs::write(r.join("bag/notes.txt"), "ignored").unwrap();
    std::fs::write(r.join("README"), "ignored").unwrap();
    let s = load_image_folder(r, 1, 2).unwrap();
    assert!(s.test.is_empty());
    assert_eq!(s.train.classes, vec!["bag", "coat"]);
    assert_eq!(s.train.labels, vec![0, 1, 1, 1]);
    let order = [0, 128, 254, 255, 9, 10, 11, 12, 5, 6, 7, 8, 1, 2, 3, 4];
    let expect: Vec<f32> = order.iter().map(|&b| f(b)).collect();
    assert_eq!(s.train.images, expect);
    assert_eq!((s.train.channels, s.train.height, s.train.width), (1, 2, 2));
}

#[test]
fn rgb_png_exact_and_gray_replicated_to_rgb() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    // HWC bytes of a 2x1 (w x h) RGB image
    rgb_img(&r.join("a/1.png"), 2, 1, &[10, 20, 30, 40, 50, 60]);
    gray_png(&r.join("b/1.png"), 2, 1, &[7, 200]);
    let s = load_image_folder(r, 3, 1).unwrap();
    // resize 1: shorter side 1 already, center crop of width 2 to 1 takes column (2-1)/2 = 0
    assert_eq!(s.train.image(0), &[f(10), f(20), f(30)]);
    assert_eq!(s.train.image(1), &[f(7), f(7), f(7)]);
    // no crop: 1x2 stays, exact CHW
    let d2 = tempfile::tempdir().unwrap();
    rgb_img(&d2.path().join("a/1.png"), 1, 1, &[10, 20, 30]);
    gray_png(&d2.path().join("b/1.png"), 1, 1, &[99]);
    let s = load_image_folder(d2.path(), 3, 1).unwrap();
    assert_eq!(
        s.train.images,
        vec![f(10), f(20), f(30), f(99), f(99), f(99)]
    );
}

#[test]
fn rgb_to_gray_uses_bt601_luma() {
    let d = tempfile::tempdir().unwrap();
    let px = [255u8, 0, 0, 0, 255, 0, 0, 0, 255, 100, 150, 200];
    rgb_img(&d.path().join("c/img.png"), 2, 2, &px);
    let s = load_image_folder(d.path(), 1, 2).unwrap();
    let expect: Vec<f32> = px
        .chunks(3)
        .map(|p| (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32) / 255.0)
        .collect();
    assert!(
        close(&s.train.images, &expect, 1e-6),
        "{:?}",
        s.train.images
    );
}

#[test]
fn center_crop_without_resampling_when_shorter_side_matches() {
    let d = tempfile::tempdir().unwrap();
    // 6 wide x 2 high; resize 2 -> no resampling, crop columns (6-2)/2 = 2..4
    let px: Vec<u8> = (0..12).map(|v| v * 10).collect();
    gray_png(&d.path().join("a/w.png"), 6, 2, &px);
    // 2 wide x 5 high; crop rows (5-2)/2 = 1..3
    let px2: Vec<u8> = (0..10).map(|v| 100 + v).collect();
    gray_png(&d.path().join("a/x.png"), 2, 5, &px2);
    let s = load_image_folder(d.path(), 1, 2).unwrap();
    assert_eq!(s.train.image(0), &[f(20), f(30), f(80), f(90)]);
    assert_eq!(s.train.image(1), &[f(102), f(103), f(104), f(105)]);
}

#[test]
fn larger_images_are_resized_to_the_shorter_side() {
    let d = tempfile::tempdir().unwrap();
    // 16x8 (w x h): left half black, right half white; resize 4 -> 8x4 then crop columns 2..6
    let mut px = vec![0u8; 16 * 8];
    for y in 0..8 {
        for x in 8..16 {
            px[y * 16 + x] = 255;
        }
    }
    gray_png(&d.path().join("a/big.png"), 16, 8, &px);
    // constant RGB 12x12 -> 4x4 stays constant
    rgb_img(
        &d.path().join("b/c.png"),
        12,
        12,
        &[60u8, 120, 180].repeat(144),
    );
    let s = load_image_folder(d.path(), 1, 4).unwrap();
    assert_eq!((s.train.height, s.train.width), (4, 4));
    let a = s.train.image(0);
    for y in 0..4 {
        // columns 2..6 of the 8-wide resized image: 2,3 dark; 4,5 bright
        assert!(a[y * 4] < 0.05 && a[y * 4 + 1] < 0.5, "{a:?}");
        assert!(a[y * 4 + 2] > 0.5 && a[y * 4 + 3] > 0.95, "{a:?}");
    }
    let luma = (0.299 * 60.0 + 0.587 * 120.0 + 0.114 * 180.0) / 255.0;
    assert!(
        close(s.train.image(1), &[luma; 16], 1e-5),
        "{:?}",
        s.train.image(1)
    );
}

#[test]
fn train_test_layout_and_val_fallback() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    gray_png(&r.join("train/dog/1.png"), 1, 1, &[1]);
    gray_png(&r.join("train/cat/1.png"), 1, 1, &[2]);
    gray_png(&r.join("train/cat/2.png"), 1, 1, &[3]);
    gray_png(&r.join("val/dog/1.png"), 1, 1, &[4]);
    let s = load_image_folder(r, 1, 1).unwrap();
    assert_eq!(s.train.classes, vec!["cat", "dog"]);
    assert_eq!(s.train.labels, vec![0, 0, 1]);
    assert_eq!(s.train.images, vec![f(2), f(3), f(1)]);
    assert_eq!(s.test.classes, vec!["cat", "dog"]);
    assert_eq!(s.test.labels, vec![1]);
    assert_eq!(s.test.images, vec![f(4)]);
    // test/ is preferred over val/
    gray_png(&r.join("test/cat/9.png"), 1, 1, &[9]);
    let s = load_image_folder(r, 1, 1).unwrap();
    assert_eq!(
        (s.test.labels.clone(), s.test.images.clone()),
        (vec![0], vec![f(9)])
    );
}

#[test]
fn test_class_missing_from_train_is_named() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    gray_png(&r.join("train/cat/1.png"), 1, 1, &[1]);
    gray_png(&r.join("test/zebra/1.png"), 1, 1, &[1]);
    let e = load_image_folder(r, 1, 1).unwrap_err().to_string();
    assert!(e.contains("zebra"), "{e}");
}

#[test]
fn jpeg_is_decoded() {
    let d = tempfile::tempdir().unwrap();
    rgb_img(
        &d.path().join("a/p.jpg"),
        8,
        8,
        &[200u8, 100, 50].repeat(64),
    );
    let s = load_image_folder(d.path(), 3, 8).unwrap();
    let img = s.train.image(0);
    for (c, v) in [200.0f32, 100.0, 50.0].iter().enumerate() {
        let plane = &img[c * 64..(c + 1) * 64];
        assert!(
            plane.iter().all(|p| (p * 255.0 - v).abs() < 4.0),
            "{plane:?}"
        );
    }
}

#[test]
fn corrupt_image_is_named() {
    let d = tempfile::tempdir().unwrap();
    gray_png(&d.path().join("a/ok.png"), 1, 1, &[1]);
    let bad = d.path().join("a/broken.png");
    let noise: Vec<u8> = (0..200u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&bad, noise).unwrap();
    let e = load_image_folder(d.path(), 1, 1).unwrap_err().to_string();
    assert!(e.contains("broken.png") && !e.contains('\n'), "{e}");
}

#[test]
fn truncated_png_is_named() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a/cut.png");
    let px: Vec<u8> = (0..=255).collect();
    gray_png(&p, 16, 16, &px);
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_image_folder(d.path(), 1, 16).unwrap_err().to_string();
    assert!(e.contains("cut.png") && !e.contains('\n'), "{e}");
}

#[test]
fn empty_class_folder_and_bad_options_are_errors() {
    let d = tempfile::tempdir().unwrap();
    gray_png(&d.path().join("a/1.png"), 1, 1, &[1]);
    std::fs::create_dir_all(d.path().join("empty")).unwrap();
    let e = load_image_folder(d.path(), 1, 1).unwrap_err().to_string();
    assert!(e.contains("empty"), "{e}");
    std::fs::remove_dir(d.path().join("empty")).unwrap();
    assert!(load_image_folder(d.path(), 2, 1).is_err());
    assert!(load_image_folder(d.path(), 1, 0).is_err());
    let e = load_image_folder(&d.path().join("missing"), 1, 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing"), "{e}");
}

/// A PNG whose header declares `w x h` (a real 1x1 image with its IHDR patched and its CRC
/// recomputed): the size check must come from the header, before any decoding.
fn png_declaring(path: &Path, w: u32, h: u32) {
    gray_png(path, 1, 1, &[7]);
    let mut bytes = std::fs::read(path).unwrap();
    // signature (8), IHDR length (4), "IHDR" (4), width, height, 5 bytes, CRC
    bytes[16..20].copy_from_slice(&w.to_be_bytes());
    bytes[20..24].copy_from_slice(&h.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn image_over_the_pixel_budget_is_refused_from_its_header() {
    let d = tempfile::tempdir().unwrap();
    gray_png(&d.path().join("a/ok.png"), 2, 2, &[1, 2, 3, 4]);
    png_declaring(&d.path().join("b/huge.png"), 20000, 20000);
    let e = load_image_folder(d.path(), 1, 2).unwrap_err().to_string();
    assert!(
        e.contains("huge.png")
            && e.contains("20000x20000")
            && e.contains("400000000 pixels")
            && e.contains(&sptune::runtime::max_pixels().to_string())
            && !e.contains('\n'),
        "{e}"
    );
    // 8192x8192 is exactly the default budget: it gets past the check (and fails to decode
    // the missing rows instead)
    png_declaring(&d.path().join("b/huge.png"), 8192, 8192);
    let e = load_image_folder(d.path(), 1, 2).unwrap_err().to_string();
    assert!(
        e.contains("huge.png") && !e.contains("over the limit"),
        "{e}"
    );
}

#[cfg(unix)]
#[test]
fn image_that_is_not_a_regular_file_is_refused() {
    let e = sptune::data::load_images(&[std::path::PathBuf::from("/dev/zero")], 1, 4)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/dev/zero") && e.contains("not a regular file"),
        "{e}"
    );
}
