//! Index: the lock-free hash index under racing puts, removes, gets and resizes.
//!
//! Every model runs `seglog::Log` (the append log and the index together) with a 4-slot index
//! and one heap segment (see `small_log`); the key-to-slot layout is fixed by the index seed.
//! Keys are one byte. The single-key models use 8-byte values that differ in every byte, so a
//! value read whole is told apart from any mix of two (and loom's per-word cell tracking fails
//! any read of record bytes not ordered after their write). Proves, in every interleaving:
//! - two puts of one key: afterwards `get` returns the value of the put with the higher version
//!   (a slower put never overwrites a newer one), and the live counts are exact;
//! - a put against a remove of one key (present before, or absent): the final state is the one
//!   the versions imply (the put wins exactly when its version is above the last tombstone's),
//!   a tombstone that lost to the put was dead on arrival and the remove retried, a put that
//!   lost to a tombstone appended its value again past it, and `existed` says what the remove
//!   replaced; two removes of a present key: exactly one finds it;
//! - a put against a get: the get returns the old record or the new one, whole, with its
//!   version, never anything else;
//! - resizes (4 slots at load factor 0.75: the fourth claim starts one into 8 slots, migrated
//!   in two chunks of two slots by the writes that follow): an update racing the resize that an
//!   insert starts while another insert lands in the migrating table; two inserts racing for the
//!   last slot (one starts the resize, the other goes to the successor); at load factor 0.7, an
//!   insert racing the seal of the vacant slot it wants. Exactly one resize, no key lost, every
//!   key maps to its latest value, `len()` exact, a thread's put is visible to its next get, and
//!   once the migration is done one 8-slot table is left;
//! - a pinned reader during a whole resize (start, both chunks migrated, root moved, old table
//!   retired) finds every key that existed before with its value, and of the keys put meanwhile
//!   (read in the reverse of their order) a key only if it finds the ones put before it.
//! - the old table is not freed under a reader pinned on it, and is freed once it unpins
//!   (counted with the engine's loom-only `Log::__live_index_tables`).
//!
//! The twins switch on `Broken::BlindIndexStore` (the install overwrites the slot without the
//! CAS): a put or remove with a lower version then overwrites a newer entry, or an update lands
//! in a slot that migration froze and copied already. The put-against-get, absent-key, racing
//! inserts, sealed slot and reader-during-resize models have no twin: a blind store only
//! differs from the CAS when two writers of one key meet at its slot, which those scenarios do
//! not have. `docs/loom.md` lists the engine mutations each of them was seen to catch.
#![cfg(seglog_loom)]

use loom::sync::Arc;
use seglog::__broken::Broken;
use seglog::{Log, Options, RecordKind};
use seglog_loom_models::{KV_RECORD, Team, record_bytes, small_log, twin};

const KEY: &[u8] = b"k";
const OLD: &[u8] = b"old:0123";
const MINE: &[u8] = b"MINE4567";
const THEIRS: &[u8] = b"their89A";
/// A tombstone of a 1-byte key: 48 bytes.
const TOMBSTONE: u64 = record_bytes(1, 0);

/// With this seed the 4-slot table holds `c` in slot 0, `a` in 1, `d` in 2 (its home 1 is taken)
/// and `b` in 3; chunk 0 of the migration is slots 0–1, chunk 1 slots 2–3. In the 8-slot table
/// `c`, `a`, `d`, `b`, `e` go home to 0, 2, 3, 6, 7, and `f` (home 0) probes on to 1. (Home
/// slots are by multiply-shift, so a key's home in the 8-slot table is `2h` or `2h + 1` for its
/// home `h` in the 4-slot one.)
const RESIZE_SEED: u64 = 33758;

/// The value of key `[key]` in its `generation`-th version, readable in messages (`a:1-0123`).
fn value(key: u8, generation: u8) -> Vec<u8> {
    let mut value = *b"k:g-0123";
    value[0] = key;
    value[2] = b'0' + generation;
    value.to_vec()
}

/// The records of the log in position order: kind, key, version.
fn records(log: &Log) -> Vec<(RecordKind, Vec<u8>, u64)> {
    let guard = seglog::pin();
    let mut scan = log.append_log().scan(&guard);
    let records = scan
        .by_ref()
        .map(|r| (r.kind, r.key.to_vec(), r.version))
        .collect();
    assert!(
        scan.error().is_none(),
        "the scan failed: {:?}",
        scan.error()
    );
    records
}

