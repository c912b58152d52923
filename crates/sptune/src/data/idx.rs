//! The IDX layout of MNIST and Fashion-MNIST: four files (train/test images and labels),
//! each plain or gzip-compressed.

use super::{Dataset, Splits, one_line};
use crate::util::write_atomic;
use crate::{Error, Result};
use rayon::prelude::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (images).
const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (labels).
const LABELS_MAGIC: u32 = 0x0000_0801;

/// The four base names, in the order train images, train labels, test images, test labels.
pub(crate) const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// The path of `base` in `dir`: the plain file if present, else `base.gz` if present.
pub(crate) fn find_idx_file(dir: &Path, base: &str) -> Option<PathBuf> {
    let plain = dir.join(base);
    if plain.is_file() {
        return Some(plain);
    }
    let gz = dir.join(format!("{base}.gz"));
    gz.is_file().then_some(gz)
}

/// True when `dir` holds all four IDX files (plain or `.gz`).
pub(crate) fn has_idx_files(dir: &Path) -> bool {
    IDX_FILES.iter().all(|b| find_idx_file(dir, b).is_some())
}

fn is_gz(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// The whole content of `path`, gunzipped when the name ends in `.gz`.
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if !is_gz(path) {
        return Ok(raw);
    }
    // The gzip trailer stores the uncompressed size (mod 2^32): use it as a capacity hint.
    let hint = raw
        .len()
        .checked_sub(4)
        .map(|at| u32::from_le_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]) as usize)
        .unwrap_or(0)
        .min(1 << 30);
    let mut out = Vec::with_capacity(hint);
    flate2::bufread::MultiGzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| Error::format(path, format!("not a valid gzip file: {}", one_line(e))))?;
    Ok(out)
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Checks the byte length of an IDX file against what its header announces.
fn check_len(path: &Path, got: usize, expected: u128, what: &str) -> Result<()> {
    let unit = if is_gz(path) { " (decompressed)" } else { "" };
    let got_n = got as u128;
    if got_n < expected {
        return Err(Error::format(
            path,
            format!("truncated: expected {expected} bytes{unit} for {what}, got {got}"),
        ));
    }
    if got_n > expected {
        return Err(Error::format(
            path,
            format!(
                "{} trailing bytes: expected {expected} bytes{unit} for {what}, got {got}",
                got_n - expected
            ),
        ));
    }
    Ok(())
}

fn check_magic(path: &Path, bytes: &[u8], want: u32, kind: &str) -> Result<()> {
    let magic = be_u32(bytes, 0);
    if magic != want {
        return Err(Error::format(
            path,
            format!("not an IDX {kind} file: magic number 0x{magic:08x}, expected 0x{want:08x}"),
        ));
    }
    Ok(())
}

/// Parsed image file: count, rows, columns, pixel bytes after the header.
fn parse_images<'a>(path: &Path, bytes: &'a [u8]) -> Result<(usize, usize, usize, &'a [u8])> {
    if bytes.len() >= 4 {
        check_magic(path, bytes, IMAGES_MAGIC, "image")?;
    }
    if bytes.len() < 16 {
        return Err(Error::format(
            path,
            format!(
                "truncated: expected at least 16 bytes of IDX image header, got {}",
                bytes.len()
            ),
        ));
    }
    let (n, h, w) = (be_u32(bytes, 4), be_u32(bytes, 8), be_u32(bytes, 12));
    if h == 0 || w == 0 {
        return Err(Error::format(
            path,
            format!("image size {h}x{w} has no pixels"),
        ));
    }
    let expected = 16 + n as u128 * h as u128 * w as u128;
    check_len(
        path,
        bytes.len(),
        expected,
        &format!("{n} images of {h}x{w}"),
    )?;
    Ok((n as usize, h as usize, w as usize, &bytes[16..]))
}

fn parse_labels<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a [u8]> {
    if bytes.len() >= 4 {
        check_magic(path, bytes, LABELS_MAGIC, "label")?;
    }
    if bytes.len() < 8 {
        return Err(Error::format(
            path,
            format!(
                "truncated: expected at least 8 bytes of IDX label header, got {}",
                bytes.len()
            ),
        ));
    }
    let n = be_u32(bytes, 4);
    check_len(path, bytes.len(), 8 + n as u128, &format!("{n} labels"))?;
    Ok(&bytes[8..])
}

/// One split read from its image and label file. Classes are filled in by the caller.
fn load_split(
    images_path: &Path,
    image_bytes: &[u8],
    labels_path: &Path,
    label_bytes: &[u8],
) -> Result<Dataset> {
    let (n, h, w, pixels) = parse_images(images_path, image_bytes)?;
    let labels = parse_labels(labels_path, label_bytes)?;
    if labels.len() != n {
        return Err(Error::format(
            labels_path,
            format!(
                "{} labels but {} holds {n} images",
                labels.len(),
                images_path.display()
            ),
        ));
    }
    Ok(Dataset {
        images: pixels.iter().map(|&b| b as f32 / 255.0).collect(),
        labels: labels.iter().map(|&l| l as usize).collect(),
        classes: Vec::new(),
        channels: 1,
        height: h,
        width: w,
    })
}

