//! The library's error type. Every message names the file (or flag) at fault and, where there is
//! one, the fix; the binary adds context with `anyhow` and exits non-zero.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or read. (The I/O error is part of the message, not a
    /// separate `source`, so a report prints it once.)
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
    /// The file was read but its contents are not what a Qwen2 checkpoint must hold.
    #[error("{}: {msg}", path.display())]
    Invalid { path: PathBuf, msg: String },
    /// A request that cannot be honoured (a prompt longer than the context, say).
    #[error("{0}")]
    Usage(String),
    /// A CUDA driver call failed.
    #[error("CUDA: {0}")]
    Cuda(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io { path: path.to_path_buf(), err: source }
    }
    pub fn invalid(path: &Path, msg: impl Into<String>) -> Self {
        Error::Invalid { path: path.to_path_buf(), msg: msg.into() }
    }
}
