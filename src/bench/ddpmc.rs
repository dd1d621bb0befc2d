//! Bench stage: ddpmc itself as an [`RdCodec`] — every decoded step of every preset's file.
//!
//! A setting is `q<N>` (quality preset N = 1..6), `q<N>L` (the same with the lossless LOSS
//! chunk) or `bpp<X>` (rate control to X bits per pixel). Each setting encodes one file;
//! every step of it is one rate point, named `<setting>/<step>` (`<setting>/lossless` for the
//! LOSS entry), its size the byte length of the file truncated after that step. `enc_s` is
//! the time to encode the whole file; `dec_s` the time a progressive viewer fed the file chunk
//! by chunk has spent when it shows that step: every chunk up to it and the reconstruction of
//! every step so far (so it grows with the step).

use std::time::Instant;

use image::{DynamicImage, RgbImage};

use super::{Decoded, RdCodec};
use crate::codec::{chunk_ends, encode, Decoder, EncodeOptions, Recon};
use crate::model::Denoiser;
use crate::{Error, Result};

/// One encoder configuration of the bench.
#[derive(Clone, Debug, PartialEq)]
pub enum Setting {
    /// Quality preset 1..=PRESETS, optionally with the lossless stage.
    Quality {
        /// Preset.
        q: u8,
        /// Append the LOSS chunk.
        lossless: bool,
    },
    /// Rate control to this many bits per pixel.
    Bpp(f64),
}

impl Setting {
    /// Parses `q2`, `q5L`, `bpp0.5`.
    pub fn parse(s: &str) -> Result<Setting> {
        let bad = || {
            Error::param(format!(
                "ddpmc bench setting {s:?} (expected q1..q{p}, q1L..q{p}L or bpp<X> with X > 0)",
                p = crate::diffusion::PRESETS
            ))
        };
        if let Some(x) = s.strip_prefix("bpp") {
            let b: f64 = x.parse().map_err(|_| bad())?;
            return if b > 0.0 && b.is_finite() {
                Ok(Setting::Bpp(b))
            } else {
                Err(bad())
            };
        }
        let rest = s.strip_prefix('q').ok_or_else(bad)?;
        let (num, lossless) = match rest.strip_suffix('L') {
            Some(n) => (n, true),
            None => (rest, false),
        };
        let q: u8 = num.parse().map_err(|_| bad())?;
        if !(1..=crate::diffusion::PRESETS).contains(&q) {
            return Err(bad());
        }
        Ok(Setting::Quality { q, lossless })
    }

    /// The name in the `setting` column (before `/<step>`).
    pub fn label(&self) -> String {
        match self {
            Setting::Quality { q, lossless } => {
                format!("q{q}{}", if *lossless { "L" } else { "" })
            }
            Setting::Bpp(b) => format!("bpp{b}"),
        }
    }

    fn options(&self, coders: &[u8]) -> EncodeOptions {
        let base = EncodeOptions {
            coders: coders.to_vec(),
            ..EncodeOptions::default()
        };
        match *self {
            Setting::Quality { q, lossless } => EncodeOptions {
                quality: q,
                lossless,
                ..base
            },
            Setting::Bpp(b) => EncodeOptions {
                bpp: Some(b),
                ..base
            },
        }
    }
}

/// ddpmc with a model and a list of settings.
pub struct DdpmcCodec {
    model: Box<dyn Denoiser>,
    settings: Vec<Setting>,
    recon: Recon,
    coders: Vec<u8>,
}

impl DdpmcCodec {
    /// Codec name in `results.csv`.
    pub const NAME: &'static str = "ddpmc";

    /// ddpmc with `model` over `settings`, reconstructing with `recon`.
    pub fn new(model: Box<dyn Denoiser>, settings: Vec<Setting>, recon: Recon) -> DdpmcCodec {
        DdpmcCodec {
            model,
            settings,
            recon,
            coders: Vec::new(),
        }
    }

    /// Restrict the encoder to these step coder kinds (empty: the encoder's default).
    pub fn with_coders(mut self, coders: Vec<u8>) -> DdpmcCodec {
        self.coders = coders;
        self
    }
}

