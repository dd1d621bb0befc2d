//! Stage 5: encoder and progressive decoder (SPEC §6, §10, §11): image <-> chunks.
//!
//! ```no_run
//! use ddpmc::codec::{decode, encode, EncodeOptions, Recon};
//! let model = ddpmc::model::default_model()?;
//! let img = image::open("samples/kodim23_crop.png")?;
//! let bytes = encode(&img, &model, &EncodeOptions::default())?;
//! let out = decode(&bytes, &model, None, Recon::Denoise)?;
//! assert_eq!(out.image.width(), img.width());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod convert;
mod decoder;
mod encoder;
mod inspect;
mod limits;
#[doc(hidden)]
pub mod lossless;
mod rate;
mod recon;

pub use decoder::Decoder;
pub(crate) use inspect::header_model_id;
pub use inspect::{chunk_ends, inspect, ChunkInfo, FileInfo};
pub use limits::{Limits, Progress};
pub use rate::{preset_schedule, schedule_to};

pub(crate) use convert::{crop_pred, to_image, ImageData};
pub(crate) use recon::{denoise, reconstruct};

use image::DynamicImage;

use crate::diffusion::SchedulePoint;
use crate::format;
use crate::model::Denoiser;
use crate::{Error, Result};

/// Encoder options.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodeOptions {
    /// Quality preset 1..=7: the number of coding steps after t = 1000 on the ladder
    /// 1000 -> 150 -> 70 -> 40 -> 20 -> 12 -> 4 -> 1 ([`crate::diffusion::LADDER`]); default 3.
    /// With `lossless`, 0
    /// is allowed too: no steps, the LOSS chunk alone (no network at either end).
    pub quality: u8,
    /// Target bits per pixel; overrides `quality` (the file lands at or under it).
    pub bpp: Option<f64>,
    /// Append a LOSS chunk that makes the decoded image bit-exact.
    pub lossless: bool,
    /// With `lossless`: keep the chain prefix of 0..=`quality` steps whose file is smallest
    /// (prefixes are tried in order; the search stops at the first that is larger than the
    /// one before). Without it the prefix has exactly `quality` steps.
    pub prefix_search: bool,
    /// Seed of the shared PRNG.
    pub seed: u64,
    /// Step coder kinds the encoder may choose from at every step, by rate and distortion
    /// (SPEC §12); empty: kind 3 alone on the steps that start at t >= 70, kinds 2 and 3 below.
    pub coders: Vec<u8>,
    /// The source image's ICC colour profile, kept in the file (SPEC §4.5) and given back by
    /// the decoder ([`DecodedFile::icc_profile`]).
    pub icc_profile: Option<Vec<u8>>,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            quality: 3,
            bpp: None,
            lossless: false,
            prefix_search: false,
            seed: 0,
            coders: Vec::new(),
            icc_profile: None,
        }
    }
}

/// How to turn the latent after a step into an image (SPEC §11).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Recon {
    /// One network call: the clipped x0 estimate (best PSNR).
    #[default]
    Denoise,
    /// Deterministic DDIM steps to 0 along the ladder (sharper).
    Flow,
    /// Ancestral sampling to 0 with noise from the PRNG (most realistic).
    Sample,
}

/// Per-step statistics of an encode.
#[derive(Clone, Debug)]
pub struct StepReport {
    /// Start timestep.
    pub t_start: f64,
    /// End timestep.
    pub t_end: f64,
    /// Step coder kind chosen (SPEC §6.2).
    pub coder: u8,
    /// Block (kind 1) or tile (kind 2) size chosen.
    pub block: usize,
    /// Symbol half-width K.
    pub k_max: u32,
    /// Bytes of the STEP chunk, header and CRC included.
    pub chunk_bytes: usize,
    /// Ideal code length of the chunk's symbols and side information (sum of -log2 p).
    pub ideal_bits: f64,
    /// Ideal code length of the side information alone.
    pub side_bits: f64,
    /// Side-information units skipped (scale index 0): (channel, block) pairs of kind 1,
    /// (component, band group, region) of kind 2.
    pub skipped_blocks: usize,
    /// Side-information units in total.
    pub blocks: usize,
    /// Reverse-channel-coded steps (kind 3): the KL divergence of the coded targets from
    /// their priors in bits, the cost of an ideal Gaussian channel for the same units.
    pub kl_bits: Option<f64>,
    /// Wall-clock seconds the encoder spent on this step: the network pass at its start point,
    /// every coder tried and, when several were, their decoded estimates.
    pub seconds: f64,
}

