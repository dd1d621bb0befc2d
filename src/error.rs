//! The one public error type of the library.

use std::fmt;

/// Everything that can go wrong in ddpmc. Messages give the offending value and what was
/// allowed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file or stream failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The input is not a valid ddpmc file (bad signature, CRC mismatch, malformed chunk ...).
    #[error("invalid ddpmc data: {0}")]
    Format(String),
    /// A parameter given by the caller is out of range.
    #[error("invalid parameter: {0}")]
    Parameter(String),
    /// The input asks for more than the decoder allows (image size, step count ...).
    #[error("limit exceeded: {0}")]
    Limits(String),
    /// The file was coded with another model than the one given for decoding.
    #[error(
        "model mismatch: the file was coded with model {file}, but the decoder has model {decoder}"
    )]
    ModelMismatch {
        /// Hex id of the model named in the file.
        file: String,
        /// Hex id of the model at hand.
        decoder: String,
    },
    /// The network failed to load or run.
    #[error("model error: {0}")]
    Model(String),
    /// Reading or writing an image failed.
    #[error("image error: {0}")]
    Image(String),
    /// The image crate failed; the error is kept as the [`std::error::Error::source`].
    #[error("image error: {0}")]
    ImageCodec(#[source] image::ImageError),
    /// The network's backend (candle) failed; the error is kept as the source.
    #[error("model error: {0}")]
    Backend(#[source] candle_core::Error),
}

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn format(msg: impl fmt::Display) -> Self {
        Error::Format(msg.to_string())
    }
    pub(crate) fn param(msg: impl fmt::Display) -> Self {
        Error::Parameter(msg.to_string())
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Backend(e)
    }
}

impl From<image::ImageError> for Error {
    fn from(e: image::ImageError) -> Self {
        Error::ImageCodec(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_errors_keep_their_source() {
        let bad = image::load_from_memory(b"\x89PNG\r\n\x1a\nnot really").unwrap_err();
        let e = Error::from(bad);
        assert!(e.to_string().starts_with("image error: "), "{e}");
        assert!(std::error::Error::source(&e).is_some());
        let io = Error::from(std::io::Error::other("disk"));
        assert!(std::error::Error::source(&io).is_some());
    }
}
