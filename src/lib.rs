//! # ddpmc — progressive lossy-to-lossless image coding with a diffusion model
//!
//! A ddpmc file is a sequence of rate-distortion ordered chunks. The first bytes give a coarse
//! picture, each further chunk sharpens it, and an optional last chunk makes it exact. The
//! probability model is a denoising diffusion model; the default one and every earlier default
//! since b48 are built into the library ([`model::default_model`], [`model::BUILTIN_MODELS`]).
//!
//! ## Tutorial
//!
//! ### Encode and decode
//!
//! [`encode`] codes an image at a quality preset (1..=7: the number of coding steps,
//! [`EncodeOptions::quality`]) or at a target rate ([`EncodeOptions::bpp`]); [`decode`] gives
//! it back. Both take the network as a [`model::Denoiser`]; load it once and reuse it.
//!
//! ```
//! use ddpmc::{decode, encode, EncodeOptions, Recon};
//!
//! let model = ddpmc::model::default_model()?;
//! let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(32, 24, |x, y| {
//!     image::Rgb([(8 * x) as u8, (10 * y) as u8, 128])
//! }));
//! let opts = EncodeOptions { quality: 2, ..Default::default() };
//! let bytes = encode(&img, &model, &opts)?;
//!
//! let out = decode(&bytes, &model, None, Recon::Denoise)?;
//! assert_eq!((out.image.width(), out.image.height()), (32, 24));
//! assert_eq!((out.steps_decoded, out.steps_total), (2, 2));
//! assert!(!out.truncated && !out.lossless);
//!
//! // With `lossless`, a last chunk makes the decoded image bit-exact.
//! let exact = EncodeOptions { quality: 1, lossless: true, ..Default::default() };
//! let back = decode(&encode(&img, &model, &exact)?, &model, None, Recon::Denoise)?;
//! assert!(back.lossless);
//! assert_eq!(back.image.to_rgb8(), img.to_rgb8());
//! # Ok::<(), ddpmc::Error>(())
//! ```
//!
//! ### Decode progressively
//!
//! A [`Decoder`] takes the bytes as they arrive: every complete step's chunk advances it, and
//! [`Decoder::image`] shows the picture so far. Any prefix of a file decodes.
//!
//! ```
//! # use ddpmc::{encode, EncodeOptions, Recon};
//! # let model = ddpmc::model::default_model()?;
//! # let img = image::DynamicImage::new_rgb8(32, 24);
//! # let bytes = encode(&img, &model, &EncodeOptions { quality: 2, ..Default::default() })?;
//! let mut dec = ddpmc::Decoder::new(&model);
//! let half = bytes.len() / 2;
//! let steps = dec.push(&bytes[..half])?; // e.g. what the network has delivered so far
//! if steps > 0 {
//!     let preview = dec.image(Recon::Denoise)?;
//!     assert_eq!(preview.width(), 32);
//! }
//! dec.push(&bytes[half..])?;
//! assert!(dec.is_finished());
//! let out = dec.finish(Recon::Denoise)?;
//! assert_eq!(out.steps_decoded, 2);
//! # Ok::<(), ddpmc::Error>(())
//! ```
//!
//! The network runs inside `push`: [`Decoder::with_progress`] sets a callback told of each
//! network pass, which may cancel ([`Error::Cancelled`]); [`Decoder::with_limits`] caps what
//! an untrusted file may cost ([`Limits`]).
//!
//! ### Inspect a file
//!
//! [`inspect`] reads the header and the chunk table without running the network.
//!
//! ```
//! # let model = ddpmc::model::default_model()?;
//! # let img = image::DynamicImage::new_rgb8(32, 24);
//! # let bytes = ddpmc::encode(&img, &model, &ddpmc::EncodeOptions { quality: 2, ..Default::default() })?;
//! let info = ddpmc::inspect(&bytes)?;
//! assert_eq!((info.header.width, info.header.height), (32, 24));
//! assert_eq!(info.header.steps(), 2);
//! assert!(info.complete);
//! for (chunk_bytes, prefix_len) in info.step_bytes() {
//!     println!("{chunk_bytes} bytes; the first {prefix_len} bytes decode to this step");
//! }
//! # Ok::<(), ddpmc::Error>(())
//! ```
//!
//! ### Through the image crate
//!
//! After [`register_image_hooks`], `image::open` reads .ddpmc files (with the built-in model each
//! file names),
//! by extension or by content.
//!
//! ```
//! # let model = ddpmc::model::default_model()?;
//! # let img = image::DynamicImage::new_rgb8(32, 24);
//! # let bytes = ddpmc::encode(&img, &model, &ddpmc::EncodeOptions { quality: 1, ..Default::default() })?;
//! let path = std::env::temp_dir().join(format!("ddpmc-doc-{}.ddpmc", std::process::id()));
//! std::fs::write(&path, &bytes)?;
//! ddpmc::register_image_hooks();
//! let opened = image::open(&path)?;
//! # std::fs::remove_file(&path)?;
//! assert_eq!((opened.width(), opened.height()), (32, 24));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ### Errors
//!
//! Every function returns [`Error`]; errors that concern a file name it
//! ([`Error::File`], [`Error::path`]) and keep their cause as [`std::error::Error::source`].
//!
//! ```
//! let err = ddpmc::model::UNet::from_file("no/such/model.safetensors").unwrap_err();
//! assert!(err.to_string().contains("no/such/model.safetensors"));
//! assert!(std::error::Error::source(&err).is_some());
//! ```
//!
//! ## Modules
//!
//! Pipeline (format-spec/SPEC.md has the normative details):
//!
//! 1. [`diffusion`]: the paper's linear noise schedule (f64), the coding step t -> s
//!    (posterior mean, model mean, quantizer width) and the normative dither PRNG.
//! 2. [`model`]: the epsilon-model (a v-prediction U-Net written with candle); it only moves
//!    the model mean, never a probability (invariant D).
//! 3. The entropy coder (the only user of constriction): integer probability tables indexed
//!    by (scale index, dither level, K), side-information models, bit counting.
//! 4. [`format`](mod@format): the container: signature, version, chunks with length and CRC-32, header.
//!    The step-coder layer (crate-private) codes one diffusion step: kind 1, UQ in the pixel
//!    domain; kind 2, UQ in a colour + DCT transform domain; kind 3, the Gaussian step by
//!    reverse-channel coding.
//! 5. [`codec`]: the encoder's chain, the progressive decoder, and the lossless end (a
//!    network-free predictive coder, with the chain's reconstruction as an extra input).
//! 6. [`image_support`]: the image crate's decoder and format hooks.
//! 7. `bench` (cargo feature `bench`, on by default): rate-distortion and lossless measurement
//!    against classic codecs, for the `ddpmc bench` command.
//!
//! Cargo features: `cli` (default; the `ddpmc` command, implies `bench`) and `bench`. A
//! library user who only codes images sets `default-features = false` and compiles neither
//! clap, indicatif, plotters nor the plots' font; the image crate integration needs no
//! feature.

#[cfg(feature = "bench")]
pub mod bench;
pub mod codec;
pub mod diffusion;
// The entropy coder: public only for `benches/codec.rs`, not part of the API.
#[doc(hidden)]
pub mod entropy;
mod error;
pub mod format;
pub mod image_support;
pub mod model;
pub(crate) mod step;

pub use codec::{
    decode, decode_with_limits, encode, encode_with_report, inspect, DecodedFile, Decoder,
    EncodeOptions, EncodeReport, FileInfo, Limits, Progress, Recon, StepImage,
};
pub use error::{Error, FileOp, Result};
pub use image_support::{register_image_hooks, DdpmcDecoder};
