//! Bench stage: rate-distortion measurement of ddpmc against classic codecs (`ddpmc bench`).
//!
//! The pieces, each usable alone:
//! - [`metrics`]: PSNR, MS-SSIM and SSIMULACRA2 over 8-bit RGB;
//! - [`classic`]: classic codecs through their command-line tools (cjpeg, cwebp, opj_compress,
//!   avifenc, cjxl, heif-enc) and the image crate's own JPEG encoder, with the quality ladders
//!   of ../shared/reference/kodak_classic_rd.csv;
//! - [`rd`]: mean curves, log-bpp interpolation, Bjontegaard deltas;
//! - [`report`]: `results.csv`, the summary tables, the BD table, the comparison with a
//!   reference table;
//! - [`plot`]: the rate-distortion plots and the progressive filmstrip;
//! - [`ddpmc`]: ddpmc itself, every decoded step of each preset's file as a rate point;
//! - [`lossless`]: lossless sizes of ddpmc, PNG, WebP lossless and JPEG XL (`--lossless`).
//!
//! A codec enters the bench through [`RdCodec`]: given an image it returns the decoded images
//! of all its rate points, with their sizes and timings; [`measure`] turns them into [`Row`]s.

pub mod classic;
pub mod ddpmc;
pub mod lossless;
pub mod metrics;
pub mod plot;
pub mod rd;
pub mod report;
pub mod run;

use crate::Result;
use image::RgbImage;

/// Targets of the summary tables, bits per pixel.
pub const TARGET_BPP: [f64; 4] = [0.25, 0.5, 1.0, 2.0];

/// One decoded rate point of a codec on one image.
#[derive(Clone, Debug)]
pub struct Decoded {
    /// Codec setting, as written in the `setting` column.
    pub setting: String,
    /// Size of the coded data in bytes (for a progressive file: the file truncated after the
    /// step).
    pub bytes: u64,
    /// The decoded image.
    pub image: RgbImage,
    /// Encoding wall-clock seconds.
    pub enc_s: f64,
    /// Decoding wall-clock seconds.
    pub dec_s: f64,
}

/// A codec under test.
pub trait RdCodec: Send + Sync {
    /// Name written in the `codec` column.
    fn name(&self) -> &str;
    /// Codes and decodes `img` at every setting of the codec.
    fn points(&self, img: &RgbImage) -> Result<Vec<Decoded>>;
    /// The codec's version for tables and legends ("libjpeg-turbo 2.1.5"), where known.
    fn version(&self) -> Option<String> {
        None
    }
}

/// One line of `results.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Codec name.
    pub codec: String,
    /// Codec setting (quality, distance, target rate; for ddpmc `q<preset>/<step>`).
    pub setting: String,
    /// Image file name.
    pub image: String,
    /// Bits per pixel: bytes x 8 / pixels.
    pub bpp: f64,
    /// PSNR over RGB, dB (infinite when lossless).
    pub psnr: f64,
    /// MS-SSIM over RGB (NaN, written `n/a`, when the image is too small for 5 scales).
    pub ms_ssim: f64,
    /// SSIMULACRA2 score (NaN, written `n/a`, when not measured: an image under 8 pixels, or a
    /// row read from a CSV written before the column existed).
    pub ssimulacra2: f64,
    /// Encoding seconds.
    pub enc_s: f64,
    /// Decoding seconds.
    pub dec_s: f64,
}

/// The `results.csv` header.
pub const CSV_HEADER: &str = "codec,setting,image,bpp,psnr,ms_ssim,ssimulacra2,enc_s,dec_s";

/// The header of `results.csv` files written before the SSIMULACRA2 column (still read; their
/// rows get `ssimulacra2` NaN).
pub const CSV_HEADER_V1: &str = "codec,setting,image,bpp,psnr,ms_ssim,enc_s,dec_s";

/// Measures `codec` on `img` (named `image` in the rows): one row per rate point.
pub fn measure(codec: &dyn RdCodec, image: &str, img: &RgbImage) -> Result<Vec<Row>> {
    rows_for(codec.name(), image, img, &codec.points(img)?)
}

/// Rows of decoded points `decoded` of `codec` on the original `img` (named `image`).
pub fn rows_for(codec: &str, image: &str, img: &RgbImage, decoded: &[Decoded]) -> Result<Vec<Row>> {
    let pixels = (img.width() as f64) * (img.height() as f64);
    decoded
        .iter()
        .map(|d| row_for(codec, image, img, pixels, d))
        .collect()
}

fn row_for(codec: &str, image: &str, img: &RgbImage, pixels: f64, d: &Decoded) -> Result<Row> {
    let psnr = metrics::psnr(img, &d.image)?;
    let ms_ssim = metrics::ms_ssim(img, &d.image).unwrap_or(f64::NAN);
    let ssimulacra2 = metrics::ssimulacra2(img, &d.image).unwrap_or(f64::NAN);
    Ok(Row {
        codec: codec.to_string(),
        setting: d.setting.clone(),
        image: image.to_string(),
        bpp: d.bytes as f64 * 8.0 / pixels,
        psnr,
        ms_ssim,
        ssimulacra2,
        enc_s: d.enc_s,
        dec_s: d.dec_s,
    })
}