/// Versions of the tombstones of `key`, in log order.
fn tombstones(log: &Log, key: &[u8]) -> Vec<u64> {
    records(log)
        .into_iter()
        .filter(|(kind, k, _)| *kind == RecordKind::Tombstone && k == key)
        .map(|(_, _, version)| version)
        .collect()
}

fn two_puts_of_one_key() {
    seglog_loom_models::model(|| {
        // Three 56-byte records fit the 192 bytes of a 256-byte segment.
        let log = Arc::new(small_log(256, 0));
        let first = log.put(KEY, OLD).unwrap();

        let mut team = Team::new();
        {
            let log = Arc::clone(&log);
            team.spawn(move || log.put(KEY, THEIRS).unwrap());
        }
        let (mine, theirs) = team.run(|| log.put(KEY, MINE).unwrap());
        let theirs = theirs[0];
        assert!(
            first < mine && first < theirs && mine != theirs,
            "versions are unique and grow in log order: {first}, {mine}, {theirs}"
        );

        let (winner, higher, lower) = if mine > theirs {
            (MINE, mine, theirs)
        } else {
            (THEIRS, theirs, mine)
        };
        let got = log.get(KEY);
        assert!(
            got.as_deref() == Some(winner),
            "the put with the higher version wins: version {higher} put {:?}, version {lower} \
             the other, get returns {:?}",
            String::from_utf8_lossy(winner),
            got.as_deref().map(String::from_utf8_lossy)
        );
        assert_eq!(log.len(), 1);
        let stats = log.stats();
        assert_eq!(stats.keys, 1);
        assert_eq!(stats.live_bytes, KV_RECORD, "one current record");
        team.dismiss();
    });
}

#[test]
fn two_puts_of_one_key_higher_version_wins() {
    two_puts_of_one_key();
}

/// A blind store lets the put that compared first (and has the lower version) overwrite the
/// other's newer entry.
#[test]
fn twin_blind_store_lets_two_puts_lose_the_newer() {
    twin(
        "twin_blind_store_lets_two_puts_lose_the_newer",
        Broken::BlindIndexStore,
        "the put with the higher version wins",
        two_puts_of_one_key,
    );
}

/// A put and a remove of one key; the key holds `OLD` first if `present`.
fn put_against_remove(present: bool) {
    seglog_loom_models::model(move || {
        // At most four records: `OLD`, the racing put, and two tombstones or a tombstone and the
        // put again (216 bytes).
        let log = Arc::new(small_log(512, 0));
        let first = present.then(|| log.put(KEY, OLD).unwrap());

        let mut team = Team::new();
        {
            let log = Arc::clone(&log);
            team.spawn(move || log.remove(KEY).unwrap());
        }
        let (put, existed) = team.run(|| log.put(KEY, MINE).unwrap());
        let existed = existed[0];
        assert!(first < Some(put));

        let tombstones = tombstones(&log, KEY);
        // A put beaten by a tombstone (whose remove never saw the put) appends its value again
        // and installs that: it takes effect after the remove. It returns its last version.
        let puts: Vec<u64> = records(&log)
            .into_iter()
            .filter(|(kind, _, version)| *kind == RecordKind::Put && Some(*version) != first)
            .map(|(_, _, version)| version)
            .collect();
        match puts[..] {
            [only] => assert_eq!(only, put, "a put returns the version of its record"),
            [beaten, again] => assert!(
                again == put && tombstones.iter().any(|&t| beaten < t && t < again),
                "a put appends again only past a newer tombstone: puts {puts:?}, tombstones \
                 {tombstones:?}, returned {put}"
            ),
            _ => panic!("a put appends once, or twice if a tombstone beat it: {puts:?}"),
        }
        let got = log.get(KEY);
        if present {
            // Only the remove writes tombstones, so whenever the remove read the key or installed
            // its tombstone, the key had a value (OLD or the put's).
            assert!(existed, "removing a key that had a value returns true");
            match tombstones[..] {
                [_] => {}
                // The first tombstone lost to the put (dead on arrival); the remove saw the put's
                // value and removed it.
                [dead, last] => assert!(
                    dead < put && put < last,
                    "a remove retries only after a newer put: tombstones {dead}, {last}, put {put}"
                ),
                _ => panic!("a remove writes one tombstone, or two if a put beat the first"),
            }
        } else {
            // The remove either read the key absent (and wrote nothing) or read the put's value.
            match tombstones[..] {
                [] => assert!(!existed, "a remove that wrote nothing found nothing"),
                [last] => assert!(
                    existed && last > put,
                    "a remove that found the put's value removes it: existed {existed}, \
                     tombstone {last}, put {put}"
                ),
                _ => panic!("a remove writes one tombstone if the key has a value"),
            }
        }

        let last = tombstones.last().copied();
        let put_wins = last.is_none_or(|last| put > last);
        assert!(
            got.as_deref() == put_wins.then_some(MINE),
            "the record with the higher version decides: put {put}, tombstones {tombstones:?}, \
             get returns {:?}",
            got.as_deref().map(String::from_utf8_lossy)
        );
        assert_eq!(
            log.len(),
            usize::from(put_wins),
            "len counts the key if it is live"
        );
        let stats = log.stats();
        assert_eq!(stats.keys, u64::from(put_wins));
        // Live bytes count live data: the put's record, or nothing once a tombstone wins.
        let live = if put_wins { KV_RECORD } else { 0 };
        assert_eq!(stats.live_bytes, live, "the live put's record, if any");
        team.dismiss();
    });
}

