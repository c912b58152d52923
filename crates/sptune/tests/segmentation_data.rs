//! Segmentation data on disk: the folder layout written and read back bit for bit (masks as
//! palette PNGs, images as 8-bit PNGs), VOC's layout, and the errors for a missing mask, a
//! mask of another size, a class value outside the classes and a mask that is not class
//! indices (each names the file).

use std::path::Path;

use sptune::segmentation::{
    IGNORE, SegDataset, SegImage, load_mask_folder, load_voc, write_mask_folder,
};

/// Three small images whose pixels are multiples of 1/255 (so 8-bit PNGs keep them exactly),
/// masks using classes 0-2 and the ignore value.
fn sample(channels: usize) -> SegDataset {
    let images = (0..3)
        .map(|i| {
            let (h, w) = (5 + i, 7);
            let pixels = (0..channels * h * w)
                .map(|j| ((j * 37 + i * 11) % 256) as f32 / 255.0)
                .collect();
            let mask = (0..h * w)
                .map(|j| {
                    if j % 11 == 0 {
                        IGNORE
                    } else {
                        ((j + i) % 3) as u8
                    }
                })
                .collect();
            SegImage {
                pixels,
                mask,
                height: h,
                width: w,
            }
        })
        .collect();
    let classes = vec!["background".into(), "a".into(), "b".into()];
    SegDataset::new(images, classes, channels, &|i| format!("image {i}")).unwrap()
}

#[test]
fn folder_layout_round_trip() {
    for channels in [1, 3] {
        let dir = tempfile::tempdir().unwrap();
        let ds = sample(channels);
        write_mask_folder(&ds, dir.path()).unwrap();
        let back = load_mask_folder(dir.path(), channels).unwrap();
        assert_eq!(back.classes, ds.classes);
        assert_eq!(back.len(), 3);
        for (a, b) in back.images.iter().zip(&ds.images) {
            assert_eq!((a.height, a.width), (b.height, b.width));
            assert_eq!(a.mask, b.mask);
            for (x, y) in a.pixels.iter().zip(&b.pixels) {
                assert!((x - y).abs() < 1e-6, "{x} vs {y}");
            }
        }
        // writing again into the same folder is refused
        let e = write_mask_folder(&ds, dir.path()).unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");
    }
}

/// Without `classes.txt`, the classes are numbered up to the largest mask value.
#[test]
fn classes_default_to_numbers() {
    let dir = tempfile::tempdir().unwrap();
    write_mask_folder(&sample(1), dir.path()).unwrap();
    std::fs::remove_file(dir.path().join("classes.txt")).unwrap();
    let back = load_mask_folder(dir.path(), 1).unwrap();
    assert_eq!(back.classes, ["0", "1", "2"]);
}

fn write_gray_png(path: &Path, w: u32, h: u32, v: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(f), w, h);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header().unwrap().write_image_data(v).unwrap();
}

fn expect_err(root: &Path, needles: &[&str]) {
    let e = load_mask_folder(root, 1).unwrap_err().to_string();
    assert!(!e.contains('\n'), "{e}");
    for n in needles {
        assert!(e.contains(n), "{e:?} lacks {n:?}");
    }
}

#[test]
fn bad_folders_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_mask_folder(&sample(1), dir.path()).unwrap();
    let masks = dir.path().join("masks");
    // a mask of another size
    write_gray_png(&masks.join("00001.png"), 3, 3, &[0; 9]);
    expect_err(dir.path(), &["00001.png", "3x3", "7x6"]);
    // a class value outside the 3 classes
    write_gray_png(&masks.join("00001.png"), 7, 6, &[7; 42]);
    expect_err(dir.path(), &["00001.png", "mask value 7"]);
    // an RGB mask
    let f = std::fs::File::create(masks.join("00001.png")).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(f), 7, 6);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()
        .unwrap()
        .write_image_data(&[0; 7 * 6 * 3])
        .unwrap();
    expect_err(dir.path(), &["00001.png", "grayscale or palette"]);
    // a missing mask
    std::fs::remove_file(masks.join("00001.png")).unwrap();
    expect_err(dir.path(), &["00001.png", "missing"]);
    // no masks/ folder
    std::fs::remove_dir_all(&masks).unwrap();
    expect_err(dir.path(), &["masks", "no such folder"]);
}

/// VOC's layout: the split list names the files; masks keep indices (palette PNGs) and 255.
#[test]
fn voc_layout() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in ["JPEGImages", "SegmentationClass", "ImageSets/Segmentation"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let (w, h) = (9u32, 4u32);
    let rgb = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8 * 20, y as u8 * 50, 90]));
    rgb.save(root.join("JPEGImages/2007_000001.jpg")).unwrap();
    let mask: Vec<u8> = (0..w * h)
        .map(|j| if j % 5 == 0 { 255 } else { (j % 21) as u8 })
        .collect();
    let png = sptune::segmentation::data::encode_mask(&mask, w as usize, h as usize).unwrap();
    std::fs::write(root.join("SegmentationClass/2007_000001.png"), png).unwrap();
    std::fs::write(root.join("ImageSets/Segmentation/val.txt"), "2007_000001\n").unwrap();
    let ds = load_voc(root, "val", 3).unwrap();
    assert_eq!(ds.classes.len(), 21);
    assert_eq!(ds.classes[15], "person");
    assert_eq!(ds.images[0].mask, mask);
    assert_eq!((ds.images[0].width, ds.images[0].height), (9, 4));
    let e = load_voc(root, "train", 3).unwrap_err().to_string();
    assert!(e.contains("train.txt"), "{e}");
}

/// Found by fuzzing: an empty `classes.txt` was refused without naming the file.
#[test]
fn regression_empty_classes_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_mask_folder(&sample(1), dir.path()).unwrap();
    std::fs::write(dir.path().join("classes.txt"), "\n\n").unwrap();
    let e = load_mask_folder(dir.path(), 1).unwrap_err().to_string();
    assert!(
        e.contains("classes.txt") && e.contains("names 0 classes"),
        "{e}"
    );
}
