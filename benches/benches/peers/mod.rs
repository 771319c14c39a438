//! The peers: what a user would pick instead of seglog, as [`KvStore`]s.
//!
//! In-memory maps (papaya, scc, dashmap, crossbeam-skiplist) hold an owned copy of every key and
//! value (`Box<[u8]>` each), so they hold the same data seglog holds; they keep nothing on disk.
//! The hash maps get foldhash, the hasher seglog's index uses, so the comparison is of structures
//! and not of hash functions. Embedded stores (fjall, redb) run without an fsync per write: fjall
//! with its default (writes reach the OS buffers, no sync), redb with `Durability::None` on every
//! write transaction; both get a 4 GiB cache so the loaded data fits. sled (the batch bench only)
//! runs with its periodic fsync and its write-through of full buffers off (see [`Sled`]).
//!
//! Shared by the bench binaries through `mod peers;`, so not every binary uses every item.
#![allow(dead_code)]

use std::ops::Range;

use seglog_benches::store::{KvStore, copy_out};
use seglog_benches::workload::{ValueSize, bench_dir, key, stamp, value_buffer};

type Hasher = foldhash::fast::RandomState;

/// Cache given to the embedded stores.
const CACHE_BYTES: u64 = 4 << 30;

/// `papaya::HashMap`: lock-free reads, epoch-reclaimed.
pub struct Papaya(papaya::HashMap<Box<[u8]>, Box<[u8]>, Hasher>);

impl Papaya {
    pub fn new() -> Self {
        Self(papaya::HashMap::with_hasher(Hasher::default()))
    }
}

impl KvStore for Papaya {
    fn put(&self, _id: u64, key: &[u8], value: &[u8]) {
        self.0.pin().insert(key.into(), value.into());
    }

    fn get(&self, _id: u64, key: &[u8], out: &mut Vec<u8>) -> bool {
        self.0.pin().get(key).map(|v| copy_out(v, out)).is_some()
    }
}

/// `scc::HashMap`: fine-grained bucket locks, sync API.
pub struct Scc(scc::HashMap<Box<[u8]>, Box<[u8]>, Hasher>);

impl Scc {
    pub fn new() -> Self {
        Self(scc::HashMap::with_hasher(Hasher::default()))
    }
}

impl KvStore for Scc {
    fn put(&self, _id: u64, key: &[u8], value: &[u8]) {
        self.0.upsert_sync(key.into(), value.into());
    }

    fn get(&self, _id: u64, key: &[u8], out: &mut Vec<u8>) -> bool {
        self.0.read_sync(key, |_, v| copy_out(v, out)).is_some()
    }
}

/// `dashmap::DashMap`: sharded `RwLock`s around hashbrown tables.
pub struct Dash(dashmap::DashMap<Box<[u8]>, Box<[u8]>, Hasher>);

impl Dash {
    pub fn new() -> Self {
        Self(dashmap::DashMap::with_hasher(Hasher::default()))
    }
}

impl KvStore for Dash {
    fn put(&self, _id: u64, key: &[u8], value: &[u8]) {
        self.0.insert(key.into(), value.into());
    }

    fn get(&self, _id: u64, key: &[u8], out: &mut Vec<u8>) -> bool {
        self.0.get(key).map(|v| copy_out(v.value(), out)).is_some()
    }
}

/// `crossbeam_skiplist::SkipMap`: a lock-free ordered map.
pub struct SkipList(crossbeam_skiplist::SkipMap<Box<[u8]>, Box<[u8]>>);

impl SkipList {
    pub fn new() -> Self {
        Self(crossbeam_skiplist::SkipMap::new())
    }
}

impl KvStore for SkipList {
    fn put(&self, _id: u64, key: &[u8], value: &[u8]) {
        self.0.insert(key.into(), value.into());
    }

    fn get(&self, _id: u64, key: &[u8], out: &mut Vec<u8>) -> bool {
        self.0.get(key).map(|e| copy_out(e.value(), out)).is_some()
    }

    /// `insert` of a present key marks the old node removed, then searches again and links the
    /// new one: a get in between finds neither.
    fn overwrites_atomically(&self) -> bool {
        false
    }
}

/// fjall: an LSM tree with a journal; no sync per write.
pub struct Fjall {
    keyspace: fjall::Keyspace,
    db: fjall::Database,
    _dir: tempfile::TempDir,
}

impl Fjall {
    pub fn new() -> Self {
        let dir = bench_dir("seglog-bench-fjall-");
        let db = fjall::Database::builder(dir.path())
            .cache_size(CACHE_BYTES)
            .open()
            .expect("open fjall");
        let keyspace = db
            .keyspace("bench", fjall::KeyspaceCreateOptions::default)
            .expect("open a fjall keyspace");
        Self {
            keyspace,
            db,
            _dir: dir,
        }
    }
}

