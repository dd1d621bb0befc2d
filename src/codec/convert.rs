//! Stage 5: image conversion (SPEC §1.3, §11): input images to 8-bit planar samples, and
//! decoded samples back to an image of the header's colour type.

use image::{DynamicImage, GenericImageView};

use super::lossless;
use crate::format::{self, Colour, Header};
use crate::step::Geometry;
use crate::{Error, Result};

/// 8-bit input, planar 3 x h x w.
pub(crate) struct ImageData {
    pub width: usize,
    pub height: usize,
    pub colour: Colour,
    pub source_depth: u8,
    pub pixels: Vec<u8>,
    pub notices: Vec<String>,
}

impl ImageData {
    pub(crate) fn from_dynamic(img: &DynamicImage) -> Result<Self> {
        let (w, h) = img.dimensions();
        if w == 0 || h == 0 || w > format::limits::MAX_SIDE || h > format::limits::MAX_SIDE {
            return Err(Error::param(format!(
                "image size {w}x{h} (allowed 1..={} per side)",
                format::limits::MAX_SIDE
            )));
        }
        let (w, h) = (w as usize, h as usize);
        let ct = img.color();
        let mut notices = Vec::new();
        if ct.has_alpha() {
            notices.push("alpha channel dropped (ddpmc codes colour only)".to_string());
        }
        let depth = (ct.bits_per_pixel() / u16::from(ct.channel_count())) as u8;
        if depth > 8 {
            notices.push(format!("{depth}-bit samples reduced to 8-bit"));
        }
        let gray = !ct.has_color();
        let mut pixels = vec![0u8; 3 * h * w];
        if gray {
            let l = img.to_luma8();
            for c in 0..3 {
                pixels[c * h * w..(c + 1) * h * w].copy_from_slice(l.as_raw());
            }
        } else {
            let rgb = img.to_rgb8();
            for (i, p) in rgb.pixels().enumerate() {
                for c in 0..3 {
                    pixels[c * h * w + i] = p[c];
                }
            }
        }
        Ok(ImageData {
            width: w,
            height: h,
            colour: if gray { Colour::Gray } else { Colour::Rgb },
            source_depth: depth.max(8),
            pixels,
            notices,
        })
    }
}

/// 8-bit planar unpadded samples from a padded x0 estimate.
pub(crate) fn crop_pred(x0: &[f32], g: &Geometry) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 * g.h * g.w);
    for c in 0..3 {
        for y in 0..g.h {
            for x in 0..g.w {
                out.push(lossless::predict(x0[g.idx(c, y, x)]));
            }
        }
    }
    out
}

/// Planar 3 x h x w samples to an image of the header's colour type (gray: channel mean).
pub(crate) fn to_image(pix: &[u8], h: &Header, g: &Geometry) -> DynamicImage {
    let n = g.h * g.w;
    match h.colour {
        Colour::Gray => {
            let v: Vec<u8> = (0..n)
                .map(|i| {
                    let s = u32::from(pix[i]) + u32::from(pix[n + i]) + u32::from(pix[2 * n + i]);
                    ((s + 1) / 3) as u8
                })
                .collect();
            DynamicImage::ImageLuma8(
                image::GrayImage::from_raw(g.w as u32, g.h as u32, v).expect("size matches"),
            )
        }
        Colour::Rgb => {
            let mut v = Vec::with_capacity(3 * n);
            for i in 0..n {
                v.extend_from_slice(&[pix[i], pix[n + i], pix[2 * n + i]]);
            }
            DynamicImage::ImageRgb8(
                image::RgbImage::from_raw(g.w as u32, g.h as u32, v).expect("size matches"),
            )
        }
    }
}