/// What `encode_with_report` tells besides the bytes.
#[derive(Clone, Debug, Default)]
pub struct EncodeReport {
    /// Conversions made on the input (alpha dropped, 16-bit reduced ...).
    pub notices: Vec<String>,
    /// Per coding step.
    pub steps: Vec<StepReport>,
    /// Bytes of the LOSS chunk, if any.
    pub loss_bytes: Option<usize>,
    /// The chosen end point's log-SNR (rate control) or the preset's.
    pub end_logsnr: f64,
}

/// A decoded file.
pub struct DecodedFile {
    /// The image after the last decoded step.
    pub image: DynamicImage,
    /// Steps decoded.
    pub steps_decoded: usize,
    /// Steps in the file.
    pub steps_total: usize,
    /// True when the data ended before the END chunk.
    pub truncated: bool,
    /// True when the image is bit-exact (LOSS chunk verified).
    pub lossless: bool,
    /// The source image's ICC colour profile, if the file carries one.
    pub icc_profile: Option<Vec<u8>>,
}

/// The image after one step, for progressive displays and rate-distortion curves.
pub struct StepImage {
    /// Steps decoded (1-based); for the lossless entry, steps_total + 1.
    pub step: usize,
    /// Byte length of the file truncated just after this step's chunk.
    pub bytes: usize,
    /// The reconstruction.
    pub image: DynamicImage,
    /// True for the entry after the LOSS chunk.
    pub lossless: bool,
}

/// An image in a `Debug` output: its size and colour type, not its pixels.
fn image_summary(img: &DynamicImage) -> String {
    format!("{}x{} {:?}", img.width(), img.height(), img.color())
}

impl std::fmt::Debug for DecodedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodedFile")
            .field("image", &image_summary(&self.image))
            .field("steps_decoded", &self.steps_decoded)
            .field("steps_total", &self.steps_total)
            .field("truncated", &self.truncated)
            .field("lossless", &self.lossless)
            .field(
                "icc_profile_bytes",
                &self.icc_profile.as_ref().map(Vec::len),
            )
            .finish()
    }
}

impl std::fmt::Debug for StepImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepImage")
            .field("step", &self.step)
            .field("bytes", &self.bytes)
            .field("image", &image_summary(&self.image))
            .field("lossless", &self.lossless)
            .finish()
    }
}

/// Encode an image.
pub fn encode(img: &DynamicImage, model: &dyn Denoiser, opts: &EncodeOptions) -> Result<Vec<u8>> {
    Ok(encode_with_report(img, model, opts, &mut |_, _| {})?.0)
}

/// Encode an image; also report per-step statistics. `progress(done, total)` is called as
/// steps complete (for rate control: once per trial).
pub fn encode_with_report(
    img: &DynamicImage,
    model: &dyn Denoiser,
    opts: &EncodeOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<u8>, EncodeReport)> {
    let data = ImageData::from_dynamic(img)?;
    let (ph, pw) = {
        let m = model.multiple().max(1);
        (data.height.div_ceil(m) * m, data.width.div_ceil(m) * m)
    };
    if (ph as u64) * (pw as u64) > format::limits::MAX_PIXELS {
        return Err(Error::Limits(format!(
            "padded image {pw}x{ph} (allowed up to {} pixels)",
            format::limits::MAX_PIXELS
        )));
    }
    if let Some(icc) = &opts.icc_profile {
        if icc.len() > format::limits::MAX_ICC {
            return Err(Error::Limits(format!(
                "ICC profile of {} bytes (allowed up to {})",
                icc.len(),
                format::limits::MAX_ICC
            )));
        }
    }
    let chain = encoder::ChainOpts {
        lossless: opts.lossless,
        prefix_search: opts.prefix_search,
        seed: opts.seed,
        coders: &opts.coders,
        icc: opts.icc_profile.as_deref(),
    };
    let (enc, lambda) = match opts.bpp {
        None => {
            let s = if opts.lossless && opts.quality == 0 {
                vec![SchedulePoint::at(crate::diffusion::LADDER[0])]
            } else {
                preset_schedule(opts.quality)?
            };
            let l = s.last().map_or(0.0, |p| p.logsnr);
            (
                encoder::encode_schedule(&data, model, &s, &chain, progress)?,
                l,
            )
        }
        Some(b) => {
            if !(b.is_finite() && b > 0.0) {
                return Err(Error::param(format!("target bpp {b} (must be > 0)")));
            }
            if opts.lossless {
                return Err(Error::param(
                    "--bpp and --lossless exclude each other (a lossless file has the size it has)",
                ));
            }
            let target = (b * (data.width * data.height) as f64 / 8.0).floor() as usize;
            rate::rate_control(&data, model, target, &chain, progress)?
        }
    };
    let report = EncodeReport {
        notices: data.notices.clone(),
        steps: enc.steps,
        loss_bytes: enc.loss_bytes,
        end_logsnr: lambda,
    };
    Ok((enc.bytes, report))
}

