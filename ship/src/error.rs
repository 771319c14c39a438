//! What can go wrong shipping, restoring or following a log.

use std::io;
use std::path::PathBuf;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error shipping a log to object storage, restoring it or following it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object store failed a request (after its own retries, for errors it retries: 5xx,
    /// timeouts, refused connections).
    #[error("object store request on {object} failed: {source}")]
    Store {
        /// The object (or prefix) the request was for.
        object: String,
        /// What the store said.
        #[source]
        source: object_store::Error,
    },
    /// The log itself failed (opening it, listing its files, syncing).
    #[error(transparent)]
    Log(#[from] seglog::Error),
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// An object the shipper writes exactly once already exists with other bytes, or another
    /// shipper published a manifest under the same prefix: two logs (or two shippers of one
    /// log) are shipping to one prefix. Nothing was published that names the object.
    #[error("{object}: {reason}")]
    Conflict {
        /// The object.
        object: String,
        /// Why it conflicts, and what to do.
        reason: String,
    },
    /// A remote object is damaged: a manifest that does not parse or is inconsistent, or an
    /// object whose length or checksum differs from what its manifest says.
    #[error("{object} is damaged: {reason}")]
    Corrupt {
        /// The object.
        object: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No manifest exists under the prefix: nothing was ever shipped there.
    #[error("no seglog manifest under {prefix}: nothing has been shipped there")]
    NoManifest {
        /// The prefix looked in.
        prefix: String,
    },
    /// The remote copy does not belong to this log (or this log went back in time): its
    /// manifest names a frontier or a segment size this log does not have.
    #[error("the remote copy does not match this log: {reason}")]
    Mismatch {
        /// What differs.
        reason: String,
    },
    /// A URL that names no object store this build supports.
    #[error("bad object store URL {url}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// Why it is not accepted, and what is.
        reason: String,
    },
}

impl Error {
    pub(crate) fn store(object: impl ToString, source: object_store::Error) -> Self {
        Self::Store {
            object: object.to_string(),
            source,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(object: impl ToString, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            object: object.to_string(),
            reason: reason.into(),
        }
    }

    /// Whether a later attempt may succeed without anyone changing anything: the store was
    /// unreachable or failed, or a file it read from disappeared under a race. A conflict, a
    /// mismatch, damage or a failed log is not: retrying would fail the same way.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Store { source, .. } => !matches!(
                source,
                object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. }
                    | object_store::Error::NotSupported { .. }
                    | object_store::Error::NotImplemented
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
                    | object_store::Error::UnknownConfigurationKey { .. }
            ),
            Self::Io { .. } => true,
            _ => false,
        }
    }

    /// Whether this is a store's "not found" for an object (one a newer manifest no longer
    /// needed, collected while it was read).
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::Store {
                source: object_store::Error::NotFound { .. },
                ..
            }
        )
    }
}
