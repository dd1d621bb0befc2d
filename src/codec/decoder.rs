//! Stage 5: the progressive decoder (SPEC §3.3, §6, §10, §11): takes bytes as they arrive,
//! runs every complete STEP chunk, and reconstructs after any step.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};

use super::limits::{Counted, Progress, ProgressFn};
use super::{lossless, Limits, Recon};
use crate::diffusion::{start_latent, StepCoeffs};
use crate::entropy::hex;
use crate::format::{self, kind, Header, LossChunk, StepChunk};
use crate::model::Denoiser;
use crate::step::{self, Geometry, StepInput};
use crate::{Error, Result};

/// A progressive decoder: push bytes as they arrive; each complete STEP chunk advances the
/// chain by one step, after which [`Decoder::image`] gives a picture.
///
/// The network runs inside [`Decoder::push`], [`Decoder::image`] and [`Decoder::finish`];
/// [`Decoder::with_progress`] sets a callback told of each network pass, which may cancel.
pub struct Decoder<'m> {
    model: &'m dyn Denoiser,
    buf: Vec<u8>,
    consumed: usize,
    preamble_ok: bool,
    major: u8,
    header: Option<Header>,
    g: Option<Geometry>,
    z: Vec<f32>,
    xhat: OnceLock<Vec<f32>>,
    steps_done: usize,
    step_ends: Vec<usize>,
    pixels: Option<Vec<u8>>,
    finished: bool,
    max_steps: Option<usize>,
    skipped: usize,
    symbol_digest: Option<Sha256>,
    icc: Option<Vec<u8>>,
    limits: Limits,
    passes: AtomicU64,
    progress: Option<Mutex<ProgressFn<'m>>>,
}

impl std::fmt::Debug for Decoder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("header", &self.header)
            .field("steps_done", &self.steps_done)
            .field("bytes_consumed", &self.consumed)
            .field("buffered", &self.buf.len())
            .field("finished", &self.finished)
            .field("lossless", &self.pixels.is_some())
            .field("icc_profile_bytes", &self.icc.as_ref().map(Vec::len))
            .field("network_passes", &self.network_passes())
            .field("progress_callback", &self.progress.is_some())
            .finish_non_exhaustive()
    }
}

impl<'m> Decoder<'m> {
    /// A decoder that uses `model` for the model means, with the default [`Limits`] (every
    /// file the format allows).
    pub fn new(model: &'m dyn Denoiser) -> Self {
        Self::with_limits(model, Limits::default())
    }

    /// A decoder with caller-set limits: a file whose header asks for more (image area,
    /// steps to decode, network passes) is refused with [`Error::Limits`] as soon as the
    /// header is read, before any latent is allocated or any network pass runs; a pass
    /// beyond [`Limits::max_passes`] is refused when asked for.
    pub fn with_limits(model: &'m dyn Denoiser, limits: Limits) -> Self {
        Decoder {
            model,
            buf: Vec::new(),
            consumed: 0,
            preamble_ok: false,
            major: 0,
            header: None,
            g: None,
            z: Vec::new(),
            xhat: OnceLock::new(),
            steps_done: 0,
            step_ends: Vec::new(),
            pixels: None,
            finished: false,
            max_steps: None,
            skipped: 0,
            symbol_digest: None,
            icc: None,
            limits,
            passes: AtomicU64::new(0),
            progress: None,
        }
    }