impl Fjall {
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// The one keyspace.
    pub fn keyspace(&self) -> &fjall::Keyspace {
        &self.keyspace
    }

    /// A write batch with the database's default durability (`PersistMode::Buffer` at commit:
    /// the journal reaches the OS buffers, no fsync), as a single insert has.
    pub fn batch(&self) -> fjall::OwnedWriteBatch {
        self.db.batch()
    }
}

impl KvStore for Fjall {
    fn put(&self, _id: u64, key: &[u8], value: &[u8]) {
        self.keyspace.insert(key, value).expect("fjall insert");
    }

    fn get(&self, _id: u64, key: &[u8], out: &mut Vec<u8>) -> bool {
        self.keyspace
            .get(key)
            .expect("fjall get")
            .map(|v| copy_out(&v, out))
            .is_some()
    }
}

/// sled: a lock-free B-tree over a log-structured page cache, never waiting for the disk, like
/// every other store here. By default sled fsyncs every 500 ms from a background thread and
/// writes each full 512 KiB I/O buffer through to the device (`sync_file_range` with
/// `WAIT_AFTER`); `flush_every_ms(None)` turns off the first and `temporary(true)` the second
/// (it also deletes the files on drop, which the temporary directory would anyway). Its writes
/// then wait in sled's own I/O buffers until one fills and is written to the OS, so a process
/// crash can lose them, where seglog's and fjall's reach the OS on return: a weaker guarantee,
/// in sled's favour. Gets a 4 GiB cache.
pub struct Sled {
    db: sled::Db,
    _dir: tempfile::TempDir,
}

impl Sled {
    pub fn new() -> Self {
        let dir = bench_dir("seglog-bench-sled-");
        let db = sled::Config::new()
            .path(dir.path())
            .cache_capacity(CACHE_BYTES)
            .flush_every_ms(None)
            .temporary(true)
            .open()
            .expect("open sled");
        Self { db, _dir: dir }
    }

    /// The default tree.
    pub fn tree(&self) -> &sled::Tree {
        &self.db
    }
}

impl KvStore for Sled {
    fn put(&self, _id: u64, key: &[u8], value: &[u8]) {
        self.db.insert(key, value).expect("sled insert");
    }

    fn get(&self, _id: u64, key: &[u8], out: &mut Vec<u8>) -> bool {
        self.db
            .get(key)
            .expect("sled get")
            .map(|v| copy_out(&v, out))
            .is_some()
    }
}

const REDB_TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("bench");

/// redb: a copy-on-write B-tree; one write transaction per put, `Durability::None`.
pub struct Redb {
    db: redb::Database,
    _dir: tempfile::TempDir,
}

impl Redb {
    pub fn new() -> Self {
        let dir = bench_dir("seglog-bench-redb-");
        let db = redb::Database::builder()
            .set_cache_size(CACHE_BYTES as usize)
            .create(dir.path().join("bench.redb"))
            .expect("create redb");
        let mut tx = db.begin_write().expect("redb write transaction");
        tx.set_durability(redb::Durability::None)
            .expect("redb durability");
        tx.open_table(REDB_TABLE).expect("create the redb table");
        tx.commit().expect("redb commit");
        Self { db, _dir: dir }
    }

    fn write(&self, f: impl FnOnce(&mut redb::Table<'_, &[u8], &[u8]>)) {
        let mut tx = self.db.begin_write().expect("redb write transaction");
        tx.set_durability(redb::Durability::None)
            .expect("redb durability");
        {
            let mut table = tx.open_table(REDB_TABLE).expect("open the redb table");
            f(&mut table);
        }
        tx.commit().expect("redb commit");
    }
}

impl Redb {
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }
}

impl KvStore for Redb {
    fn put(&self, _id: u64, key: &[u8], value: &[u8]) {
        self.write(|table| {
            table.insert(key, value).expect("redb insert");
        });
    }

    fn get(&self, _id: u64, key: &[u8], out: &mut Vec<u8>) -> bool {
        use redb::ReadableDatabase as _;
        let tx = self.db.begin_read().expect("redb read transaction");
        let table = tx.open_table(REDB_TABLE).expect("open the redb table");
        table
            .get(key)
            .expect("redb get")
            .map(|v| copy_out(v.value(), out))
            .is_some()
    }

    /// Loads in transactions of 10,000 keys: loading is untimed, and a transaction per key
    /// would make loading a million keys take minutes.
    fn load_range(&self, ids: Range<u64>, size: ValueSize) {
        let mut value = value_buffer(size);
        let mut start = ids.start;
        while start < ids.end {
            let end = (start + 10_000).min(ids.end);
            self.write(|table| {
                for id in start..end {
                    stamp(&mut value, id, 0);
                    table.insert(&key(id)[..], &value[..]).expect("redb insert");
                }
            });
            start = end;
        }
    }
}
