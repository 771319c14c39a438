//! Write-once uploads: every object the shipper stores is created exactly once, and an object
//! found already there is taken as shipped only if it holds exactly the bytes meant for it.
//!
//! Small objects go up in one request with `PutMode::Create` (`If-None-Match: *` on S3): the
//! store refuses (412) if the name exists. Large ones go up in parts (`put_multipart`), which
//! `object_store` cannot make conditional, so the shipper asks first (`head`) and uploads only
//! if the name is free. The window between the two is closed for one log by its names: an
//! object name is a segment id (or a range of one), and a log's segment bytes below its synced
//! frontier never change, so a racing second upload of the same name by the same log stores
//! the same bytes. Two *different* logs shipping to one prefix are caught by the manifest,
//! which is always created with `PutMode::Create`: the second shipper's manifest fails with
//! [`Error::Conflict`].

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};

use crate::error::{Error, Result};

/// What became of an upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stored {
    /// This call stored it.
    Uploaded,
    /// It was already there with exactly these bytes (an upload before a crash, or a racing
    /// one of the same bytes).
    Existed,
}

/// Stores `bytes` at `path` unless an object is there: then it must hold the same bytes
/// (checked by length and CRC-32C) or this is a [`Error::Conflict`].
pub(crate) async fn put_once(
    store: &dyn ObjectStore,
    path: &Path,
    bytes: Bytes,
    crc: u32,
    multipart_bytes: u64,
    part_bytes: usize,
) -> Result<Stored> {
    if (bytes.len() as u64) < multipart_bytes {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        return match store
            .put_opts(path, PutPayload::from(bytes.clone()), opts)
            .await
        {
            Ok(_) => Ok(Stored::Uploaded),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => same_bytes(store, path, bytes.len() as u64, crc).await,
            Err(e) => Err(Error::store(path, e)),
        };
    }
    match store.head(path).await {
        Ok(_) => return same_bytes(store, path, bytes.len() as u64, crc).await,
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(Error::store(path, e)),
    }
    let mut upload = store
        .put_multipart(path)
        .await
        .map_err(|e| Error::store(path, e))?;
    let mut sent = Ok(());
    for chunk in bytes.chunks(part_bytes.max(5 << 20)) {
        if let Err(e) = upload
            .put_part(PutPayload::from(bytes.slice_ref(chunk)))
            .await
        {
            sent = Err(e);
            break;
        }
    }
    let done = match sent {
        Ok(()) => upload.complete().await.map(|_| ()),
        Err(e) => Err(e),
    };
    match done {
        Ok(()) => Ok(Stored::Uploaded),
        Err(e) => {
            // Best effort: an upload left incomplete holds space until the bucket's lifecycle
            // rules remove it, but is never visible as an object.
            let _ = upload.abort().await;
            Err(Error::store(path, e))
        }
    }
}

/// Whether the object at `path` holds exactly `len` bytes with CRC-32C `crc`.
pub(crate) async fn same_bytes(
    store: &dyn ObjectStore,
    path: &Path,
    len: u64,
    crc: u32,
) -> Result<Stored> {
    let found = crate::manifest::get_bytes(store, path).await?;
    if found.len() as u64 == len && crc32c::crc32c(&found) == crc {
        Ok(Stored::Existed)
    } else {
        Err(Error::Conflict {
            object: path.to_string(),
            reason: format!(
                "it exists with other bytes ({} bytes, {len} expected): another log was \
                 shipped to this prefix; ship to a new prefix, or remove this one",
                found.len()
            ),
        })
    }
}

/// Runs blocking file work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    path: &std::path::Path,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(Error::io(
            path,
            std::io::Error::other(format!("the file task did not finish: {e}")),
        ))
    })
}

/// Reads bytes `start..end` of `file`.
pub(crate) async fn read_range(file: &std::path::Path, start: u64, end: u64) -> Result<Vec<u8>> {
    let path = file.to_path_buf();
    blocking(file, move || {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let mut buf = vec![0; (end - start) as usize];
        f.read_exact_at(&mut buf, start)
            .map_err(|e| Error::io(&path, e))?;
        Ok(buf)
    })
    .await
}

/// Reads a whole file.
pub(crate) async fn read_file(file: &std::path::Path) -> Result<Vec<u8>> {
    let path = file.to_path_buf();
    blocking(file, move || {
        std::fs::read(&path).map_err(|e| Error::io(&path, e))
    })
    .await
}

/// `bytes` without its trailing zeros (a restore writes zeros there).
pub(crate) fn trim_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    bytes.truncate(end);
    bytes
}