/// Decode `bytes` (whole chunks; a truncated file decodes its complete steps), stopping after
/// `max_steps` steps if given, under the default [`Limits`].
pub fn decode(
    bytes: &[u8],
    model: &dyn Denoiser,
    max_steps: Option<usize>,
    recon: Recon,
) -> Result<DecodedFile> {
    decode_with_limits(bytes, model, max_steps, recon, Limits::default())
}

/// [`decode`] under caller-set limits: a file that asks for more is refused with
/// [`Error::Limits`] once its header is read, before any latent or network pass.
pub fn decode_with_limits(
    bytes: &[u8],
    model: &dyn Denoiser,
    max_steps: Option<usize>,
    recon: Recon,
    limits: Limits,
) -> Result<DecodedFile> {
    let mut d = Decoder::with_limits(model, limits);
    d.set_max_steps(max_steps);
    d.push(bytes)?;
    d.finish(recon)
}

/// Decode every step: per step, the byte length of the file truncated after that step's
/// chunk and the image (plus a last entry for a LOSS chunk), under the default [`Limits`].
pub fn decode_all_steps(
    bytes: &[u8],
    model: &dyn Denoiser,
    recon: Recon,
) -> Result<Vec<StepImage>> {
    decode_all_steps_with_limits(bytes, model, recon, Limits::default())
}

/// [`decode_all_steps`] under caller-set limits (see [`decode_with_limits`]).
pub fn decode_all_steps_with_limits(
    bytes: &[u8],
    model: &dyn Denoiser,
    recon: Recon,
    limits: Limits,
) -> Result<Vec<StepImage>> {
    let mut d = Decoder::with_limits(model, limits);
    let mut out = Vec::new();
    let mut pos = 0;
    for end in chunk_ends(bytes) {
        d.push(&bytes[pos..end])?;
        pos = end;
        if d.steps_done() > out.len() {
            out.push(StepImage {
                step: d.steps_done(),
                bytes: d.bytes_consumed(),
                image: d.image(recon)?,
                lossless: false,
            });
        } else if d.is_lossless() && !out.last().is_some_and(|s: &StepImage| s.lossless) {
            out.push(StepImage {
                step: d.steps_done() + 1,
                bytes: d.bytes_consumed(),
                image: d.image(recon)?,
                lossless: true,
            });
        }
    }
    d.push(&bytes[pos..])?;
    Ok(out)
}

/// Encode along an explicit schedule (entry 0 = the start point, t = 1000), seed 0, no
/// lossless chunk, with the step coder kinds `coders` (empty: the default kinds); returns the bytes and
/// per-step reports. For experiments and tests.
pub fn encode_with_schedule(
    img: &DynamicImage,
    model: &dyn Denoiser,
    schedule: &[SchedulePoint],
    coders: &[u8],
) -> Result<(Vec<u8>, Vec<StepReport>)> {
    if schedule.len() < 2 || schedule.len() > format::limits::MAX_STEPS + 1 {
        return Err(Error::param(format!(
            "schedule of {} points (allowed 2..={})",
            schedule.len(),
            format::limits::MAX_STEPS + 1
        )));
    }
    for w in schedule.windows(2) {
        if !(w[0].abar > 0.0 && w[0].abar < w[1].abar && w[1].abar < 1.0) {
            return Err(Error::param(format!(
                "schedule abar values {} -> {} (need 0 < abar strictly increasing < 1)",
                w[0].abar, w[1].abar
            )));
        }
    }
    let data = ImageData::from_dynamic(img)?;
    let chain = encoder::ChainOpts {
        lossless: false,
        prefix_search: false,
        seed: 0,
        coders,
        icc: None,
    };
    let e = encoder::encode_schedule(&data, model, schedule, &chain, &mut |_, _| {})?;
    Ok((e.bytes, e.steps))
}
