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

/// The path of `base` in `dir`: the plain file if present, else `base.gz` if present. Any
/// kind of file counts (a device or FIFO under that name is then refused by name when read).
pub(crate) fn find_idx_file(dir: &Path, base: &str) -> Option<PathBuf> {
    let plain = dir.join(base);
    if plain.exists() {
        return Some(plain);
    }
    let gz = dir.join(format!("{base}.gz"));
    gz.exists().then_some(gz)
}

/// True when `dir` holds all four IDX files (plain or `.gz`).
pub(crate) fn has_idx_files(dir: &Path) -> bool {
    IDX_FILES.iter().all(|b| find_idx_file(dir, b).is_some())
}

fn is_gz(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// Largest number of pixels (bytes after the header) one IDX image file may announce: 2^30,
/// i.e. 1 GiB of pixels, 4 GiB once converted to f32. Fashion-MNIST's training file holds
/// 60000x28x28 = 47 million, EMNIST's largest (ByClass) 547 million. A header announcing more
/// is refused before any pixel is read, so a small gzip file cannot inflate into gigabytes.
pub const MAX_IDX_PIXELS: u64 = 1 << 30;

/// Largest IDX file accepted on disk, compressed or not (2 GiB).
const MAX_IDX_FILE_BYTES: u64 = 2 << 30;

/// How far past the announced end a stream is read to count trailing bytes (1 MiB): enough for
/// a precise message on a slightly-off file, while a bomb's gigabytes of trailing zeros are
/// never inflated.
const TRAILING_PROBE: u64 = 1 << 20;

/// What an IDX file holds.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// Unsigned bytes, 3 dimensions: count, rows, columns.
    Images,
    /// Unsigned bytes, 1 dimension: count.
    Labels,
}

impl Kind {
    fn magic(self) -> u32 {
        match self {
            Kind::Images => IMAGES_MAGIC,
            Kind::Labels => LABELS_MAGIC,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::Images => "image",
            Kind::Labels => "label",
        }
    }
    fn header_len(self) -> usize {
        match self {
            Kind::Images => 16,
            Kind::Labels => 8,
        }
    }
}

/// An IDX file read: the dimensions of its header (`[n, h, w]` or `[n]`) and the bytes after it.
#[derive(Debug)]
struct Idx {
    dims: Vec<u32>,
    body: Vec<u8>,
}

/// Reads the IDX file `path` (gunzipped as it is read when the name ends in `.gz`): the header
/// first, then exactly the number of bytes the header announces, checked against
/// [`MAX_IDX_PIXELS`] before any of them is read.
fn read_idx(path: &Path, kind: Kind) -> Result<Idx> {
    let (file, len) = crate::util::open_input(path, MAX_IDX_FILE_BYTES)?;
    let file = std::io::BufReader::new(file);
    if is_gz(path) {
        read_idx_from(path, flate2::bufread::MultiGzDecoder::new(file), kind, None)
    } else {
        read_idx_from(path, file, kind, Some(len))
    }
}

