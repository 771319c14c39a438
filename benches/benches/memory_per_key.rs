//! Bytes per key: heap (peak and steady) and files, for every subject, with a counting allocator.
//!
//! Not a criterion bench: it loads each subject once, on one thread, and prints two markdown
//! tables (`cargo bench -p seglog-benches --bench memory_per_key`).
//!
//! - **heap peak / key**: the most heap the subject held at once while loading (resizes double
//!   tables and keep the old one until the move is done), divided by the keys.
//! - **heap steady / key**: heap held after loading.
//! - **files / key**: bytes allocated on disk for the subject's files (`st_blocks`; seglog's
//!   segments are allocated whole when created, the seed design's map and the floor are sparse).
//!   Mapped files live in the page cache, not the heap, so they never show in the heap columns.
//!
//! Table 1 is the index question: what it costs to map a 16-byte key to a position. seglog's
//! index keeps no keys (they stay in the log), so its own figure is `Stats::index_bytes / keys`;
//! the maps' figures include their boxed keys. Table 2 is the data question: the same keys with
//! 128-byte values, for every subject of the main comparison.

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

mod harness;
mod peers;

use std::path::Path;

use harness::{Harness, Mode};
use seglog::{Log, Options};
use seglog_benches::alloc::CountingAlloc;
use seglog_benches::floor::Floor;
use seglog_benches::seed_design::SeedStore;
use seglog_benches::store::{KvStore, SeglogStore};
use seglog_benches::workload::{ValueSize, key};

type Hasher = foldhash::fast::RandomState;

/// One measured subject.
struct Row {
    subject: &'static str,
    heap_peak: f64,
    heap_steady: f64,
    files: Option<f64>,
    note: String,
}

