//! The torchvision `ImageFolder` layout: one sub-folder per class holding PNG/JPEG files.

use super::transforms::{convert_channels, shorter_side_to};
use super::{Dataset, Splits, one_line};
use crate::{Error, Result};
use image::imageops::{self, FilterType};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Loads an image-folder data set from `root`.
///
/// Layout: when `root` holds a `train/` folder and a `test/` or `val/` folder, those are the
/// two splits (`test/` is used when both exist); a root whose only folder is `train/` gives
/// that split alone; otherwise the sub-folders of `root` themselves are the classes and the
/// test split is empty (the caller splits). Class folders are sorted by name (that order is
/// the class index, taken from the training split; a test class folder must also exist in
/// training). Inside a class folder, files ending in `.png`, `.jpg` or `.jpeg` are read in
/// file-name order; other files and hidden entries are ignored, and a class folder without
/// any image is an error.
///
/// Each image is decoded (alpha is dropped), converted to `channels` (1: gray, 3: RGB; gray to
/// RGB replicates, RGB to gray uses luma 0.299/0.587/0.114), resized with the `image` crate's
/// bilinear (triangle) filter so its shorter side is `resize` (not resampled when already
/// so), then center-cropped to `resize x resize` (offset `(side - resize) / 2`, rounded down).
pub fn load_image_folder(root: &Path, channels: usize, resize: usize) -> Result<Splits> {
    if channels != 1 && channels != 3 {
        return Err(Error::invalid(
            "channels",
            format!("{channels} (must be 1 or 3)"),
        ));
    }
    if resize == 0 || resize > 1 << 15 {
        return Err(Error::invalid(
            "resize",
            format!("{resize} (must be between 1 and 32768)"),
        ));
    }
    let (train_dir, test_dir) = split_dirs(root)?;
    let train_classes = scan_classes(&train_dir)?;
    let classes: Vec<String> = train_classes.iter().map(|(n, _)| n.clone()).collect();
    let mut train_files = Vec::new();
    for (label, (_, files)) in train_classes.into_iter().enumerate() {
        train_files.extend(files.into_iter().map(|f| (f, label)));
    }
    let mut test_files = Vec::new();
    if let Some(dir) = &test_dir {
        for (name, files) in scan_classes(dir)? {
            let label = classes.iter().position(|c| *c == name).ok_or_else(|| {
                Error::format(
                    dir.join(&name),
                    format!("class folder has no counterpart in {}", train_dir.display()),
                )
            })?;
            test_files.extend(files.into_iter().map(|f| (f, label)));
        }
    }
    // the decoded size of both splits, bounded before the first image is decoded
    let n = (train_files.len() + test_files.len()) as u64;
    let bytes = n.saturating_mul((channels * resize * resize * 4) as u64);
    crate::runtime::check_data_bytes(
        &format!("its {n} images of {channels}x{resize}x{resize}"),
        bytes,
    )
    .map_err(|msg| Error::format(root, msg))?;
    let train = decode_all(&train_files, &classes, channels, resize)?;
    let test = decode_all(&test_files, &classes, channels, resize)?;
    Ok(Splits { train, test })
}

/// The training and (when there is one) test folder of an image-folder root.
fn split_dirs(root: &Path) -> Result<(PathBuf, Option<PathBuf>)> {
    let subdirs = list_dirs(root)?;
    let has = |name: &str| subdirs.iter().any(|(n, _)| n == name);
    let test_name = ["test", "val"].into_iter().find(|n| has(n));
    Ok(match test_name {
        Some(t) if has("train") => (root.join("train"), Some(root.join(t))),
        _ if subdirs.len() == 1 && has("train") => (root.join("train"), None),
        _ => (root.to_path_buf(), None),
    })
}

/// The class names [`load_image_folder`] would give `root` (its training split's class
/// folders, each holding at least one image), without decoding anything: what a study checks
/// before it starts.
pub fn image_folder_class_names(root: &Path) -> Result<Vec<String>> {
    let (train_dir, _) = split_dirs(root)?;
    Ok(scan_classes(&train_dir)?
        .into_iter()
        .map(|(n, _)| n)
        .collect())
}

