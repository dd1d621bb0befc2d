//! Caller-set decoder limits (SPEC §9): how much memory and work one file may cost.
//!
//! The format bounds what a file may claim (`format::limits`), but within those bounds the
//! decoder's memory grows with the image area and its work with network passes x image area,
//! neither with the bytes present: a 158-byte file may claim a 4096x4096 image with 32 coding
//! steps. A caller that decodes untrusted files sets a [`Limits`] below the defaults; the
//! decoder checks it as soon as the header is parsed, before any latent is allocated and
//! before any network pass runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::diffusion::RECON_LADDER;
use crate::format;
use crate::model::Denoiser;
use crate::{Error, Result};

/// What one decode may cost, in the manner of `image::Limits`. The defaults admit every file
/// the format allows (SPEC §9) and every reconstruction of it; lower them for untrusted input.
///
/// ```
/// use ddpmc::codec::Limits;
/// let mut l = Limits::default();
/// l.max_pixels = 1 << 20; // at most 1024x1024 (padded)
/// l.max_steps = 4;
/// assert_eq!(Limits::default().max_steps, 32);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest image area in pixels, counted on the padded image (width and height rounded up
    /// to the file's padding multiple, 16 for the default model): the latent, the network's
    /// input and the decoded samples all have this size. Default: 2^24 = 16,777,216
    /// (4096x4096), the format's own bound; a larger value has no effect.
    pub max_pixels: u64,
    /// Most coding steps decoded: a file with more steps is refused unless the decode is
    /// told to stop within this many ([`super::Decoder::set_max_steps`], `--steps`).
    /// Default: 32, the format's own bound.
    pub max_steps: usize,
    /// Most network passes over the whole (padded) image that one [`super::Decoder`] runs in
    /// its lifetime (a pass run in tiles counts once). Decoding k steps and showing the
    /// result with [`super::Recon::Denoise`] takes k passes; `Flow` and `Sample` add up to
    /// 7 per image asked for. Default: 32 x 8 = 256, enough for every step of the largest
    /// file shown with every reconstruction.
    pub max_passes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: format::limits::MAX_PIXELS,
            max_steps: format::limits::MAX_STEPS,
            max_passes: (format::limits::MAX_STEPS * (1 + RECON_LADDER.len())) as u64,
        }
    }
}

impl Limits {
    /// Check a parsed header against the limits, before anything is allocated or run:
    /// `(ph, pw)` the padded size, `steps` the number of steps the decode will run (the
    /// file's, or fewer when the caller stops early).
    pub(crate) fn check_header(&self, ph: usize, pw: usize, steps: usize) -> Result<()> {
        let area = ph as u64 * pw as u64;
        if area > self.max_pixels {
            return Err(Error::Limits(format!(
                "image of {pw}x{ph} pixels (padded) = {area} pixels; the decoder's limit is {} pixels",
                self.max_pixels
            )));
        }
        if steps > self.max_steps {
            return Err(Error::Limits(format!(
                "{steps} coding steps to decode; the decoder's limit is {} steps",
                self.max_steps
            )));
        }
        // Showing k decoded steps takes at least k passes (SPEC §6.4, §11).
        if steps as u64 > self.max_passes {
            return Err(Error::Limits(format!(
                "{steps} coding steps need at least {steps} network passes; the decoder's limit is {} passes",
                self.max_passes
            )));
        }
        Ok(())
    }
}

/// Where a decode stands, given to a [`super::Decoder`]'s progress callback
/// ([`super::Decoder::with_progress`]) before each network pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// The network pass about to run, counted from 1 over the decoder's lifetime.
    pub pass: u64,
    /// Passes needed to decode every step the decoder will run and show the result with
    /// [`super::Recon::Denoise`]: one per step (the first step needs none, the image one).
    /// `Flow` and `Sample` run more, so `pass` may exceed it.
    pub passes_expected: u64,
    /// Steps completed so far.
    pub steps_done: usize,
    /// Steps the decoder will run: the file's, or fewer under
    /// [`super::Decoder::set_max_steps`].
    pub steps_total: usize,
}

/// The progress callback: `false` stops the decode with [`Error::Cancelled`].
pub(crate) type ProgressFn<'m> = Box<dyn FnMut(Progress) -> bool + Send + 'm>;

/// The decoder's network, counting its passes and refusing one beyond `max`; before each
/// pass it reports to the progress callback, which may cancel.
pub(crate) struct Counted<'a, 'm> {
    pub(crate) inner: &'a dyn Denoiser,
    pub(crate) used: &'a AtomicU64,
    pub(crate) max: u64,
    /// The callback and the progress it is told (`pass` filled in per pass).
    pub(crate) progress: Option<(&'a Mutex<ProgressFn<'m>>, Progress)>,
}

impl Denoiser for Counted<'_, '_> {
    fn predict_x0(
        &self,
        z: &[f32],
        h: usize,
        w: usize,
        abar: f64,
        logsnr: f64,
    ) -> Result<Vec<f32>> {
        let done = self.used.load(Ordering::Relaxed);
        if let Some((f, base)) = &self.progress {
            // A callback that panicked once is still called: its state is the caller's.
            let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
            let go = f(Progress {
                pass: done + 1,
                ..*base
            });
            if !go {
                return Err(Error::Cancelled { passes: done });
            }
        }
        let n = self.used.fetch_add(1, Ordering::Relaxed);
        if n >= self.max {
            self.used.fetch_sub(1, Ordering::Relaxed);
            return Err(Error::Limits(format!(
                "network pass {} of this decoder; its limit is {} passes",
                n + 1,
                self.max
            )));
        }
        self.inner.predict_x0(z, h, w, abar, logsnr)
    }
    fn multiple(&self) -> usize {
        self.inner.multiple()
    }
    fn id(&self) -> [u8; 32] {
        self.inner.id()
    }
}