fn allocated_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    let path = e.path();
                    if path.is_dir() {
                        allocated_bytes(&path)
                    } else {
                        e.metadata().map_or(0, |m| m.blocks() * 512)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Builds a subject, loads it, and measures it; `inspect` adds files and a note.
fn measure<T>(
    subject: &'static str,
    keys: u64,
    build: impl FnOnce() -> T,
    load: impl Fn(&T, u64),
    inspect: impl FnOnce(&T) -> (Option<u64>, String),
) -> Row {
    let base = ALLOC.current();
    ALLOC.reset_peak();
    let store = build();
    for id in 0..keys {
        load(&store, id);
    }
    let steady = ALLOC.current().saturating_sub(base);
    let peak = ALLOC.peak().saturating_sub(base);
    let (files, note) = inspect(&store);
    drop(store);
    let per_key = |bytes: u64| bytes as f64 / keys as f64;
    Row {
        subject,
        heap_peak: per_key(peak as u64),
        heap_steady: per_key(steady as u64),
        files: files.map(per_key),
        note,
    }
}

fn print_table(title: &str, keys: u64, rows: &[Row]) {
    println!("\n### {title} ({keys} keys)\n");
    println!("| subject | heap peak / key | heap steady / key | files / key | note |");
    println!("| --- | ---: | ---: | ---: | --- |");
    for row in rows {
        let files = row
            .files
            .map_or_else(|| "–".to_string(), |f| format!("{f:.1} B"));
        println!(
            "| {} | {:.1} B | {:.1} B | {} | {} |",
            row.subject, row.heap_peak, row.heap_steady, files, row.note
        );
    }
}

fn seglog_note(log: &Log, keys: u64) -> String {
    let stats = log.stats();
    format!(
        "index_bytes / key = {:.1} B ({} slots, {} resizes); log bytes / key = {:.1} B",
        stats.index_bytes as f64 / keys as f64,
        stats.index_capacity,
        stats.index_resizes,
        stats.bytes as f64 / keys as f64
    )
}

fn index_rows(keys: u64) -> Vec<Row> {
    let put_empty = |log: &Log, id: u64| {
        log.put(&key(id), &[]).expect("seglog put");
    };
    vec![
        measure(
            "seglog (Log::in_memory, empty values)",
            keys,
            || Log::in_memory(Options::default()).expect("in-memory log"),
            put_empty,
            |log| (None, seglog_note(log, keys)),
        ),
        measure(
            "seglog (file-backed Log, empty values)",
            keys,
            SeglogStore::file_backed,
            |s, id| put_empty(s.log(), id),
            |s| (s.dir().map(allocated_bytes), seglog_note(s.log(), keys)),
        ),
        measure(
            "papaya HashMap<Box<[u8]>, u64>",
            keys,
            || papaya::HashMap::<Box<[u8]>, u64, Hasher>::with_hasher(Hasher::default()),
            |m, id| {
                m.pin().insert(key(id).into(), id);
            },
            |_| (None, String::new()),
        ),
        measure(
            "scc HashIndex<Box<[u8]>, u64>",
            keys,
            || scc::HashIndex::<Box<[u8]>, u64, Hasher>::with_hasher(Hasher::default()),
            |m, id| {
                let _ = m.insert_sync(key(id).into(), id);
            },
            |_| (None, String::new()),
        ),
        measure(
            "scc HashMap<Box<[u8]>, u64>",
            keys,
            || scc::HashMap::<Box<[u8]>, u64, Hasher>::with_hasher(Hasher::default()),
            |m, id| {
                m.upsert_sync(key(id).into(), id);
            },
            |_| (None, String::new()),
        ),
        measure(
            "dashmap DashMap<Box<[u8]>, u64>",
            keys,
            || dashmap::DashMap::<Box<[u8]>, u64, Hasher>::with_hasher(Hasher::default()),
            |m, id| {
                m.insert(key(id).into(), id);
            },
            |_| (None, String::new()),
        ),
        measure(
            "crossbeam-skiplist SkipMap<Box<[u8]>, u64>",
            keys,
            crossbeam_skiplist::SkipMap::<Box<[u8]>, u64>::new,
            |m, id| {
                m.insert(key(id).into(), id);
            },
            |_| (None, String::new()),
        ),
    ]
}

const VALUE: ValueSize = ValueSize::B128;

fn load(store: &dyn KvStore, id: u64) {
    let mut value = [7u8; VALUE.bytes()];
    value[..8].copy_from_slice(&id.to_le_bytes());
    store.load(id, &key(id), &value);
}

fn none<T>(_: &T) -> (Option<u64>, String) {
    (None, String::new())
}

fn data_rows(keys: u64) -> Vec<Row> {
    let size = VALUE;
    vec![
        measure(
            "seglog (file-backed)",
            keys,
            SeglogStore::file_backed,
            |s, id| load(s, id),
            |s| (s.dir().map(allocated_bytes), seglog_note(s.log(), keys)),
        ),
        measure(
            "seglog (in memory)",
            keys,
            SeglogStore::in_memory,
            |s, id| load(s, id),
            |s| (None, seglog_note(s.log(), keys)),
        ),
        measure(
            "seed design",
            keys,
            || SeedStore::new(keys as usize).expect("seed design"),
            |s, id| load(s, id),
            |s| {
                (
                    Some(allocated_bytes(s.dir())),
                    "a 3136-byte block per key, content in a Vec".into(),
                )
            },
        ),
        measure(
            "papaya",
            keys,
            peers::Papaya::new,
            |s, id| load(s, id),
            none,
        ),
        measure(
            "scc HashMap",
            keys,
            peers::Scc::new,
            |s, id| load(s, id),
            none,
        ),
        measure("dashmap", keys, peers::Dash::new, |s, id| load(s, id), none),
        measure(
            "crossbeam-skiplist",
            keys,
            peers::SkipList::new,
            |s, id| load(s, id),
            none,
        ),
        measure(
            "fjall",
            keys,
            peers::Fjall::new,
            |s, id| load(s, id),
            |s| {
                (
                    Some(allocated_bytes(s.dir())),
                    "heap includes memtables and block cache in use".into(),
                )
            },
        ),
        measure(
            "redb",
            keys,
            peers::Redb::new,
            |s, id| load(s, id),
            |s| {
                (
                    Some(allocated_bytes(s.dir())),
                    "one write transaction per key".into(),
                )
            },
        ),
        measure(
            "floor",
            keys,
            || Floor::new(size, keys).expect("floor"),
            |s, id| load(s, id),
            |s| {
                (
                    Some(allocated_bytes(s.dir())),
                    "records only, no index".into(),
                )
            },
        ),
    ]
}

fn main() {
    let harness = Harness::from_args();
    if harness.mode == Mode::List {
        return;
    }
    let keys = harness.keys();
    println!("## Bytes per key");
    print_table("Key → position (16-byte keys)", keys, &index_rows(keys));
    print_table("Key → 128-byte value", keys, &data_rows(keys));
}
