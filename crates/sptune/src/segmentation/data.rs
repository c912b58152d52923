//! Segmentation data: images with a class per pixel, and the folder layouts they are read
//! from and written to.
//!
//! **Folder layout** ([`load_mask_folder`], [`write_mask_folder`]): `images/NAME.png` (or
//! `.jpg`/`.jpeg`) with `masks/NAME.png` beside it, and an optional `classes.txt` (one class
//! name per line, the line number is the class index). A mask is an 8-bit grayscale or
//! palette PNG whose values are class indices; 255 marks pixels to ignore (object borders,
//! unlabelled ground). Cityscapes users convert their `labelIds` to train ids first (the
//! docs/segmentation.md gives the mapping) and write them as such masks.
//!
//! **Pascal VOC** ([`load_voc`]): `JPEGImages/NAME.jpg`, `SegmentationClass/NAME.png` (palette
//! PNG, indices 0-20, 255 on borders) and `ImageSets/Segmentation/SPLIT.txt` listing the names;
//! the 21 classes are VOC's.
//!
//! Every image keeps its own size; a mask must have its image's size. Errors name the file: a
//! missing mask, a size that differs, a class value outside the classes, a mask that is not
//! 8-bit grayscale or palette.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::data::image_folder::decode_image_as_is;
use crate::{Error, Result};

/// The mask value of pixels that count nowhere (loss, metrics).
pub const IGNORE: u8 = 255;

/// One image and its mask.
#[derive(Clone, Debug, PartialEq)]
pub struct SegImage {
    /// Pixels in `[0, 1]`, `channels × height × width` (CHW).
    pub pixels: Vec<f32>,
    /// One class index per pixel (`height × width`), or [`IGNORE`].
    pub mask: Vec<u8>,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
}

/// Images with masks, and the class names.
#[derive(Clone, Debug, PartialEq)]
pub struct SegDataset {
    /// The images.
    pub images: Vec<SegImage>,
    /// Class names; a mask value indexes them (or is [`IGNORE`]).
    pub classes: Vec<String>,
    /// Channels per image (1 or 3).
    pub channels: usize,
}

impl SegDataset {
    /// Checks that every image has `channels × height × width` pixels, a mask of its size, and
    /// mask values that index `classes` or are [`IGNORE`]; `what` names the images in errors.
    pub fn new(
        images: Vec<SegImage>,
        classes: Vec<String>,
        channels: usize,
        what: &dyn Fn(usize) -> String,
    ) -> Result<SegDataset> {
        if classes.is_empty() || classes.len() > IGNORE as usize {
            return Err(Error::invalid(
                "classes",
                format!("{} (must be 1 to 255)", classes.len()),
            ));
        }
        for (i, im) in images.iter().enumerate() {
            let p = im.height * im.width;
            if im.pixels.len() != channels * p || im.mask.len() != p || p == 0 {
                return Err(Error::invalid(
                    what(i),
                    format!(
                        "{} pixel values and {} mask values for a {}x{} image of {channels} channels",
                        im.pixels.len(),
                        im.mask.len(),
                        im.width,
                        im.height
                    ),
                ));
            }
            check_values(&im.mask, classes.len(), &what(i))?;
        }
        Ok(SegDataset {
            images,
            classes,
            channels,
        })
    }

    /// Images.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether there is no image.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }
}

/// Fails on the first mask value that is neither a class index nor [`IGNORE`].
fn check_values(mask: &[u8], classes: usize, what: &str) -> Result<()> {
    if let Some(&v) = mask.iter().find(|&&v| v != IGNORE && v as usize >= classes) {
        return Err(Error::invalid(
            what,
            format!(
                "mask value {v} is not a class: {classes} classes (0-{}), or {IGNORE} to ignore",
                classes - 1
            ),
        ));
    }
    Ok(())
}