/// Non-hidden sub-directories of `dir`, sorted by name.
fn list_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && path.is_dir() {
            out.push((name, path));
        }
    }
    out.sort();
    Ok(out)
}

fn is_image_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".png", ".jpg", ".jpeg"].iter().any(|e| lower.ends_with(e))
}

/// Class folders of a split, each with its image files sorted by name.
fn scan_classes(split_dir: &Path) -> Result<Vec<(String, Vec<PathBuf>)>> {
    let dirs = list_dirs(split_dir)?;
    if dirs.is_empty() {
        return Err(Error::format(
            split_dir,
            "no class folders (expected one sub-folder of PNG/JPEG images per class)",
        ));
    }
    let mut out = Vec::with_capacity(dirs.len());
    for (name, dir) in dirs {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let fname = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if !fname.starts_with('.') && is_image_name(&fname) && path.is_file() {
                files.push((fname, path));
            }
        }
        if files.is_empty() {
            return Err(Error::format(&dir, "class folder holds no PNG/JPEG images"));
        }
        files.sort();
        out.push((name, files.into_iter().map(|(_, p)| p).collect()));
    }
    Ok(out)
}

/// Decodes `files` (with labels) in parallel, preserving order.
fn decode_all(
    files: &[(PathBuf, usize)],
    classes: &[String],
    channels: usize,
    resize: usize,
) -> Result<Dataset> {
    let per = channels * resize * resize;
    // On the global rayon pool (sized by `--threads`), each image decoded straight into its
    // place in the one buffer of the set (collecting per-image buffers first held the set
    // twice); the first failing file (in the files' order) is the error.
    let mut images = vec![0f32; files.len() * per];
    let decoded: Vec<Result<()>> = images
        .par_chunks_mut(per)
        .zip(files.par_iter())
        .map(|(slot, (path, _))| {
            slot.copy_from_slice(&decode_image(path, channels, resize)?);
            Ok(())
        })
        .collect();
    decoded.into_iter().collect::<Result<()>>()?;
    Ok(Dataset {
        images,
        labels: files.iter().map(|(_, l)| *l).collect(),
        classes: classes.to_vec(),
        channels,
        height: resize,
        width: resize,
    })
}