/// [`read_idx`] on the (decompressed) stream `src`; `file_len` is the size of a plain file,
/// checked against the header before the body is read.
fn read_idx_from(
    path: &Path,
    mut src: impl Read,
    kind: Kind,
    file_len: Option<u64>,
) -> Result<Idx> {
    let gz = file_len.is_none();
    let read_err = |e: std::io::Error| {
        if gz {
            Error::format(path, format!("not a valid gzip file: {}", one_line(e)))
        } else {
            Error::io(path, e)
        }
    };
    let hlen = kind.header_len();
    let mut head = Vec::with_capacity(hlen);
    src.by_ref()
        .take(hlen as u64)
        .read_to_end(&mut head)
        .map_err(read_err)?;
    if head.len() >= 4 {
        check_magic(path, &head, kind.magic(), kind.name())?;
    }
    if head.len() < hlen {
        return Err(Error::format(
            path,
            format!(
                "truncated: expected at least {hlen} bytes of IDX {} header, got {}",
                kind.name(),
                head.len()
            ),
        ));
    }
    let dims: Vec<u32> = (4..hlen).step_by(4).map(|at| be_u32(&head, at)).collect();
    let what = match kind {
        Kind::Images => {
            let (n, h, w) = (dims[0], dims[1], dims[2]);
            if h == 0 || w == 0 {
                return Err(Error::format(
                    path,
                    format!("image size {h}x{w} has no pixels"),
                ));
            }
            format!("{n} images of {h}x{w}")
        }
        Kind::Labels => format!("{} labels", dims[0]),
    };
    let body_len: u128 = dims.iter().map(|&d| d as u128).product();
    let expected = hlen as u128 + body_len;
    // a plain file's size is known: compare before reading anything more
    if let Some(len) = file_len {
        check_len(path, len as u128, expected, &what)?;
    }
    if kind == Kind::Images && body_len > MAX_IDX_PIXELS as u128 {
        return Err(Error::format(
            path,
            format!(
                "header announces {what} = {body_len} pixels, over the limit of {MAX_IDX_PIXELS} \
                 pixels per IDX file"
            ),
        ));
    }
    // the pixels once converted to f32 (a data set's two image files are checked one by one)
    if kind == Kind::Images {
        crate::runtime::check_data_bytes(
            &format!("its {what}"),
            (body_len as u64).saturating_mul(4),
        )
        .map_err(|msg| Error::format(path, msg))?;
    }
    // labels: one byte per image, so at most as many as the image limit
    if kind == Kind::Labels && body_len > MAX_IDX_PIXELS as u128 {
        return Err(Error::format(
            path,
            format!("header announces {what}, over the limit of {MAX_IDX_PIXELS} labels"),
        ));
    }
    let body_len = body_len as u64;
    // grows with the bytes that arrive, from at most 64 MiB reserved up front
    let mut body = Vec::with_capacity(body_len.min(64 << 20) as usize);
    src.by_ref()
        .take(body_len)
        .read_to_end(&mut body)
        .map_err(read_err)?;
    if (body.len() as u64) < body_len {
        check_len(path, (hlen + body.len()) as u128, expected, &what)?;
    }
    // nothing may follow; count at most TRAILING_PROBE bytes of it
    let extra =
        std::io::copy(&mut src.take(TRAILING_PROBE), &mut std::io::sink()).map_err(read_err)?;
    if extra >= TRAILING_PROBE {
        let unit = if gz { " (decompressed)" } else { "" };
        return Err(Error::format(
            path,
            format!(
                "more than {} trailing bytes: expected {expected} bytes{unit} for {what}",
                TRAILING_PROBE - 1
            ),
        ));
    }
    if extra > 0 {
        check_len(path, expected + extra as u128, expected, &what)?;
    }
    Ok(Idx { dims, body })
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Checks the byte length of an IDX file against what its header announces.
fn check_len(path: &Path, got: u128, expected: u128, what: &str) -> Result<()> {
    let unit = if is_gz(path) { " (decompressed)" } else { "" };
    if got < expected {
        return Err(Error::format(
            path,
            format!("truncated: expected {expected} bytes{unit} for {what}, got {got}"),
        ));
    }
    if got > expected {
        return Err(Error::format(
            path,
            format!(
                "{} trailing bytes: expected {expected} bytes{unit} for {what}, got {got}",
                got - expected
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

/// One split from its image and label file. Classes are filled in by the caller.
fn load_split(images_path: &Path, images: Idx, labels_path: &Path, labels: Idx) -> Result<Dataset> {
    let (n, h, w) = (
        images.dims[0] as usize,
        images.dims[1] as usize,
        images.dims[2] as usize,
    );
    let labels = labels.body;
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
        images: images.body.iter().map(|&b| b as f32 / 255.0).collect(),
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
    // which `--threads` sizes), in order; the first failing file (in that order) is the error.
    let kinds = [Kind::Images, Kind::Labels, Kind::Images, Kind::Labels];
    let contents: Vec<Result<Idx>> = paths
        .par_iter()
        .zip(kinds)
        .map(|(p, k)| read_idx(p, k))
        .collect();
    let mut it = contents
        .into_iter()
        .collect::<Result<Vec<Idx>>>()?
        .into_iter();
    let (Some(tr_img), Some(tr_lab), Some(te_img), Some(te_lab)) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(Error::Other("IDX: four files expected".into()));
    };

    let mut train = load_split(&paths[0], tr_img, &paths[1], tr_lab)?;
    let mut test = load_split(&paths[2], te_img, &paths[3], te_lab)?;
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

/// The class names [`load_idx_dir`] would give `dir` (`"0"` up to the largest label of either
/// split), from the two label files alone: what a study checks before it starts.
pub fn idx_class_names(dir: &Path) -> Result<Vec<String>> {
    let mut max_label = None;
    for base in [IDX_FILES[1], IDX_FILES[3]] {
        let path = find_idx_file(dir, base).ok_or_else(|| {
            Error::format(
                dir,
                format!("no IDX file {base} (or {base}.gz) in this directory"),
            )
        })?;
        let labels = read_idx(&path, Kind::Labels)?;
        max_label = max_label.max(labels.body.iter().copied().max());
    }
    Ok((0..=max_label.unwrap_or(0))
        .map(|l| l.to_string())
        .collect())
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
        let err = read_idx_from(p, &[0u8, 0, 8, 3, 0][..], Kind::Images, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("x-images") && err.contains("truncated"),
            "{err}"
        );
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let p = Path::new("lab");
        let bytes = [0u8, 0, 8, 1, 0, 0, 0, 1, 5, 6];
        for len in [None, Some(bytes.len() as u64)] {
            let err = read_idx_from(p, &bytes[..], Kind::Labels, len)
                .unwrap_err()
                .to_string();
            assert!(err.contains("1 trailing bytes"), "{err}");
        }
    }

    #[test]
    fn a_header_over_the_pixel_limit_is_refused_before_reading() {
        let p = Path::new("big-images.gz");
        // 2^16 images of 2^8 x 2^8 = 2^32 pixels announced, none present
        let mut bytes = IMAGES_MAGIC.to_be_bytes().to_vec();
        for d in [1u32 << 16, 1 << 8, 1 << 8] {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        let err = read_idx_from(p, &bytes[..], Kind::Images, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("big-images.gz") && err.contains("over the limit"),
            "{err}"
        );
    }
}