/// An 8-bit grayscale or palette PNG as its raw values, with its width and height.
pub fn read_mask(path: &Path) -> Result<(Vec<u8>, usize, usize)> {
    let bytes = crate::util::read_input(path, crate::util::MAX_IMAGE_BYTES)?;
    let bad = |m: String| Error::format(path, m);
    let mut decoder = png::Decoder::new(std::io::Cursor::new(&bytes[..]));
    // the same pixel budget as images, checked on the header before the data is inflated
    let budget = crate::runtime::max_pixels();
    decoder.set_limits(png::Limits {
        bytes: usize::try_from(budget.saturating_mul(2)).unwrap_or(usize::MAX),
    });
    let mut reader = decoder.read_info().map_err(|e| {
        bad(format!(
            "cannot read mask PNG: {}",
            crate::data::one_line(e)
        ))
    })?;
    let (w, h) = (reader.info().width as usize, reader.info().height as usize);
    if (w as u64) * (h as u64) > budget {
        return Err(bad(format!(
            "mask is {w}x{h}, over the limit of {budget} pixels (--max-pixels)"
        )));
    }
    let (color, depth) = reader.output_color_type();
    if !matches!(color, png::ColorType::Grayscale | png::ColorType::Indexed)
        || depth != png::BitDepth::Eight
    {
        return Err(bad(format!(
            "mask must be an 8-bit grayscale or palette PNG (class indices), not {color:?} with \
             {depth:?} bits"
        )));
    }
    let mut buf = vec![0u8; reader.output_buffer_size().unwrap_or(0)];
    let info = reader.next_frame(&mut buf).map_err(|e| {
        bad(format!(
            "cannot decode mask PNG: {}",
            crate::data::one_line(e)
        ))
    })?;
    buf.truncate(info.buffer_size());
    if buf.len() != w * h {
        return Err(bad(format!("mask data is {} bytes for {w}x{h}", buf.len())));
    }
    Ok((buf, w, h))
}

/// Pascal VOC's colour map (index `i` -> RGB), used for written masks and pictures: the
/// bits of `i` spread over the high bits of the three channels.
pub fn palette() -> Vec<[u8; 3]> {
    (0..256u32)
        .map(|i| {
            let (mut r, mut g, mut b, mut c) = (0u8, 0u8, 0u8, i);
            for j in 0..8 {
                r |= (((c) & 1) as u8) << (7 - j);
                g |= (((c >> 1) & 1) as u8) << (7 - j);
                b |= (((c >> 2) & 1) as u8) << (7 - j);
                c >>= 3;
            }
            [r, g, b]
        })
        .collect()
}

/// `mask` (`w × h` class indices) as a palette PNG in memory, with VOC's colours.
pub fn encode_mask(mask: &[u8], w: usize, h: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
    enc.set_color(png::ColorType::Indexed);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_palette(palette().concat());
    let err = |e: png::EncodingError| Error::Other(format!("cannot encode mask PNG: {e}"));
    let mut writer = enc.write_header().map_err(err)?;
    writer.write_image_data(mask).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(out)
}

