//! The one public error type of the library.

use std::fmt;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in ddpmc. Messages give the offending value and what was
/// allowed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a stream failed (no path known; see [`Error::File`]).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// An operation on a named file or folder failed; the I/O error is kept as the
    /// [`std::error::Error::source`].
    #[error("cannot {op} {}: {source}", shown(path, *op))]
    File {
        /// What was being done.
        op: FileOp,
        /// The file or folder (`-` stands for standard input or output).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A named image file could not be read or written by the image crate; its error is kept
    /// as the source.
    #[error("cannot {op} image {}: {source}", shown(path, *op))]
    ImageFile {
        /// What was being done.
        op: FileOp,
        /// The image file (`-` stands for standard input or output).
        path: PathBuf,
        /// The image crate's error.
        #[source]
        source: image::ImageError,
    },
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
    /// The caller's progress callback asked to stop ([`crate::Decoder::with_progress`]).
    #[error("cancelled by the caller after {passes} network pass(es)")]
    Cancelled {
        /// Network passes the decoder had run when it stopped.
        passes: u64,
    },
}

/// What was being done to a file when an [`Error::File`] or [`Error::ImageFile`] occurred.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileOp {
    /// Opening or reading.
    Read,
    /// Creating a file.
    Create,
    /// Writing a file.
    Write,
    /// Creating a folder.
    CreateDir,
    /// Listing a folder.
    ReadDir,
    /// Creating files in a folder (checked before the work starts).
    WriteInto,
    /// Moving a finished temporary file onto its name.
    Rename,
}

impl fmt::Display for FileOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileOp::Read => "read",
            FileOp::Create => "create",
            FileOp::Write => "write",
            FileOp::CreateDir => "create folder",
            FileOp::ReadDir => "list folder",
            FileOp::WriteInto => "write into",
            FileOp::Rename => "move a temporary file onto",
        })
    }
}

/// A path for messages: `-` is shown as standard input (reading) or standard output.
fn shown(path: &Path, op: FileOp) -> String {
    if path.as_os_str() == "-" {
        if op == FileOp::Read {
            "standard input".to_string()
        } else {
            "standard output".to_string()
        }
    } else {
        path.display().to_string()
    }
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

    /// An [`Error::File`]: `op` on `path` failed with `source`.
    pub fn file(op: FileOp, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::File {
            op,
            path: path.into(),
            source,
        }
    }

    /// An [`Error::ImageFile`]: the image crate failed to `op` the image at `path`.
    pub fn image_file(op: FileOp, path: impl Into<PathBuf>, source: image::ImageError) -> Self {
        Error::ImageFile {
            op,
            path: path.into(),
            source,
        }
    }

    /// The file or folder the error concerns, if it names one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::File { path, .. } | Error::ImageFile { path, .. } => Some(path),
            _ => None,
        }
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

    #[test]
    fn file_errors_name_the_path_and_keep_the_source() {
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = Error::file(FileOp::Read, "/no/such/model.safetensors", missing);
        let text = e.to_string();
        assert!(
            text.starts_with("cannot read /no/such/model.safetensors: "),
            "{text}"
        );
        assert_eq!(e.path(), Some(Path::new("/no/such/model.safetensors")));
        let src = std::error::Error::source(&e).expect("source");
        let io = src.downcast_ref::<std::io::Error>().expect("an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        let stdout = Error::file(FileOp::Write, "-", std::io::Error::other("pipe"));
        assert_eq!(stdout.to_string(), "cannot write standard output: pipe");
        let stdin = Error::file(FileOp::Read, "-", std::io::Error::other("closed"));
        assert_eq!(stdin.to_string(), "cannot read standard input: closed");
        assert_eq!(Error::param("x").path(), None);
    }
}