/// One image file decoded, after its header's size was checked against the pixel budget.
fn decode_checked(path: &Path) -> Result<image::DynamicImage> {
    let bytes = crate::util::read_input(path, crate::util::MAX_IMAGE_BYTES)?;
    let cannot =
        |e: image::ImageError| Error::format(path, format!("cannot decode image: {}", one_line(e)));
    let reader = || {
        image::ImageReader::new(std::io::Cursor::new(&bytes[..]))
            .with_guessed_format()
            .map_err(|e| Error::io(path, e))
    };
    // the size and color type from the header, checked against the pixel and byte budgets
    // before anything is decoded
    let (w, h, color) = {
        use image::ImageDecoder;
        let decoder = reader()?.into_decoder().map_err(cannot)?;
        let (w, h) = decoder.dimensions();
        (w, h, decoder.color_type())
    };
    let budget = crate::runtime::max_pixels();
    let pixels = w as u64 * h as u64;
    if pixels > budget {
        return Err(Error::format(
            path,
            format!(
                "image is {w}x{h} ({pixels} pixels), over the limit of {budget} pixels per image \
                 (--max-pixels)"
            ),
        ));
    }
    // and its bytes: the decoder's (channels x bit depth) plus the f32 copy
    let per_pixel = color.bytes_per_pixel() as u64 + 4 * if color.has_color() { 3 } else { 1 };
    let bytes = pixels.saturating_mul(per_pixel);
    let byte_budget = crate::runtime::max_decode_bytes();
    if bytes > byte_budget {
        return Err(Error::format(
            path,
            format!(
                "image is {w}x{h} {color:?}: decoding it takes {} MiB ({per_pixel} bytes per \
                 pixel with its f32 copy), over the limit of {} MiB per image (5 bytes per pixel \
                 of --max-pixels)",
                bytes.div_ceil(1 << 20),
                byte_budget >> 20
            ),
        ));
    }
    let mut reader = reader()?;
    // and the decoder's allocations, as a second guard: 8 bytes per pixel (16-bit RGBA) plus
    // 64 MiB of working memory
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(budget.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(limits);
    let img = reader.decode().map_err(cannot)?;
    if img.width() == 0 || img.height() == 0 {
        return Err(Error::format(path, "image has no pixels"));
    }
    Ok(img)
}

/// One image file at its own size -> (CHW pixels in `[0, 1]` with `channels` channels, width,
/// height): what segmentation data keeps (its masks are not resampled on reading).
pub(crate) fn decode_image_as_is(path: &Path, channels: usize) -> Result<(Vec<f32>, usize, usize)> {
    let img = decode_checked(path)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let plane = w * h;
    let (hwc, src_c): (Vec<f32>, usize) = if img.color().has_color() {
        (img.to_rgb32f().into_raw(), 3)
    } else {
        (img.to_luma32f().into_raw(), 1)
    };
    let mut chw = vec![0f32; src_c * plane];
    for (j, px) in hwc.chunks_exact(src_c).enumerate() {
        for (c, &v) in px.iter().enumerate() {
            chw[c * plane + j] = v;
        }
    }
    Ok((convert_channels(&chw, src_c, channels, plane), w, h))
}

/// One image file -> CHW `channels x resize x resize` pixels in `[0, 1]`.
pub(crate) fn decode_image(path: &Path, channels: usize, resize: usize) -> Result<Vec<f32>> {
    let img = decode_checked(path)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (nh, nw) = shorter_side_to(h, w, resize);
    if nh.saturating_mul(nw) > 1 << 26 {
        return Err(Error::format(
            path,
            format!("{w}x{h} image is too elongated to resize to a shorter side of {resize}"),
        ));
    }
    // Interleaved (HWC) f32 pixels after resizing, with `src_c` channels.
    let (hwc, src_c): (Vec<f32>, usize) = if img.color().has_color() {
        let rgb = img.to_rgb32f();
        let rgb = if (nh, nw) == (h, w) {
            rgb
        } else {
            imageops::resize(&rgb, nw as u32, nh as u32, FilterType::Triangle)
        };
        (rgb.into_raw(), 3)
    } else {
        let gray = img.to_luma32f();
        let gray = if (nh, nw) == (h, w) {
            gray
        } else {
            imageops::resize(&gray, nw as u32, nh as u32, FilterType::Triangle)
        };
        (gray.into_raw(), 1)
    };
    // Center crop to resize x resize and de-interleave to CHW.
    let (top, left) = ((nh - resize) / 2, (nw - resize) / 2);
    let plane = resize * resize;
    let mut chw = vec![0f32; src_c * plane];
    for y in 0..resize {
        let row = &hwc[((top + y) * nw + left) * src_c..((top + y) * nw + left + resize) * src_c];
        for (x, px) in row.chunks_exact(src_c).enumerate() {
            for (c, &v) in px.iter().enumerate() {
                chw[c * plane + y * resize + x] = v;
            }
        }
    }
    Ok(convert_channels(&chw, src_c, channels, plane))
}

/// The side images are stored at before a center crop to a model input of `side` pixels:
/// ImageNet's "resize the shorter side to 256, crop 224" ratio (8/7) from 128 px up, the side
/// itself below (small-image models see the whole image).
pub fn stored_side(side: usize) -> usize {
    if side >= 128 {
        (side * 256).div_ceil(224)
    } else {
        side
    }
}

/// Single image files as a data set (label 0 each) for prediction: decoded and resized as
/// [`load_image_folder`] does with `resize` (shorter side to `resize`, center crop; an image
/// whose shorter side is already `resize` is not resampled).
pub fn load_images(paths: &[PathBuf], channels: usize, resize: usize) -> Result<Dataset> {
    if paths.is_empty() {
        return Err(Error::invalid("IMAGE", "no image given"));
    }
    let mut images = Vec::with_capacity(paths.len() * channels * resize * resize);
    for p in paths {
        images.extend(decode_image(p, channels, resize)?);
    }
    Dataset::new(
        images,
        vec![0; paths.len()],
        vec!["?".into()],
        channels,
        resize,
        resize,
    )
}