/// Reads the folder layout at `root` (see the module's documentation) with images converted
/// to `channels` (1 or 3). Images are read in file-name order. Without `classes.txt` the
/// classes are named `0`, `1`, ... up to the largest mask value.
pub fn load_mask_folder(root: &Path, channels: usize) -> Result<SegDataset> {
    let (images_dir, masks_dir) = (root.join("images"), root.join("masks"));
    for d in [&images_dir, &masks_dir] {
        if !d.is_dir() {
            return Err(Error::format(
                d,
                "no such folder (a segmentation set holds images/ and masks/)",
            ));
        }
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&images_dir).map_err(|e| Error::io(&images_dir, e))? {
        let entry = entry.map_err(|e| Error::io(&images_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let lower = name.to_ascii_lowercase();
        if !name.starts_with('.') && [".png", ".jpg", ".jpeg"].iter().any(|e| lower.ends_with(e)) {
            names.push(name);
        }
    }
    names.sort();
    if names.is_empty() {
        return Err(Error::format(&images_dir, "holds no PNG/JPEG images"));
    }
    let pairs: Vec<(PathBuf, PathBuf)> = names
        .iter()
        .map(|n| {
            let stem = Path::new(n).file_stem().unwrap_or_default();
            let mut m = masks_dir.join(stem);
            m.set_extension("png");
            (images_dir.join(n), m)
        })
        .collect();
    let classes_file = root.join("classes.txt");
    let named: Option<Vec<String>> = if classes_file.exists() {
        let text = crate::util::read_input_text(&classes_file)?;
        let v: Vec<String> = text
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        if v.is_empty() || v.len() > IGNORE as usize {
            return Err(Error::format(
                &classes_file,
                format!("names {} classes (must be 1 to 255, one per line)", v.len()),
            ));
        }
        Some(v)
    } else {
        None
    };
    let images = read_pairs(&pairs, channels)?;
    let classes = match named {
        Some(v) => v,
        None => {
            let top = images
                .iter()
                .flat_map(|im| im.mask.iter().copied().filter(|&v| v != IGNORE))
                .max()
                .unwrap_or(0);
            (0..=top).map(|i| i.to_string()).collect()
        }
    };
    SegDataset::new(images, classes, channels, &|i| {
        pairs[i].1.display().to_string()
    })
}

/// VOC's 21 classes.
pub const VOC_CLASSES: [&str; 21] = [
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
];

/// Reads split `split` (`train`, `val`, `trainval`) of a Pascal VOC folder (`root` holds
/// `JPEGImages/`, `SegmentationClass/` and `ImageSets/Segmentation/`), images as `channels`.
pub fn load_voc(root: &Path, split: &str, channels: usize) -> Result<SegDataset> {
    let list = root
        .join("ImageSets")
        .join("Segmentation")
        .join(format!("{split}.txt"));
    let text = crate::util::read_input_text(&list)?;
    let pairs: Vec<(PathBuf, PathBuf)> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|n| {
            (
                root.join("JPEGImages").join(format!("{n}.jpg")),
                root.join("SegmentationClass").join(format!("{n}.png")),
            )
        })
        .collect();
    if pairs.is_empty() {
        return Err(Error::format(&list, "lists no image"));
    }
    let images = read_pairs(&pairs, channels)?;
    let classes = VOC_CLASSES.iter().map(|s| s.to_string()).collect();
    SegDataset::new(images, classes, channels, &|i| {
        pairs[i].1.display().to_string()
    })
}

/// Reads `(image, mask)` files in parallel, in order; the first failure (in that order) is the
/// error.
/// The mask at `path` of `image`, which is `w × h`: an error naming the mask when it is
/// missing, unreadable or of another size.
pub fn read_mask_of(path: &Path, image: &Path, w: usize, h: usize) -> Result<Vec<u8>> {
    if !path.is_file() {
        return Err(Error::format(
            path,
            format!("missing: the mask of {}", image.display()),
        ));
    }
    let (m, mw, mh) = read_mask(path)?;
    if (mw, mh) != (w, h) {
        return Err(Error::format(
            path,
            format!(
                "mask is {mw}x{mh} but its image {} is {w}x{h}",
                image.display()
            ),
        ));
    }
    Ok(m)
}

fn read_pairs(pairs: &[(PathBuf, PathBuf)], channels: usize) -> Result<Vec<SegImage>> {
    let read = |(img, mask): &(PathBuf, PathBuf)| -> Result<SegImage> {
        let (pixels, w, h) = decode_image_as_is(img, channels)?;
        let m = read_mask_of(mask, img, w, h)?;
        Ok(SegImage {
            pixels,
            mask: m,
            height: h,
            width: w,
        })
    };
    pairs
        .par_iter()
        .map(read)
        .collect::<Vec<_>>()
        .into_iter()
        .collect()
}

/// Writes `ds` in the folder layout under `root` (created; must not hold `images/` or
/// `masks/` yet): `images/NNNNN.png` (8-bit gray or RGB), `masks/NNNNN.png` (palette, VOC's
/// colours) and `classes.txt`. Each file goes to a temporary name first.
pub fn write_mask_folder(ds: &SegDataset, root: &Path) -> Result<()> {
    let (images_dir, masks_dir) = (root.join("images"), root.join("masks"));
    for d in [&images_dir, &masks_dir] {
        if d.exists() {
            return Err(Error::format(d, "already exists (choose a new folder)"));
        }
    }
    for d in [&images_dir, &masks_dir] {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let digits = ds.len().to_string().len().max(5);
    ds.images
        .par_iter()
        .enumerate()
        .try_for_each(|(i, im)| -> Result<()> {
            let name = format!("{i:0digits$}.png");
            let png = encode_image(im, ds.channels)?;
            crate::util::write_atomic(&images_dir.join(&name), &png)?;
            let mask = encode_mask(&im.mask, im.width, im.height)?;
            crate::util::write_atomic(&masks_dir.join(&name), &mask)
        })?;
    let mut classes = ds.classes.join("\n");
    classes.push('\n');
    crate::util::write_atomic(&root.join("classes.txt"), classes.as_bytes())
}

/// An image's pixels (`[0, 1]`, CHW) as an 8-bit PNG in memory.
pub fn encode_image(im: &SegImage, channels: usize) -> Result<Vec<u8>> {
    let p = im.height * im.width;
    let byte = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    let (color, raw): (png::ColorType, Vec<u8>) = match channels {
        1 => (
            png::ColorType::Grayscale,
            im.pixels.iter().map(|&v| byte(v)).collect(),
        ),
        3 => (
            png::ColorType::Rgb,
            (0..p)
                .flat_map(|j| (0..3).map(move |c| (c, j)))
                .map(|(c, j)| byte(im.pixels[c * p + j]))
                .collect(),
        ),
        c => return Err(Error::invalid("channels", format!("{c} (must be 1 or 3)"))),
    };
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, im.width as u32, im.height as u32);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    let err = |e: png::EncodingError| Error::Other(format!("cannot encode PNG: {e}"));
    let mut writer = enc.write_header().map_err(err)?;
    writer.write_image_data(&raw).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(out)
}