impl RdCodec for DdpmcCodec {
    fn name(&self) -> &str {
        Self::NAME
    }

    /// "ddpmc 0.1.0, model 1a2b3c4d5e6f" (the first 12 hex digits of the model id).
    fn version(&self) -> Option<String> {
        let id = crate::model::id_hex(&self.model.id());
        Some(format!(
            "ddpmc {}, model {}",
            env!("CARGO_PKG_VERSION"),
            &id[..12.min(id.len())]
        ))
    }

    fn points(&self, img: &RgbImage) -> Result<Vec<Decoded>> {
        let dynimg = DynamicImage::ImageRgb8(img.clone());
        let mut out = Vec::new();
        for s in &self.settings {
            let t = Instant::now();
            let bytes = encode(&dynimg, self.model.as_ref(), &s.options(&self.coders))?;
            let enc_s = t.elapsed().as_secs_f64();
            let mut dec = Decoder::new(self.model.as_ref());
            let mut pos = 0;
            let mut dec_s = 0.0;
            let mut lossless_seen = false;
            let ends = chunk_ends(&bytes);
            for end in ends.into_iter().chain(std::iter::once(bytes.len())) {
                if end < pos {
                    continue;
                }
                let before = dec.steps_done();
                let t = Instant::now();
                dec.push(&bytes[pos..end])?;
                dec_s += t.elapsed().as_secs_f64();
                pos = end;
                let new_step = dec.steps_done() > before;
                let new_loss = dec.is_lossless() && !lossless_seen;
                if !(new_step || new_loss) {
                    continue;
                }
                let t = Instant::now();
                let image = dec.image(self.recon)?.to_rgb8();
                dec_s += t.elapsed().as_secs_f64();
                let shown = dec_s;
                let step = if new_loss {
                    lossless_seen = true;
                    "lossless".to_string()
                } else {
                    dec.steps_done().to_string()
                };
                out.push(Decoded {
                    setting: format!("{}/{step}", s.label()),
                    bytes: dec.bytes_consumed() as u64,
                    image,
                    enc_s,
                    dec_s: shown,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse() {
        assert_eq!(
            Setting::parse("q3").unwrap(),
            Setting::Quality {
                q: 3,
                lossless: false
            }
        );
        assert_eq!(Setting::parse("q5L").unwrap().label(), "q5L");
        assert_eq!(Setting::parse("bpp0.5").unwrap(), Setting::Bpp(0.5));
        for bad in ["q0", "q8", "x3", "bpp-1", "bpp", "q", "qL"] {
            assert!(Setting::parse(bad).is_err(), "{bad}");
        }
    }

    /// The tiny test model on a small image: one point per step, sizes and quality grow,
    /// the lossless entry is exact.
    #[test]
    fn points_of_every_step_with_the_tiny_model() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/format-spec/vectors/tiny.safetensors"
        );
        let model = crate::model::UNet::from_file(path).unwrap();
        let img = RgbImage::from_fn(40, 24, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 9) as u8, ((x + 2 * y) * 3) as u8])
        });
        let codec = DdpmcCodec::new(
            Box::new(model),
            vec![
                Setting::parse("q2").unwrap(),
                Setting::parse("q1L").unwrap(),
            ],
            Recon::Denoise,
        );
        let p = codec.points(&img).unwrap();
        let names: Vec<&str> = p.iter().map(|d| d.setting.as_str()).collect();
        assert_eq!(names, vec!["q2/1", "q2/2", "q1L/1", "q1L/lossless"]);
        assert!(p[0].bytes < p[1].bytes);
        assert!(p[2].bytes < p[3].bytes);
        assert_eq!(p[3].image, img);
        let rows = crate::bench::rows_for(DdpmcCodec::NAME, "x.png", &img, &p).unwrap();
        assert!(rows[0].psnr <= rows[1].psnr);
        assert_eq!(rows[3].psnr, f64::INFINITY);
    }
}
