//! # ddpmc — progressive lossy-to-lossless image coding with a diffusion model
//!
//! A ddpmc file is a sequence of rate-distortion ordered chunks. The first bytes give a coarse
//! picture, each further chunk sharpens it, and an optional last chunk makes it exact.
//!
//! Pipeline (format-spec/SPEC.md has the normative details):
//!
//! 1. [`diffusion`]: the paper's linear noise schedule (f64), the coding step t -> s
//!    (posterior mean, model mean, quantizer width) and the normative dither PRNG.
//! 2. [`model`]: the epsilon-model (a v-prediction U-Net written with candle); it only moves
//!    the model mean, never a probability (invariant D).
//! 3. [`entropy`]: the only module that touches constriction: integer probability tables
//!    indexed by (scale index, dither level, K), side-information models, bit counting.
//! 4. [`format`]: the container: signature, version, chunks with length and CRC-32, header.
//!    The step-coder layer (crate-private `step`) codes one diffusion step: kind 1, UQ in the
//!    pixel domain; kind 2, UQ in a colour + DCT transform domain.
//! 5. [`codec`]: the encoder's chain and the progressive decoder.
//! 6. [`bench`]: rate-distortion measurement against classic codecs.

pub mod bench;
pub mod codec;
pub mod diffusion;
pub mod entropy;
pub mod error;
pub mod format;
pub mod model;
pub(crate) mod step;

pub use error::{Error, Result};