#[test]
fn put_against_remove_of_a_present_key() {
    put_against_remove(true);
}

#[test]
fn put_against_remove_of_an_absent_key() {
    put_against_remove(false);
}

/// A blind store lets the put overwrite a newer tombstone (or the tombstone a newer put).
#[test]
fn twin_blind_store_lets_put_and_remove_lose_the_newer() {
    twin(
        "twin_blind_store_lets_put_and_remove_lose_the_newer",
        Broken::BlindIndexStore,
        "the record with the higher version decides",
        || put_against_remove(true),
    );
}

/// Two removes of a present key: exactly one finds the value. A remove whose tombstone lost to
/// the other's newer one starts over, reads the key absent and returns false; without that
/// retry both would return true. (Against a put the retry is not observable: a remove whose
/// tombstone lost to a newer put linearizes before the put either way.)
fn two_removes_of_one_key() {
    seglog_loom_models::model(|| {
        // A put and two tombstones: 152 of 192 bytes.
        let log = Arc::new(small_log(256, 0));
        log.put(KEY, OLD).unwrap();

        let mut team = Team::new();
        {
            let log = Arc::clone(&log);
            team.spawn(move || log.remove(KEY).unwrap());
        }
        let (mine, theirs) = team.run(|| log.remove(KEY).unwrap());
        let theirs = theirs[0];
        let tombstones = tombstones(&log, KEY);
        assert!(
            mine != theirs,
            "exactly one of two removes of a present key returns true: {mine}, {theirs}, \
             tombstones {tombstones:?}"
        );
        assert!((1..=2).contains(&tombstones.len()), "{tombstones:?}");
        assert_eq!(log.get(KEY), None);
        assert_eq!(log.len(), 0);
        let stats = log.stats();
        assert_eq!(
            (stats.keys, stats.live_bytes, stats.dead_bytes),
            (0, 0, stats.bytes),
            "no live data; the tombstones are dead bytes"
        );
        assert!(stats.bytes >= KV_RECORD + TOMBSTONE);
        team.dismiss();
    });
}

#[test]
fn two_removes_of_one_key_one_existed() {
    two_removes_of_one_key();
}

/// A blind store lets the older tombstone overwrite the newer one, and both removes report
/// that they replaced the value.
#[test]
fn twin_blind_store_lets_both_removes_find_the_value() {
    twin(
        "twin_blind_store_lets_both_removes_find_the_value",
        Broken::BlindIndexStore,
        "exactly one of two removes of a present key returns true",
        two_removes_of_one_key,
    );
}

#[test]
fn put_against_get_returns_a_whole_value() {
    seglog_loom_models::model(|| {
        let log = Arc::new(small_log(256, 0));
        let old = log.put(KEY, OLD).unwrap();

        let mut team = Team::new();
        {
            let log = Arc::clone(&log);
            team.spawn(move || {
                let pinned = log.pin();
                pinned
                    .get_record(KEY)
                    .map(|record| (record.version, record.value.to_vec()))
            });
        }
        let (new, seen) = team.run(|| log.put(KEY, MINE).unwrap());
        let seen = &seen[0];
        assert!(
            *seen == Some((old, OLD.to_vec())) || *seen == Some((new, MINE.to_vec())),
            "a concurrent get returns the old record or the new one, whole: {:?}",
            seen.as_ref()
                .map(|(version, value)| (version, String::from_utf8_lossy(value)))
        );
        assert_eq!(log.get(KEY).as_deref(), Some(MINE));
        team.dismiss();
    });
}

