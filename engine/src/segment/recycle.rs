//! Retired segment files kept for reuse.

use std::path::PathBuf;

use crate::sync::{Mutex, MutexGuard};

/// Retired segment files waiting to be reused, so a busy log does not create and delete a file
/// per segment (inode allocation dominates segment creation on some file systems). Holds at
/// most `limit` files, counting those reserved by segments not yet unmapped.
#[derive(Debug)]
pub(crate) struct RecyclePool {
    files: Mutex<(Vec<PathBuf>, usize)>,
    limit: usize,
}

impl RecyclePool {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            files: Mutex::new((Vec::new(), 0)),
            limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, (Vec<PathBuf>, usize)> {
        self.files.lock()
    }

    /// Claims room for one more file; `false` if the pool is full.
    pub(super) fn reserve(&self) -> bool {
        let mut files = self.lock();
        if files.0.len() + files.1 >= self.limit {
            return false;
        }
        files.1 += 1;
        true
    }

    /// Gives back room claimed by `reserve` for a file that will not come.
    pub(super) fn unreserve(&self) {
        self.lock().1 -= 1;
    }

    /// Adds a reserved file, now unmapped.
    pub(super) fn put(&self, path: PathBuf) {
        let mut files = self.lock();
        files.1 -= 1;
        files.0.push(path);
    }

    pub(super) fn take(&self) -> Option<PathBuf> {
        self.lock().0.pop()
    }

    /// Files in the pool or on their way to it.
    pub(crate) fn len(&self) -> usize {
        let files = self.lock();
        files.0.len() + files.1
    }
}
