//! Record regions stay disjoint across roll-overs (content boundaries never overlap): eight
//! writers (four times the cores) store episodes of mixed sizes, some ids twice, into 64 KiB
//! segments, so reservations race and segments roll over hundreds of times. The regions
//! `[version, version + record_bytes)` that `store` returned are pairwise disjoint and each
//! inside one segment; each still holds exactly the episode stored there; and a scan of the log
//! in order finds exactly these records.
//!
//! Warm-tier suite: the review's missing scenario "content boundaries never overlap" of the
//! warm-tier task (task 017); this file was `warm_tier_regions_disjoint.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::time::{Duration, UNIX_EPOCH};

use seglog::{Options, RecordKind};
use seglog_tests::SplitMix64;
use seglog_tests::warm_tier::{
    Episode, EpisodeBuilder, Region, WarmTier, check_disjoint, create_test_embedding, decode,
};

const WRITERS: u64 = 8;
const PER_WRITER: u64 = 400;
const SEGMENT_BYTES: u64 = 64 * 1024;

/// Episode `seq` of `writer`; every fourth one reuses the id of the one before (an overwrite).
fn episode(writer: u64, seq: u64) -> Episode {
    let mut rng = SplitMix64::new((writer << 32) | seq);
    let id_seq = if seq % 4 == 3 { seq - 1 } else { seq };
    let what_len = match rng.range(0, 9) {
        0 => rng.range(20_000, 50_000),
        1..=3 => rng.range(1_000, 8_000),
        _ => rng.range(0, 500),
    } as usize;
    let fill = char::from(b'a' + (seq % 26) as u8);
    let what: String = format!("w{writer} s{seq} ")
        .chars()
        .chain(std::iter::repeat(fill))
        .take(what_len)
        .collect();
    EpisodeBuilder::new()
        .id(format!("w{writer}-e{id_seq}"))
        .when(UNIX_EPOCH + Duration::from_nanos(rng.next_u64() >> 8))
        .what(what)
        .embedding(create_test_embedding((writer * 1_000 + seq) as f32))
        .confidence(rng.range(0, 100) as f32 / 100.0)
        .build()
}

#[test]
fn regions_returned_by_store_never_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let tier = Arc::new(
        // Compaction off: the regions are read back by the positions `store` returned, and
        // compaction would move the overwritten episodes' records.
        WarmTier::open_with(
            dir.path(),
            Options::default()
                .segment_bytes(SEGMENT_BYTES)
                .auto_compact(false),
        )
        .unwrap(),
    );
    let barrier = Arc::new(Barrier::new(WRITERS as usize));
    let handles: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (tier, barrier) = (Arc::clone(&tier), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                (0..PER_WRITER)
                    .map(|seq| {
                        let e = episode(writer, seq);
                        let version = tier.store(&e).expect("store");
                        (version, writer, seq)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let stored: Vec<(u64, u64, u64)> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("writer panicked"))
        .collect();
    assert_eq!(stored.len() as u64, WRITERS * PER_WRITER);

    let stats = tier.stats();
    assert!(
        stats.segments >= 200,
        "only {} segments: too few roll-overs",
        stats.segments
    );

    // Each region holds exactly what was stored there, even where the id was stored again
    // later (the older record stays where it was: compaction is off).
    let log = tier.log();
    let pinned = log.pin();
    let mut regions = Vec::with_capacity(stored.len());
    let mut by_position = HashMap::new();
    for &(version, writer, seq) in &stored {
        let e = episode(writer, seq);
        let record = log
            .append_log()
            .read(version, pinned.guard())
            .unwrap_or_else(|err| panic!("w{writer} s{seq}: version {version:#x}: {err}"));
        assert_eq!(record.kind, RecordKind::Put);
        assert_eq!((record.position, record.version), (version, version));
        assert_eq!(
            record.key,
            e.id.as_bytes(),
            "w{writer} s{seq}: foreign key in region"
        );
        assert_eq!(u64::from(record.record_bytes), e.record_bytes());
        let view = decode(record.value).unwrap_or_else(|err| panic!("w{writer} s{seq}: {err}"));
        assert_eq!(
            view.to_episode(&e.id),
            e,
            "w{writer} s{seq}: region holds other bytes"
        );
        regions.push(Region {
            position: version,
            record_bytes: e.record_bytes(),
        });
        assert!(
            by_position.insert(version, (writer, seq)).is_none(),
            "version {version:#x} given twice"
        );
    }
    check_disjoint(&mut regions, SEGMENT_BYTES).unwrap_or_else(|e| panic!("{e}"));

    // The log in order holds exactly these records: none lost, none invented, none twice.
    let mut scanned = 0;
    let mut previous_end = 0;
    let mut scan = log.append_log().scan(pinned.guard());
    for record in scan.by_ref() {
        assert!(
            record.position >= previous_end,
            "scan went backwards or overlapped at {:#x}",
            record.position
        );
        previous_end = record.position + u64::from(record.record_bytes);
        assert!(
            by_position.contains_key(&record.position),
            "scan found a record at {:#x} that no store returned",
            record.position
        );
        scanned += 1;
    }
    assert!(scan.error().is_none(), "{:?}", scan.error());
    assert_eq!(scanned, stored.len());

    // Later stores of an id won: each id shows its last episode.
    let overwritten = WRITERS * (PER_WRITER / 4);
    assert_eq!(tier.count() as u64, WRITERS * PER_WRITER - overwritten);
    for writer in 0..WRITERS {
        for seq in (0..PER_WRITER).filter(|s| s % 4 != 2) {
            let e = episode(writer, seq);
            assert_eq!(tier.recall(&e.id).unwrap(), e);
        }
    }
}