/// Bytes of the index of a fresh log whose index starts with 8 slots: what the models' index
/// holds once a resize from 4 slots has finished and the old table is unlinked.
fn one_table_of_8_slots() -> u64 {
    let log = Log::in_memory(
        Options::default()
            .segment_bytes(256)
            .index_capacity(8)
            .index_seed(0)
            .max_segments(1),
    )
    .unwrap();
    let stats = log.stats();
    assert_eq!(stats.index_capacity, 8);
    stats.index_bytes
}

/// Puts `keys` with generation-0 values into the fresh 4-slot table, none starting a resize.
fn put_keys(log: &Log, keys: &[u8]) {
    for &key in keys {
        log.put(&[key], &value(key, 0)).unwrap();
    }
    let stats = log.stats();
    assert_eq!((stats.index_capacity, stats.index_resizes), (4, 0));
}

/// Every key maps to its latest value, and `len` counts exactly these keys.
fn assert_latest(log: &Log, latest: &[(u8, u8)], when: &str) {
    for &(key, generation) in latest {
        let got = log.get(&[key]);
        assert!(
            got == Some(value(key, generation)),
            "{when}: key {:?} maps to its latest value {:?}, get returns {:?}",
            key as char,
            String::from_utf8_lossy(&value(key, generation)),
            got.as_deref().map(String::from_utf8_lossy)
        );
    }
    assert_eq!(log.len(), latest.len(), "{when}: len counts every key once");
}

/// Checks that exactly one resize happened, and finishes its migration if the window left a
/// chunk unclaimed (each write helps one chunk): afterwards one table of 8 slots is left.
fn finish_the_resize(log: &Log, eight_slots: u64, latest: &[(u8, u8)]) {
    let stats = log.stats();
    assert_eq!(
        stats.index_resizes, 1,
        "one claim too many starts exactly one resize"
    );
    assert_eq!(stats.index_capacity, 8);
    assert_latest(log, latest, "while the resize may be unfinished");
    // Rewrites the last key's latest value: a write that changes nothing but helps.
    let &(key, generation) = latest.last().expect("keys");
    for _ in 0..2 {
        if log.stats().index_bytes != eight_slots {
            log.put(&[key], &value(key, generation)).unwrap();
        }
    }
    let stats = log.stats();
    assert_eq!(
        stats.index_bytes, eight_slots,
        "once both chunks are migrated, one table of 8 slots is left"
    );
    assert_eq!(stats.index_resizes, 1);
    assert_latest(log, latest, "after the resize");
}

fn update_racing_a_resize() {
    seglog_loom_models::model(|| {
        // At most seven 56-byte records: 392 of the 448 bytes.
        let log = Arc::new(small_log(512, RESIZE_SEED));
        let eight_slots = one_table_of_8_slots();
        put_keys(&log, b"abc");

        let mut team = Team::new();
        {
            let log = Arc::clone(&log);
            // Updates `a` (slot 1, chunk 0): before the resize, against the freeze of its slot,
            // or in the new table.
            team.spawn(move || log.put(b"a", &value(b'a', 1)).unwrap());
        }
        team.run(|| {
            // The fourth key: claims slot 2, the table is over its load factor, a successor of
            // 8 slots is installed.
            log.put(b"d", &value(b'd', 0)).unwrap();
            // Helps the migration by one chunk, then finds every slot of the old table taken by
            // another key (or frozen) and lands in the new table.
            log.put(b"e", &value(b'e', 0)).unwrap();
        });
        let latest = [(b'a', 1), (b'b', 0), (b'c', 0), (b'd', 0), (b'e', 0)];
        finish_the_resize(&log, eight_slots, &latest);
        team.dismiss();
    });
}

#[test]
fn update_racing_a_resize_loses_nothing() {
    update_racing_a_resize();
}

/// A blind store lets the update of `a` land in its slot after migration froze the slot and
/// copied the old entry: the new table keeps the old value.
#[test]
fn twin_blind_store_loses_an_update_racing_a_resize() {
    twin(
        "twin_blind_store_loses_an_update_racing_a_resize",
        Broken::BlindIndexStore,
        "maps to its latest value",
        update_racing_a_resize,
    );
}