/// Loads the MNIST / Fashion-MNIST IDX layout from `dir`: `train-images-idx3-ubyte`,
/// `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each either
/// plain or with a `.gz` suffix (the plain file wins when both exist).
///
/// Checks magic numbers, exact byte lengths, image/label count agreement and that both splits
/// have the same image size. Pixels are scaled to `[0, 1]`; the set has one channel.
/// Classes are `"0"`, `"1"`, ... up to the largest label found in either split.
pub fn load_idx_dir(dir: &Path) -> Result<Splits> {
    let mut paths = Vec::with_capacity(4);
    for base in IDX_FILES {
        paths.push(find_idx_file(dir, base).ok_or_else(|| {
            Error::format(
                dir,
                format!("no IDX file {base} (or {base}.gz) in this directory"),
            )
        })?);
    }
    // Decompression dominates: read the four files in parallel (on the global rayon pool,
    // which `--threads` sizes), in order.
    let contents: Vec<Result<Vec<u8>>> = paths.par_iter().map(|p| read_maybe_gz(p)).collect();
    let mut it = contents.into_iter();
    let mut next = || it.next().unwrap_or_else(|| Ok(Vec::new()));
    let (tr_img, tr_lab, te_img, te_lab) = (next()?, next()?, next()?, next()?);

    let mut train = load_split(&paths[0], &tr_img, &paths[1], &tr_lab)?;
    drop((tr_img, tr_lab));
    let mut test = load_split(&paths[2], &te_img, &paths[3], &te_lab)?;
    if train.is_empty() {
        return Err(Error::format(&paths[0], "holds no images"));
    }
    if (test.height, test.width) != (train.height, train.width) {
        return Err(Error::format(
            &paths[2],
            format!(
                "images are {}x{} but the training images are {}x{}",
                test.height, test.width, train.height, train.width
            ),
        ));
    }
    let max_label = train
        .labels
        .iter()
        .chain(&test.labels)
        .copied()
        .max()
        .unwrap_or(0);
    let classes: Vec<String> = (0..=max_label).map(|l| l.to_string()).collect();
    train.classes = classes.clone();
    test.classes = classes;
    Ok(Splits { train, test })
}

/// Writes `n` images of `h x w` bytes (row-major, one byte per pixel) and their `n` labels as
/// an IDX image file and an IDX label file. A path ending in `.gz` is gzip-compressed.
/// Each file is written atomically (temporary sibling, then rename).
pub fn write_idx(
    images: &[u8],
    labels: &[u8],
    n: usize,
    h: usize,
    w: usize,
    images_path: &Path,
    labels_path: &Path,
) -> Result<()> {
    let too_big = |v: usize| u32::try_from(v).is_err();
    if too_big(n) || too_big(h) || too_big(w) {
        return Err(Error::invalid(
            "write_idx",
            format!("dimensions {n}x{h}x{w} do not fit the IDX format (u32)"),
        ));
    }
    if Some(images.len()) != n.checked_mul(h).and_then(|v| v.checked_mul(w)) {
        return Err(Error::invalid(
            "write_idx",
            format!(
                "{} image bytes do not make {n} images of {h}x{w}",
                images.len()
            ),
        ));
    }
    if labels.len() != n {
        return Err(Error::invalid(
            "write_idx",
            format!("{} labels for {n} images", labels.len()),
        ));
    }
    let mut img = Vec::with_capacity(16 + images.len());
    for v in [IMAGES_MAGIC, n as u32, h as u32, w as u32] {
        img.extend_from_slice(&v.to_be_bytes());
    }
    img.extend_from_slice(images);
    let mut lab = Vec::with_capacity(8 + labels.len());
    for v in [LABELS_MAGIC, n as u32] {
        lab.extend_from_slice(&v.to_be_bytes());
    }
    lab.extend_from_slice(labels);
    write_maybe_gz(images_path, &img)?;
    write_maybe_gz(labels_path, &lab)
}

fn write_maybe_gz(path: &Path, bytes: &[u8]) -> Result<()> {
    if !is_gz(path) {
        return write_atomic(path, bytes);
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes)
        .and_then(|_| enc.finish())
        .map_err(|e| Error::io(path, e))
        .and_then(|gz| write_atomic(path, &gz))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_shorter_than_16_bytes_is_truncated() {
        let p = Path::new("x-images");
        let err = parse_images(p, &[0, 0, 8, 3, 0]).unwrap_err().to_string();
        assert!(
            err.contains("x-images") && err.contains("truncated"),
            "{err}"
        );
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let p = Path::new("lab");
        let err = parse_labels(p, &[0, 0, 8, 1, 0, 0, 0, 1, 5, 6])
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 trailing bytes"), "{err}");
    }
}
