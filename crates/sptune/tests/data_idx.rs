//! IDX loading: round trips, corrupt files, the real Fashion-MNIST when installed.

use sptune::data::{load_idx_dir, write_idx};
use std::io::Write;
use std::path::Path;

/// Independent IDX encoders (big-endian header, then raw bytes), used to build inputs.
fn idx_images(n: u32, h: u32, w: u32, pixels: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3];
    v.extend_from_slice(&n.to_be_bytes());
    v.extend_from_slice(&h.to_be_bytes());
    v.extend_from_slice(&w.to_be_bytes());
    v.extend_from_slice(pixels);
    v
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 1];
    v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    v.extend_from_slice(labels);
    v
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

const TRAIN_PIX: [u8; 12] = [0, 255, 51, 102, 1, 2, 3, 4, 200, 100, 50, 25];
const TRAIN_LAB: [u8; 3] = [3, 0, 1];
const TEST_PIX: [u8; 4] = [255, 0, 0, 255];
const TEST_LAB: [u8; 1] = [2];

/// Writes a 3-image train / 1-image test set of 2x2 images; `.gz` when `gz_ext`.
fn write_set(dir: &Path, gz_ext: bool) {
    let files = [
        ("train-images-idx3-ubyte", idx_images(3, 2, 2, &TRAIN_PIX)),
        ("train-labels-idx1-ubyte", idx_labels(&TRAIN_LAB)),
        ("t10k-images-idx3-ubyte", idx_images(1, 2, 2, &TEST_PIX)),
        ("t10k-labels-idx1-ubyte", idx_labels(&TEST_LAB)),
    ];
    for (name, bytes) in files {
        if gz_ext {
            std::fs::write(dir.join(format!("{name}.gz")), gz(&bytes)).unwrap();
        } else {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}

fn check_set(dir: &Path) {
    let s = load_idx_dir(dir).unwrap();
    assert_eq!((s.train.channels, s.train.height, s.train.width), (1, 2, 2));
    let expect: Vec<f32> = TRAIN_PIX.iter().map(|&b| b as f32 / 255.0).collect();
    assert_eq!(s.train.images, expect);
    assert_eq!(s.train.labels, vec![3, 0, 1]);
    assert_eq!(s.train.image(1), &expect[4..8]);
    assert_eq!(s.test.images, vec![1.0, 0.0, 0.0, 1.0]);
    assert_eq!(s.test.labels, vec![2]);
    // classes "0".."3": the largest label over both splits is 3
    assert_eq!(s.train.classes, vec!["0", "1", "2", "3"]);
    assert_eq!(s.test.classes, s.train.classes);
    assert_eq!(s.train.per_class_counts(), vec![1, 1, 0, 1]);
}

#[test]
fn idx_round_trip_plain() {
    let d = tempfile::tempdir().unwrap();
    write_set(d.path(), false);
    check_set(d.path());
}

#[test]
fn idx_round_trip_gz() {
    let d = tempfile::tempdir().unwrap();
    write_set(d.path(), true);
    check_set(d.path());
}

#[test]
fn write_idx_matches_independent_encoder_plain_and_gz() {
    let d = tempfile::tempdir().unwrap();
    let (ip, lp) = (d.path().join("i"), d.path().join("l"));
    write_idx(&TRAIN_PIX, &TRAIN_LAB, 3, 2, 2, &ip, &lp).unwrap();
    assert_eq!(std::fs::read(&ip).unwrap(), idx_images(3, 2, 2, &TRAIN_PIX));
    assert_eq!(std::fs::read(&lp).unwrap(), idx_labels(&TRAIN_LAB));
    let (ig, lg) = (d.path().join("i.gz"), d.path().join("l.gz"));
    write_idx(&TRAIN_PIX, &TRAIN_LAB, 3, 2, 2, &ig, &lg).unwrap();
    assert_eq!(
        gunzip(&std::fs::read(&ig).unwrap()),
        idx_images(3, 2, 2, &TRAIN_PIX)
    );
    assert_eq!(gunzip(&std::fs::read(&lg).unwrap()), idx_labels(&TRAIN_LAB));
}

#[test]
fn write_idx_rejects_inconsistent_sizes() {
    let d = tempfile::tempdir().unwrap();
    let (ip, lp) = (d.path().join("i"), d.path().join("l"));
    assert!(write_idx(&TRAIN_PIX, &TRAIN_LAB, 2, 2, 2, &ip, &lp).is_err());
    assert!(write_idx(&TRAIN_PIX, &TRAIN_LAB[..2], 3, 2, 2, &ip, &lp).is_err());
    assert!(!ip.exists() && !lp.exists());
}

#[test]
fn plain_file_wins_over_gz() {
    let d = tempfile::tempdir().unwrap();
    write_set(d.path(), true);
    // a plain train-images file with different pixels next to the .gz one
    let other = [9u8; 12];
    std::fs::write(
        d.path().join("train-images-idx3-ubyte"),
        idx_images(3, 2, 2, &other),
    )
    .unwrap();
    let s = load_idx_dir(d.path()).unwrap();
    assert_eq!(s.train.images, vec![9.0 / 255.0; 12]);
}

fn err_of(dir: &Path) -> String {
    let e = load_idx_dir(dir).unwrap_err().to_string();
    assert!(!e.contains('\n'), "multi-line error: {e}");
    e
}

#[test]
fn truncated_images_file_is_named_with_byte_counts() {
    let d = tempfile::tempdir().unwrap();
    write_set(d.path(), false);
    // header says 3 images of 2x2 (16 + 12 = 28 bytes) but only 2 images follow (24 bytes)
    std::fs::write(
        d.path().join("train-images-idx3-ubyte"),
        idx_images(3, 2, 2, &TRAIN_PIX[..8]),
    )
    .unwrap();
    let e = err_of(d.path());
    assert!(e.contains("train-images-idx3-ubyte"), "{e}");
    assert!(e.contains("truncated"), "{e}");
    assert!(e.contains("28") && e.contains("24"), "{e}");
}

#[test]
fn truncated_gz_stream_is_named() {
    let d = tempfile::tempdir().unwrap();
    write_set(d.path(), true);
    let p = d.path().join("t10k-labels-idx1-ubyte.gz");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = err_of(d.path());
    assert!(e.contains("t10k-labels-idx1-ubyte.gz"), "{e}");
}

#[test]
fn wrong_magic_is_named() {
    let d = tempfile::tempdir().unwrap();
    write_set(d.path(), false);
    // a label file where an image file belongs
    std::fs::write(
        d.path().join("t10k-images-idx3-ubyte"),
        idx_labels(&[1, 2, 3, 4]),
    )
    .unwrap();
    let e = err_of(d.path());
    assert!(e.contains("t10k-images-idx3-ubyte"), "{e}");
    assert!(e.contains("magic"), "{e}");
}

#[test]
fn label_count_mismatch_is_named() {
    let d = tempfile::tempdir().unwrap();
    write_set(d.path(), false);
    std::fs::write(
        d.path().join("train-labels-idx1-ubyte"),
        idx_labels(&[1, 2]),
    )
    .unwrap();
    let e = err_of(d.path());
    assert!(e.contains("train-labels-idx1-ubyte"), "{e}");
    assert!(e.contains('2') && e.contains('3'), "{e}");
}

#[test]
fn missing_file_is_named() {
    let d = tempfile::tempdir().unwrap();
    write_set(d.path(), false);
    std::fs::remove_file(d.path().join("t10k-labels-idx1-ubyte")).unwrap();
    let e = err_of(d.path());
    assert!(e.contains("t10k-labels-idx1-ubyte"), "{e}");
}

#[test]
fn test_split_with_other_image_size_is_rejected() {
    let d = tempfile::tempdir().unwrap();
    write_set(d.path(), false);
    std::fs::write(
        d.path().join("t10k-images-idx3-ubyte"),
        idx_images(1, 1, 4, &TEST_PIX),
    )
    .unwrap();
    let e = err_of(d.path());
    assert!(
        e.contains("t10k-images-idx3-ubyte") && e.contains("1x4"),
        "{e}"
    );
}

#[test]
fn real_fashion_mnist_if_installed() {
    let dir = Path::new("/usr/share/datasets/fashion-mnist");
    if !dir.join("train-images-idx3-ubyte.gz").exists()
        && !dir.join("train-images-idx3-ubyte").exists()
    {
        println!(
            "skipped: {} not installed (apt-get install dataset-fashion-mnist)",
            dir.display()
        );
        return;
    }
    let t = std::time::Instant::now();
    let s = load_idx_dir(dir).unwrap();
    println!("loaded Fashion-MNIST in {:?}", t.elapsed());
    assert_eq!((s.train.len(), s.test.len()), (60000, 10000));
    assert_eq!(
        (s.train.channels, s.train.height, s.train.width),
        (1, 28, 28)
    );
    assert_eq!(s.train.classes.len(), 10);
    assert_eq!(s.train.per_class_counts(), vec![6000; 10]);
    assert_eq!(s.test.per_class_counts(), vec![1000; 10]);
    assert!(s.train.images.iter().all(|v| (0.0..=1.0).contains(v)));
    // Fashion-MNIST's mean training pixel is about 0.286
    let mean = s.train.images.iter().map(|&v| v as f64).sum::<f64>() / s.train.images.len() as f64;
    assert!((mean - 0.286).abs() < 0.01, "mean {mean}");
}

#[test]
fn absurd_header_is_an_error_not_a_panic() {
    let d = tempfile::tempdir().unwrap();
    write_set(d.path(), false);
    let mut bytes = vec![0, 0, 8, 3];
    bytes.extend_from_slice(&[0xff; 12]);
    std::fs::write(d.path().join("train-images-idx3-ubyte"), bytes).unwrap();
    let e = err_of(d.path());
    assert!(
        e.contains("train-images-idx3-ubyte") && e.contains("truncated"),
        "{e}"
    );
}

/// A gzip file of a small header followed by 256 MiB of zeros (repeated 16 MiB members):
/// only the announced bytes and a 1 MiB probe past them are inflated, and the error says so.
#[test]
fn gzip_bomb_after_a_small_header_is_not_inflated() {
    let d = tempfile::tempdir().unwrap();
    write_set(d.path(), true);
    let mut bomb = gz(&idx_images(3, 2, 2, &TRAIN_PIX));
    let zeros = gz(&vec![0u8; 16 << 20]);
    for _ in 0..16 {
        bomb.extend_from_slice(&zeros);
    }
    std::fs::write(d.path().join("train-images-idx3-ubyte.gz"), &bomb).unwrap();
    let t = std::time::Instant::now();
    let e = err_of(d.path());
    assert!(
        e.contains("train-images-idx3-ubyte.gz") && e.contains("more than 1048575 trailing bytes"),
        "{e}"
    );
    // inflating all 256 MiB would take far longer than the 1 MiB probe
    println!("refused in {:?}", t.elapsed());
}

/// A header announcing more pixels than `MAX_IDX_PIXELS` is refused before the body is read,
/// compressed or plain (a plain file's size is checked first).
#[test]
fn header_over_the_pixel_limit_is_refused() {
    let d = tempfile::tempdir().unwrap();
    write_set(d.path(), true);
    let header = idx_images(1 << 16, 256, 256, &[]);
    std::fs::write(d.path().join("train-images-idx3-ubyte.gz"), gz(&header)).unwrap();
    let e = err_of(d.path());
    assert!(
        e.contains("train-images-idx3-ubyte.gz")
            && e.contains("65536 images of 256x256")
            && e.contains("over the limit of 1073741824"),
        "{e}"
    );
    // labels too
    write_set(d.path(), true);
    let mut header = vec![0, 0, 8, 1];
    header.extend_from_slice(&u32::MAX.to_be_bytes());
    std::fs::write(d.path().join("t10k-labels-idx1-ubyte.gz"), gz(&header)).unwrap();
    let e = err_of(d.path());
    assert!(
        e.contains("t10k-labels-idx1-ubyte.gz") && e.contains("over the limit"),
        "{e}"
    );
}

/// An IDX file that is a device (here a link to `/dev/zero`) is refused, not read forever.
#[cfg(unix)]
#[test]
fn non_regular_idx_file_is_refused() {
    let d = tempfile::tempdir().unwrap();
    write_set(d.path(), false);
    let p = d.path().join("t10k-images-idx3-ubyte");
    std::fs::remove_file(&p).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
    let e = err_of(d.path());
    assert!(
        e.contains("t10k-images-idx3-ubyte") && e.contains("not a regular file"),
        "{e}"
    );
}