#[test]
fn two_inserts_race_for_the_last_slot() {
    seglog_loom_models::model(|| {
        let log = Arc::new(small_log(512, RESIZE_SEED));
        let eight_slots = one_table_of_8_slots();
        put_keys(&log, b"abc");

        let mut team = Team::new();
        {
            let log = Arc::clone(&log);
            // `e`'s home is slot 3 (`b`): it probes 3, 0, 1, 2.
            team.spawn(move || {
                log.put(b"e", &value(b'e', 0)).unwrap();
                log.get(b"e")
            });
        }
        // `d` goes to slot 2 (its home 1 is taken). Whichever claims slot 2 makes the fourth
        // claim and starts the resize; the other finds every slot taken and writes in the
        // successor, creating it if the claimer has not yet.
        let (_, seen) = team.run(|| log.put(b"d", &value(b'd', 0)).unwrap());
        assert_eq!(
            seen[0],
            Some(value(b'e', 0)),
            "a put is visible to its own thread's next get"
        );
        let latest = [(b'a', 0), (b'b', 0), (b'c', 0), (b'd', 0), (b'e', 0)];
        finish_the_resize(&log, eight_slots, &latest);
        team.dismiss();
    });
}

/// At load factor 0.7 the third claim starts the resize (4 × 0.7 rounds down to 2) while a
/// slot is still vacant, so migration seals it (freezes it empty) and an insert can race the
/// seal. The 8-slot table's threshold is 5, so its four keys plus the one reservation another
/// thread may have in flight (slots are counted before their CAS) never start a second resize;
/// at 0.5 (threshold 4) such a transient count sometimes does.
#[test]
fn insert_racing_the_seal_of_a_vacant_slot() {
    seglog_loom_models::model(|| {
        let log = Arc::new(
            Log::in_memory(
                Options::default()
                    .segment_bytes(512)
                    .index_capacity(4)
                    .index_load_factor(0.7)
                    .index_seed(RESIZE_SEED)
                    .max_segments(1)
                    .auto_compact(false),
            )
            .unwrap(),
        );
        let eight_slots = one_table_of_8_slots();
        // `a` in slot 1, `b` in slot 3: slots 0 and 2 are vacant.
        put_keys(&log, b"ab");

        let mut team = Team::new();
        {
            let log = Arc::clone(&log);
            // `e` probes 3, 0, 1, 2: it races `c` (home 0) for slot 0, and the loser of that
            // race goes on to slot 2, which it claims, or finds frozen on the way (and then
            // seals slot 2, or finds it sealed) and writes in the successor.
            // Then it reads `a`, which the model thread updates meanwhile; if `e`'s put completed
            // the migration, it reads the copy the other thread made.
            team.spawn(move || {
                log.put(b"e", &value(b'e', 0)).unwrap();
                [log.get(b"e"), log.get(b"a")]
            });
        }
        let ((), seen) = team.run(|| {
            // The third claim (this or `e`'s) starts the resize; the two updates after it help
            // one chunk each, so the migration is done when they return.
            log.put(b"c", &value(b'c', 0)).unwrap();
            log.put(b"a", &value(b'a', 1)).unwrap();
            log.put(b"b", &value(b'b', 1)).unwrap();
        });
        let [e, a] = &seen[0];
        assert_eq!(
            *e,
            Some(value(b'e', 0)),
            "a put is visible to its own thread's next get"
        );
        assert!(
            *a == Some(value(b'a', 0)) || *a == Some(value(b'a', 1)),
            "a key updated during the resize has its old value or its new one: {:?}",
            a.as_deref().map(String::from_utf8_lossy)
        );
        // Read before `finish_the_resize` writes anything: the migration is done already.
        assert_eq!(
            log.stats().index_bytes,
            eight_slots,
            "both chunks were claimed and migrated in the window"
        );
        let latest = [(b'c', 0), (b'e', 0), (b'a', 1), (b'b', 1)];
        finish_the_resize(&log, eight_slots, &latest);
        team.dismiss();
    });
}

/// What a pinned reader saw during a resize: keys `a`, `b`, `c` (there before it), then `f`,
/// `e`, `d` (put during it, in the reverse of their order).
type ReadDuringResize = [Option<Vec<u8>>; 6];

const READ_ORDER: [u8; 6] = *b"abcfed";

fn read_during_a_resize(log: &Log) -> ReadDuringResize {
    let pinned = log.pin();
    READ_ORDER.map(|key| pinned.get(&[key]).map(<[u8]>::to_vec))
}