    /// Call `f` before each network pass with where the decode stands ([`Progress`]); when
    /// `f` returns `false` the pass does not run and the call that asked for it
    /// ([`Decoder::push`], [`Decoder::image`], [`Decoder::finish`]) returns
    /// [`Error::Cancelled`].
    ///
    /// A cancelled decoder is not poisoned: it keeps the state of its last complete step,
    /// and the chunk whose step was stopped stays buffered, so a later `push` (of no bytes
    /// or more) runs that step again once `f` lets it; `image` may simply be asked again.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// # let model = ddpmc::model::default_model()?;
    /// # let img = image::DynamicImage::new_rgb8(32, 24);
    /// # let opts = ddpmc::EncodeOptions { quality: 3, ..Default::default() };
    /// # let bytes = ddpmc::encode(&img, &model, &opts)?;
    /// let stop = Arc::new(AtomicBool::new(true)); // e.g. set by a "Cancel" button
    /// let flag = stop.clone();
    /// let mut dec = ddpmc::Decoder::new(&model).with_progress(move |p| {
    ///     eprintln!("network pass {} of {}", p.pass, p.passes_expected);
    ///     !flag.load(Ordering::Relaxed)
    /// });
    /// let err = dec.push(&bytes).unwrap_err();
    /// assert!(matches!(err, ddpmc::Error::Cancelled { .. }));
    /// assert_eq!(dec.steps_done(), 1); // the first step needs no network pass
    /// stop.store(false, Ordering::Relaxed);
    /// assert_eq!(dec.push(&[])?, 3); // resumed: the buffered steps run
    /// # Ok::<(), ddpmc::Error>(())
    /// ```
    pub fn with_progress(mut self, f: impl FnMut(Progress) -> bool + Send + 'm) -> Self {
        self.progress = Some(Mutex::new(Box::new(f)));
        self
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Network passes run so far.
    pub fn network_passes(&self) -> u64 {
        self.passes.load(Ordering::Relaxed)
    }

    /// The network, counting passes against [`Limits::max_passes`] and reporting them to
    /// the progress callback.
    fn net(&self) -> Counted<'_, 'm> {
        let progress = self.progress.as_ref().map(|f| {
            let total = self.steps_to_run();
            let p = Progress {
                pass: 0,
                passes_expected: total as u64,
                steps_done: self.steps_done,
                steps_total: total,
            };
            (f, p)
        });
        Counted {
            inner: self.model,
            used: &self.passes,
            max: self.limits.max_passes,
            progress,
        }
    }

    /// Steps this decoder will run: the file's, or fewer under [`Decoder::set_max_steps`]
    /// (0 before the header).
    fn steps_to_run(&self) -> usize {
        let total = self.steps_total().unwrap_or(0);
        self.max_steps.map_or(total, |m| m.min(total))
    }

    /// Stop after `n` steps: later STEP chunks (and LOSS) are read and checked but not run.
    /// Call before the first push: the header's check against [`Limits::max_steps`] counts
    /// the steps that will be run.
    pub fn set_max_steps(&mut self, n: Option<usize>) {
        self.max_steps = n;
    }

    /// Feed more bytes; returns the number of steps completed so far. On error the decoder
    /// keeps the state of the last complete step.
    pub fn push(&mut self, bytes: &[u8]) -> Result<usize> {
        self.buf.extend_from_slice(bytes);
        if !self.preamble_ok {
            if self.buf.len() < format::PREAMBLE_LEN {
                if !format::SIGNATURE.starts_with(&self.buf[..self.buf.len().min(8)]) {
                    return Err(Error::format("not a ddpmc file (signature mismatch)"));
                }
                return Ok(self.steps_done);
            }
            self.major = format::check_preamble(&self.buf)?;
            self.buf.drain(..format::PREAMBLE_LEN);
            self.consumed += format::PREAMBLE_LEN;
            self.preamble_ok = true;
        }
        let mut pos = 0;
        let result = loop {
            if self.finished {
                break Ok(());
            }
            let (kind, payload, len) = match format::read_chunk(&self.buf[pos..]) {
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
                Ok(Some(c)) => (c.kind, c.payload.to_vec(), c.len),
            };
            if let Err(e) = self.handle(kind, &payload, self.consumed + pos + len) {
                break Err(e);
            }
            pos += len;
        };
        self.buf.drain(..pos);
        self.consumed += pos;
        result.map(|()| self.steps_done)
    }

    fn handle(&mut self, kind: [u8; 4], payload: &[u8], end: usize) -> Result<()> {
        let name = String::from_utf8_lossy(&kind).into_owned();
        if self.header.is_none() && kind != kind::HEAD {
            if format::is_critical(kind) {
                return Err(Error::format(format!(
                    "chunk {name:?} before the header (the first critical chunk must be HEAD)"
                )));
            }
            return Ok(());
        }
        match kind {
            kind::HEAD => {
                if self.header.is_some() {
                    return Err(Error::format("second HEAD chunk"));
                }
                let h = Header::parse(payload)?;
                format::check_steps(self.major, &h)?;
                let (ph, pw) = h.padded();
                let run = self.max_steps.map_or(h.steps(), |m| m.min(h.steps()));
                self.limits.check_header(ph, pw, run)?;
                // A file with no steps is its LOSS chunk alone: no network, no latent (SPEC
                // §4.1), so neither the model id nor the padding is checked.
                if h.steps() > 0 {
                    let id = self.model.id();
                    if h.model_id != id {
                        return Err(Error::ModelMismatch {
                            file: hex(&h.model_id),
                            decoder: hex(&id),
                        });
                    }
                    let m = self.model.multiple().max(1);
                    if ph % m != 0 || pw % m != 0 {
                        return Err(Error::format(format!(
                            "padded size {pw}x{ph} is not a multiple of the model's {m}"
                        )));
                    }
                    self.z = start_latent(h.seed, ph, pw);
                }
                self.g = Some(Geometry {
                    h: h.height as usize,
                    w: h.width as usize,
                    ph,
                    pw,
                });
                self.header = Some(h);
                Ok(())
            }
            kind::STEP => {
                let c = StepChunk::parse(payload)?;
                let (coder, _) = step::checked_coder(self.major, c.coder, &c.body)?;
                let total = self.steps_total().unwrap_or(0);
                if usize::from(c.index) != self.steps_done + self.skipped {
                    return Err(Error::format(format!(
                        "STEP chunk with index {} (expected {})",
                        c.index,
                        self.steps_done + self.skipped
                    )));
                }
                if usize::from(c.index) >= total {
                    return Err(Error::format(format!(
                        "STEP chunk {} beyond the header's {total} steps",
                        c.index
                    )));
                }
                if self.max_steps.is_some_and(|m| self.steps_done >= m) {
                    self.skipped += 1;
                    return Ok(());
                }
                self.run_step(coder, &c.body)?;
                self.step_ends.push(end);
                Ok(())
            }
            kind::LOSS => {
                let total = self.steps_total().unwrap_or(0);
                if self.steps_done + self.skipped != total || self.pixels.is_some() {
                    return Err(Error::format(
                        "LOSS chunk out of place (it must follow the last STEP, once)",
                    ));
                }
                let c = LossChunk::parse(payload, self.major)?;
                if self.steps_done == total {
                    self.run_lossless(&c)?;
                }
                Ok(())
            }
            kind::END => {
                let total = self.steps_total().unwrap_or(0);
                if self.steps_done + self.skipped != total {
                    return Err(Error::format(format!(
                        "END after {} of {total} steps",
                        self.steps_done + self.skipped
                    )));
                }
                if total == 0 && self.pixels.is_none() {
                    return Err(Error::format(
                        "END without a LOSS chunk in a file with no steps (it holds no image)",
                    ));
                }
                self.finished = true;
                Ok(())
            }
            k if format::is_critical(k) => Err(Error::format(format!(
                "unknown critical chunk {name:?} (this decoder knows HEAD, STEP, LOSS, END)"
            ))),
            kind::ICCP => {
                // Kept only where SPEC §4.5 puts it: after HEAD, before any STEP or LOSS.
                if self.steps_done + self.skipped == 0
                    && self.pixels.is_none()
                    && self.icc.is_none()
                {
                    self.icc = Some(payload.to_vec());
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn geometry(&self) -> Result<(&Header, Geometry)> {
        match (&self.header, self.g) {
            (Some(h), Some(g)) => Ok((h, g)),
            _ => Err(Error::format("no header decoded yet")),
        }
    }

    /// The clipped x0 estimate at the current point (cached; the next step reuses it).
    fn current_xhat(&self) -> Result<&[f32]> {
        if let Some(v) = self.xhat.get() {
            return Ok(v);
        }
        let (h, g) = self.geometry()?;
        let p = h.schedule[self.steps_done];
        let v = super::denoise(&self.net(), &self.z, &p, &g)?;
        let _ = self.xhat.set(v);
        Ok(self.xhat.get().map(|v| v.as_slice()).unwrap_or(&[]))
    }

    fn run_step(&mut self, coder: &dyn step::StepCoder, body: &[u8]) -> Result<()> {
        let (h, g) = self.geometry()?;
        let n = self.steps_done;
        let (pt, ps) = (h.schedule[n], h.schedule[n + 1]);
        let levels = step::dither_levels(h.seed, n, &g);
        let co = StepCoeffs::new(pt.abar, ps.abar);
        let xhat = if n > 0 {
            Some(self.current_xhat()?)
        } else {
            None
        };
        let inp = StepInput {
            g,
            seed: h.seed,
            n,
            co,
            z: &self.z,
            xhat,
            levels: &levels,
        };
        let (z, k) = coder.decode(&inp, body)?;
        if let Some(h) = self.symbol_digest.as_mut() {
            for v in &k {
                h.update(v.to_le_bytes());
            }
        }
        self.z = z;
        self.xhat = OnceLock::new();
        self.steps_done += 1;
        Ok(())
    }

    fn run_lossless(&mut self, c: &LossChunk) -> Result<()> {
        let (h, g) = self.geometry()?;
        let recon = if h.steps() == 0 {
            None
        } else {
            Some(super::crop_pred(self.current_xhat()?, &g))
        };
        let pix = lossless::decode(c, recon.as_deref(), g.h, g.w)?;
        self.pixels = Some(pix);
        Ok(())
    }

    /// Keep a SHA-256 of every decoded symbol (for checks of invariant D: a decoder whose
    /// network differs must decode the same symbols). Call before the first push.
    #[doc(hidden)]
    pub fn track_symbols(&mut self) {
        self.symbol_digest = Some(Sha256::new());
    }

    /// The SHA-256 of the symbols decoded so far, if [`Decoder::track_symbols`] was called.
    #[doc(hidden)]
    pub fn symbol_digest(&self) -> Option<[u8; 32]> {
        self.symbol_digest
            .as_ref()
            .map(|h| h.clone().finalize().into())
    }

    /// Steps completed so far.
    pub fn steps_done(&self) -> usize {
        self.steps_done
    }

    /// Steps in the file, once the header is read.
    pub fn steps_total(&self) -> Option<usize> {
        self.header.as_ref().map(Header::steps)
    }

    /// The header, once read.
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// Has the END chunk been read?
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The source image's ICC colour profile, if the file carries one (SPEC §4.5).
    pub fn icc_profile(&self) -> Option<&[u8]> {
        self.icc.as_deref()
    }

    /// Is the image bit-exact (LOSS chunk decoded and verified)?
    pub fn is_lossless(&self) -> bool {
        self.pixels.is_some()
    }

    /// Bytes consumed: the offset just after the last whole chunk read.
    pub fn bytes_consumed(&self) -> usize {
        self.consumed
    }

    /// Byte offset just after each completed step's chunk.
    pub fn step_ends(&self) -> &[usize] {
        &self.step_ends
    }

    /// The image after the last complete step (or the exact image after LOSS).
    pub fn image(&self, recon: Recon) -> Result<image::DynamicImage> {
        let (h, g) = self.geometry()?;
        if let Some(pix) = &self.pixels {
            return Ok(super::to_image(pix, h, &g));
        }
        if h.steps() == 0 {
            return Err(Error::format(
                "no image yet: a file with no steps holds its image in the LOSS chunk alone",
            ));
        }
        let p = h.schedule[self.steps_done];
        let xh = self.current_xhat()?;
        let x0 = super::reconstruct(&self.net(), &self.z, &p, xh, recon, h.seed, &g)?;
        let pix = super::crop_pred(&x0, &g);
        Ok(super::to_image(&pix, h, &g))
    }

    /// Finish: the image after the last complete step, and whether the file was whole.
    pub fn finish(self, recon: Recon) -> Result<super::DecodedFile> {
        if self.steps_done == 0 && self.pixels.is_none() {
            return Err(Error::format(if self.header.is_none() {
                "no header in the data (file empty or truncated)"
            } else if self.steps_total() == Some(0) {
                "no LOSS chunk in the data (a file with no steps holds its image there; file truncated)"
            } else {
                "no complete coding step in the data (file truncated)"
            }));
        }
        let image = self.image(recon)?;
        Ok(super::DecodedFile {
            image,
            steps_decoded: self.steps_done,
            steps_total: self.steps_total().unwrap_or(0),
            truncated: !self.finished,
            lossless: self.pixels.is_some(),
            icc_profile: self.icc,
        })
    }
}
