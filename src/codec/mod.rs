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

mod decoder;
mod encoder;
mod lossless;

pub use decoder::Decoder;

use image::{DynamicImage, GenericImageView};

use crate::diffusion::{
    abar_table, logsnr, normal, SchedulePoint, StepCoeffs, LADDER, PRESETS, RECON_LADDER,
};
use crate::format::{self, kind, Colour, Header, StepChunk};
use crate::model::Denoiser;
use crate::step::{self, Geometry};
use crate::{Error, Result};

/// Encoder options.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodeOptions {
    /// Quality preset 1..=5: the number of coding steps after t = 1000 on the ladder
    /// 1000 -> 150 -> 40 -> 12 -> 4 -> 1 ([`crate::diffusion::LADDER`]).
    pub quality: u8,
    /// Target bits per pixel; overrides `quality` (the file lands at or under it).
    pub bpp: Option<f64>,
    /// Append a LOSS chunk that makes the decoded image bit-exact.
    pub lossless: bool,
    /// Seed of the shared PRNG.
    pub seed: u64,
    /// Step coder kinds the encoder may choose from, per step by real size (SPEC §6.2);
    /// empty: kinds 1 and 2.
    pub coders: Vec<u8>,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            quality: 2,
            bpp: None,
            lossless: false,
            seed: 0,
            coders: Vec::new(),
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
    fn from_dynamic(img: &DynamicImage) -> Result<Self> {
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

/// Clipped network x0 estimate at schedule point `p` (SPEC §6.1).
pub(crate) fn denoise(
    model: &dyn Denoiser,
    z: &[f32],
    p: &SchedulePoint,
    g: &Geometry,
) -> Result<Vec<f32>> {
    step::clip(model.predict_x0(z, g.ph, g.pw, p.abar, p.logsnr)?, g)
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

/// Reconstruction from the latent at point `p` (SPEC §11).
pub(crate) fn reconstruct(
    model: &dyn Denoiser,
    z: &[f32],
    p: &SchedulePoint,
    xhat: &[f32],
    recon: Recon,
    seed: u64,
    g: &Geometry,
) -> Result<Vec<f32>> {
    if recon == Recon::Denoise {
        return Ok(xhat.to_vec());
    }
    let tab = abar_table();
    let mut z = z.to_vec();
    let mut x0 = xhat.to_vec();
    let mut ab = p.abar;
    for (i, &t) in RECON_LADDER.iter().enumerate() {
        let ab2 = tab[t as usize];
        if ab2 <= ab {
            continue;
        }
        match recon {
            Recon::Flow => {
                let (sa, sb) = (ab.sqrt() as f32, (1.0 - ab).sqrt() as f32);
                let (sa2, sb2) = (ab2.sqrt() as f32, (1.0 - ab2).sqrt() as f32);
                for (zi, &xi) in z.iter_mut().zip(&x0) {
                    let eps = (*zi - sa * xi) / sb;
                    *zi = sa2 * xi + sb2 * eps;
                }
            }
            _ => {
                let co = StepCoeffs::new(ab, ab2);
                let (cx, cz) = (co.cx as f32, co.cz as f32);
                let sd = co.var.sqrt() as f32;
                for c in 0..3 {
                    for y in 0..g.ph {
                        for x in 0..g.pw {
                            let k = g.idx(c, y, x);
                            let nz =
                                normal(seed, crate::diffusion::domain::SAMPLE, i as u64, c, y, x);
                            z[k] = cx * x0[k] + cz * z[k] + sd * nz;
                        }
                    }
                }
            }
        }
        ab = ab2;
        let pt = SchedulePoint {
            t: f64::from(t),
            abar: ab2,
            logsnr: logsnr(ab2),
        };
        x0 = denoise(model, &z, &pt, g)?;
    }
    Ok(x0)
}

/// The preset schedule of quality `q` (1..=[`PRESETS`]).
pub fn preset_schedule(q: u8) -> Result<Vec<SchedulePoint>> {
    if !(1..=PRESETS).contains(&q) {
        return Err(Error::param(format!("quality {q} (allowed 1..={PRESETS})")));
    }
    Ok(LADDER[..=q as usize]
        .iter()
        .map(|&t| SchedulePoint::at(t))
        .collect())
}

/// The rate-control schedule of `q` ladder steps whose last step is stretched to end at
/// log-SNR `lambda`: 1000, the ladder points 1..q-1, then `lambda`.
pub fn schedule_to(q: usize, lambda: f64) -> Vec<SchedulePoint> {
    let mut s: Vec<SchedulePoint> = LADDER[..q].iter().map(|&t| SchedulePoint::at(t)).collect();
    s.push(SchedulePoint::from_logsnr(lambda));
    s
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
    let chain = encoder::ChainOpts {
        lossless: opts.lossless,
        seed: opts.seed,
        coders: &opts.coders,
    };
    let (enc, lambda) = match opts.bpp {
        None => {
            let s = preset_schedule(opts.quality)?;
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
            rate_control(&data, model, target, &chain, progress)?
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

/// Rate control (SPEC §12, informative): one encode of the full ladder gives the size of
/// every preset (their chunks are prefixes of it); the last step of the largest preset that
/// fits is then stretched, bisecting its end point in log-SNR on real sizes.
fn rate_control(
    data: &ImageData,
    model: &dyn Denoiser,
    target: usize,
    chain: &encoder::ChainOpts,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(encoder::Encoded, f64)> {
    let tab = abar_table();
    let full = preset_schedule(PRESETS)?;
    let top = usize::from(PRESETS);
    let enc = encoder::encode_resumable(data, model, &full, chain, progress, None, true)?;
    // Size of preset q = preamble + HEAD with q + 1 points + first q STEP chunks + END.
    let head_full = 12 + Header::fixed_len() + 24 * full.len();
    let mut fits = 0;
    for q in 1..=top {
        let steps: usize = enc.steps[..q].iter().map(|s| s.chunk_bytes).sum();
        let size = format::PREAMBLE_LEN + head_full - 24 * (top - q) + steps + 12;
        if size <= target {
            fits = q;
        }
    }
    let q = fits.max(1);
    // Bracket of the stretched end point.
    let lo = if fits == 0 {
        logsnr(tab[900])
    } else {
        full[q].logsnr
    };
    let hi = logsnr(tab[1]);
    // Every trial shares the first q - 1 steps with the full ladder: resume after them.
    let snap = &enc.snapshots[q - 1];
    let run = |l: f64, progress: &mut dyn FnMut(usize, usize)| {
        let s = schedule_to(q, l);
        encoder::encode_resumable(data, model, &s, chain, progress, Some(snap), false)
    };
    let mut best = if fits == 0 {
        let e = run(lo, progress)?;
        if e.bytes.len() > target {
            return Err(Error::param(format!(
                "target of {target} bytes is below the smallest file for this image ({} bytes, {:.4} bpp)",
                e.bytes.len(),
                e.bytes.len() as f64 * 8.0 / (data.width * data.height) as f64
            )));
        }
        (e, lo)
    } else {
        let e = encoder::encode_resumable(
            data,
            model,
            &full[..=q],
            chain,
            progress,
            Some(snap),
            false,
        )?;
        (e, full[q].logsnr)
    };
    let (mut lo, mut hi) = (lo, hi);
    for _ in 0..9 {
        let mid = 0.5 * (lo + hi);
        let e = run(mid, progress)?;
        if e.bytes.len() <= target {
            lo = mid;
            best = (e, mid);
        } else {
            hi = mid;
        }
    }
    Ok(best)
}

/// Decode `bytes` (whole chunks; a truncated file decodes its complete steps), stopping after
/// `max_steps` steps if given.
pub fn decode(
    bytes: &[u8],
    model: &dyn Denoiser,
    max_steps: Option<usize>,
    recon: Recon,
) -> Result<DecodedFile> {
    let mut d = Decoder::new(model);
    d.set_max_steps(max_steps);
    d.push(bytes)?;
    d.finish(recon)
}

/// Decode every step: per step, the byte length of the file truncated after that step's
/// chunk and the image (plus a last entry for a LOSS chunk).
pub fn decode_all_steps(
    bytes: &[u8],
    model: &dyn Denoiser,
    recon: Recon,
) -> Result<Vec<StepImage>> {
    let mut d = Decoder::new(model);
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

/// Offsets just after the preamble and after each chunk, following length fields only (no
/// checks: the decoder checks).
pub fn chunk_ends(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = format::PREAMBLE_LEN;
    if bytes.len() < pos {
        return out;
    }
    out.push(pos);
    while bytes.len() >= pos + 8 {
        let n = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]) as usize;
        let end = pos.saturating_add(12).saturating_add(n);
        if end > bytes.len() {
            break;
        }
        out.push(end);
        pos = end;
    }
    out
}

/// One chunk of a file, as listed by [`inspect`].
#[derive(Clone, Debug)]
pub struct ChunkInfo {
    /// Chunk type as text.
    pub kind: String,
    /// Offset of the chunk's first byte.
    pub offset: usize,
    /// Total bytes (12 + payload).
    pub len: usize,
    /// For STEP chunks: coder kind, block (or tile) size and K.
    pub step: Option<(u8, u16, u16)>,
}

/// What a file holds, without decoding (for `ddpmc info` and benchmarks).
#[derive(Clone, Debug)]
pub struct FileInfo {
    /// The header.
    pub header: Header,
    /// Chunks in order.
    pub chunks: Vec<ChunkInfo>,
    /// Total bytes.
    pub total_bytes: usize,
    /// True when the END chunk is present.
    pub complete: bool,
}

impl FileInfo {
    /// Per STEP chunk: (its bytes, the byte length of the file truncated after it).
    pub fn step_bytes(&self) -> Vec<(usize, usize)> {
        self.chunks
            .iter()
            .filter(|c| c.kind == "STEP")
            .map(|c| (c.len, c.offset + c.len))
            .collect()
    }
}

/// Read the header and chunk table of a file. Checks the signature, the CRCs, the header,
/// every STEP body's fixed fields and the chunk order of SPEC §3.3 (as the decoder does).
pub fn inspect(bytes: &[u8]) -> Result<FileInfo> {
    let major = format::check_preamble(bytes)?;
    let mut pos = format::PREAMBLE_LEN;
    let mut header: Option<Header> = None;
    let mut chunks = Vec::new();
    let mut complete = false;
    let mut steps = 0usize;
    let mut loss = false;
    while let Some(c) = format::read_chunk(&bytes[pos..])? {
        let name = String::from_utf8_lossy(&c.kind).into_owned();
        if header.is_none() && c.kind != kind::HEAD && format::is_critical(c.kind) {
            return Err(Error::format(format!(
                "chunk {name:?} before the header (the first critical chunk must be HEAD)"
            )));
        }
        let total = header.as_ref().map_or(0, Header::steps);
        let mut step = None;
        match c.kind {
            kind::HEAD => {
                if header.is_some() {
                    return Err(Error::format("second HEAD chunk"));
                }
                header = Some(Header::parse(c.payload)?);
            }
            kind::STEP => {
                let s = StepChunk::parse(c.payload)?;
                if usize::from(s.index) != steps || steps >= total || loss {
                    return Err(Error::format(format!(
                        "STEP chunk with index {} (expected {steps} of the header's {total} steps, before LOSS)",
                        s.index
                    )));
                }
                if major < 2 && s.coder != 1 {
                    return Err(Error::format(format!(
                        "step coder kind {} in a version-{major} file (version 1 has kind 1 only)",
                        s.coder
                    )));
                }
                let b = step::coder(s.coder)?.describe(&s.body)?;
                step = Some((s.coder, b.block, b.k_max));
                steps += 1;
            }
            kind::LOSS => {
                if steps != total || loss {
                    return Err(Error::format(
                        "LOSS chunk out of place (it must follow the last STEP, once)",
                    ));
                }
                loss = true;
            }
            kind::END => {
                if steps != total {
                    return Err(Error::format(format!("END after {steps} of {total} steps")));
                }
                complete = true;
            }
            k if format::is_critical(k) => {
                return Err(Error::format(format!(
                    "unknown critical chunk {name:?} (this decoder knows HEAD, STEP, LOSS, END)"
                )))
            }
            _ => {}
        }
        chunks.push(ChunkInfo {
            kind: name,
            offset: pos,
            len: c.len,
            step,
        });
        pos += c.len;
        if complete {
            break;
        }
    }
    let header = header.ok_or_else(|| Error::format("no HEAD chunk"))?;
    Ok(FileInfo {
        header,
        chunks,
        total_bytes: bytes.len(),
        complete,
    })
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
        seed: 0,
        coders,
    };
    let e = encoder::encode_schedule(&data, model, schedule, &chain, &mut |_, _| {})?;
    Ok((e.bytes, e.steps))
}