fn check_read_during_a_resize(seen: &ReadDuringResize) {
    for (key, got) in READ_ORDER.into_iter().zip(seen) {
        let value = value(key, 0);
        if b"abc".contains(&key) {
            assert!(
                *got == Some(value),
                "a reader during the resize finds key {:?} with its value, got {:?}",
                key as char,
                got.as_deref().map(String::from_utf8_lossy)
            );
        } else {
            assert!(
                got.is_none() || *got == Some(value),
                "a key put during the resize is absent or whole: {:?} gave {:?}",
                key as char,
                got.as_deref().map(String::from_utf8_lossy)
            );
        }
    }
    // `f` was put after `e`, after `d`: a reader that found `f` found them too.
    let found: Vec<bool> = seen[3..].iter().map(Option::is_some).collect();
    assert!(
        found.windows(2).all(|pair| pair[0] <= pair[1]),
        "a reader that finds a key sees the keys put before it: f, e, d found {found:?}"
    );
}

/// The writer's part of a whole resize: starts it (`d`, the fourth key, in slot 2), migrates
/// chunk 0 (slots 0-1: `c`, `a`) while putting `e`, migrates chunk 1 (slots 2-3: `d`, `b`)
/// while putting `f`, moves the root to the 8-slot table and retires the old one.
fn resize_with_three_puts(log: &Log) {
    for key in *b"def" {
        log.put(&[key], &value(key, 0)).unwrap();
    }
}

#[test]
fn get_racing_a_resize_finds_every_key() {
    seglog_loom_models::model(|| {
        let log = Arc::new(small_log(512, RESIZE_SEED));
        let eight_slots = one_table_of_8_slots();
        put_keys(&log, b"abc");

        let mut team = Team::new();
        {
            let log = Arc::clone(&log);
            // One pin for all the gets: the old table cannot be freed under the reader.
            team.spawn(move || read_during_a_resize(&log));
        }
        let ((), seen) = team.run(|| resize_with_three_puts(&log));
        check_read_during_a_resize(&seen[0]);
        let stats = log.stats();
        assert_eq!(stats.index_resizes, 1);
        assert_eq!(
            stats.index_bytes, eight_slots,
            "the writer finished the migration: one table of 8 slots is left"
        );
        let latest = READ_ORDER.map(|key| (key, 0));
        assert_latest(&log, &latest, "after the resize");
        team.dismiss();
    });
}

/// Flushes the model thread's deferred drops to the collector and lets it advance the epoch and
/// run what has expired.
fn flush_collector(times: usize) {
    for _ in 0..times {
        seglog::pin().flush();
    }
}

/// The index side of epoch retirement. The model thread pins before the resize starts and reads
/// with that one guard while a member resizes the index (the old table is unlinked and retired
/// through crossbeam-epoch) and flushes the collector. Proves, in every interleaving:
/// - the reader finds every key that was there before, and the keys put meanwhile whole or not;
/// - the old table, which the pinned reader could reach, is not freed while it stays pinned
///   (two tables alive once the writer is done), and is freed once it unpins (one table);
/// - every execution starts with one table alive, so a table an earlier execution never freed
///   (the count lives on the OS thread, across executions) fails the next one.
///
/// Loom cannot see crossbeam-epoch free a table (tables are `Box` allocations, untracked, and
/// its leak check does not look at them), so this counts tables with the engine's loom-only
/// `Log::__live_index_tables`; see `docs/loom.md`.
#[test]
fn old_table_outlives_its_pinned_reader() {
    seglog_loom_models::model(|| {
        let log = Arc::new(small_log(512, RESIZE_SEED));
        let eight_slots = one_table_of_8_slots();
        put_keys(&log, b"abc");
        assert_eq!(log.__live_index_tables(), 1);

        let mut team = Team::new();
        {
            let log = Arc::clone(&log);
            team.spawn(move || {
                resize_with_three_puts(&log);
                flush_collector(2);
            });
        }
        // Pinned before the writer starts: the 4-slot table is the root under this guard.
        let pinned = log.pin();
        let (seen, _) = team.run(|| READ_ORDER.map(|key| pinned.get(&[key]).map(<[u8]>::to_vec)));
        check_read_during_a_resize(&seen);
        assert_eq!(
            log.stats().index_bytes,
            eight_slots,
            "the writer finished the resize"
        );
        assert_eq!(
            log.__live_index_tables(),
            2,
            "the old table a pinned reader could reach is not freed under it"
        );
        drop(pinned);

        // No guard holds the old table any more: the collector frees it.
        flush_collector(3);
        assert_eq!(
            log.__live_index_tables(),
            1,
            "a retired table is freed once no guard holds it"
        );
        team.dismiss();
        // The log drops at the end of the execution with its last table; the next execution's
        // first count checks that it went.
    });
}
