//! Pictures of segmentations: masks in Pascal VOC's colours, and a panel of an image next to
//! its masks (truth, prediction) for looking at results.

use super::data::palette;
use crate::{Error, Result};

/// RGB pixels, row-major, with their size.
#[derive(Clone, Debug, PartialEq)]
pub struct Rgb {
    /// `width × height` pixels.
    pub pixels: Vec<[u8; 3]>,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

impl Rgb {
    /// A mask (`width × height` class indices) in VOC's colours (255, ignored, is cream).
    pub fn of_mask(mask: &[u8], width: usize, height: usize) -> Rgb {
        let pal = palette();
        Rgb {
            pixels: mask.iter().map(|&v| pal[v as usize]).collect(),
            width,
            height,
        }
    }

    /// An image's pixels (`[0, 1]`, CHW, 1 or 3 channels) as RGB.
    pub fn of_image(pixels: &[f32], channels: usize, width: usize, height: usize) -> Rgb {
        let p = width * height;
        let byte = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
        let at = |c: usize, j: usize| byte(pixels[c.min(channels - 1) * p + j]);
        Rgb {
            pixels: (0..p).map(|j| [at(0, j), at(1, j), at(2, j)]).collect(),
            width,
            height,
        }
    }

    /// Pictures of one height side by side, `gap` white pixels between them, every pixel
    /// repeated `zoom × zoom` times (nearest neighbour: small scenes stay sharp).
    pub fn panel(parts: &[Rgb], gap: usize, zoom: usize) -> Result<Rgb> {
        let zoom = zoom.max(1);
        let height = parts.first().map_or(0, |p| p.height);
        if parts.iter().any(|p| p.height != height) {
            return Err(Error::invalid("panel", "pictures of different heights"));
        }
        let width =
            parts.iter().map(|p| p.width).sum::<usize>() + gap * parts.len().saturating_sub(1);
        let mut pixels = vec![[255u8; 3]; width * zoom * height * zoom];
        let mut x0 = 0;
        for p in parts {
            for y in 0..height * zoom {
                for x in 0..p.width * zoom {
                    pixels[y * width * zoom + x0 * zoom + x] =
                        p.pixels[(y / zoom) * p.width + x / zoom];
                }
            }
            x0 += p.width + gap;
        }
        Ok(Rgb {
            pixels,
            width: width * zoom,
            height: height * zoom,
        })
    }

    /// As an 8-bit RGB PNG in memory.
    pub fn png(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let err = |e: png::EncodingError| Error::Other(format!("cannot encode PNG: {e}"));
        let mut writer = enc.write_header().map_err(err)?;
        writer
            .write_image_data(&self.pixels.concat())
            .map_err(err)?;
        writer.finish().map_err(err)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::Rgb;

    /// Two 2x1 pictures, a gap of 1, zoom 2: a 10x2 picture whose columns repeat each source
    /// pixel twice, white in the gap (worked out by hand).
    #[test]
    fn panel_places_and_zooms() {
        let a = Rgb::of_mask(&[0, 1], 2, 1); // black, VOC's class 1 (128, 0, 0)
        let b = Rgb::of_image(&[1.0, 0.0], 1, 2, 1); // white, black
        let p = Rgb::panel(&[a, b], 1, 2).unwrap();
        assert_eq!((p.width, p.height), (10, 2));
        let k = [0, 0, 0];
        let r = [128, 0, 0];
        let w = [255, 255, 255];
        let row = [k, k, r, r, w, w, w, w, k, k];
        assert_eq!(&p.pixels[..10], &row);
        assert_eq!(&p.pixels[10..], &row);
        let short = Rgb::of_mask(&[0], 1, 1);
        let tall = Rgb::of_mask(&[0, 0], 1, 2);
        assert!(Rgb::panel(&[short, tall], 1, 1).is_err());
    }
}
