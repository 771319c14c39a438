//! Versions increase per writer and regions never overlap: ten writers store 100 episodes each
//! at once; every episode is stored exactly once with its exact content, and the regions the
//! log gave them are strictly monotonic per writer and never overlap.
//!
//! Warm-tier suite: seed test 1 of the warm-tier task (task 017, "concurrent store, offset
//! monotonicity"); this file was `seed_1_store_offset_monotonicity.rs`.
//!
//! The seed could only infer offset correctness from content ("would need access to warm tier
//! internals"); on seglog a store returns its record's version, which is its log position, so
//! the regions are checked directly: `[version, version + record_bytes)`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use seglog_tests::warm_tier::{
    Confidence, Episode, EpisodeBuilder, Region, WarmTier, check_disjoint, create_test_embedding,
};
use tempfile::TempDir;

fn content(thread_id: usize, i: usize) -> String {
    format!(
        "Content from thread {} episode {} - {}",
        thread_id,
        i,
        "padding".repeat(thread_id)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 10)]
async fn test_concurrent_store_offset_monotonicity() {
    let temp_dir = TempDir::new().expect("temp dir creation");
    let store = Arc::new(WarmTier::open(temp_dir.path()).expect("Failed to create store"));

    // Barrier to ensure all tasks start simultaneously (maximize contention).
    let barrier = Arc::new(tokio::sync::Barrier::new(10));

    // Spawn 10 writer tasks, each storing 100 memories.
    let mut handles = vec![];
    for thread_id in 0..10 {
        let store = Arc::clone(&store);
        let barrier = Arc::clone(&barrier);

        let handle = tokio::spawn(async move {
            barrier.wait().await;

            let mut regions = Vec::with_capacity(100);
            for i in 0..100 {
                let episode = EpisodeBuilder::new()
                    .id(format!("thread-{}-ep-{}", thread_id, i))
                    .when(SystemTime::now())
                    .what(content(thread_id, i))
                    .embedding(create_test_embedding(thread_id as f32))
                    .confidence(Confidence::HIGH)
                    .build();

                let version = store.store(&episode).expect("store");
                regions.push(Region {
                    position: version,
                    record_bytes: episode.record_bytes(),
                });
            }
            regions
        });
        handles.push(handle);
    }

    let mut regions = Vec::new();
    for handle in handles {
        let mine = handle.await.expect("Writer thread panicked");
        // One writer's reservations happen one after another, so its positions only grow.
        assert!(
            mine.windows(2).all(|w| w[0].position < w[1].position),
            "a writer's versions are not strictly increasing: {mine:?}"
        );
        regions.extend(mine);
    }

    // Verify all 1000 memories stored.
    let counts = store.get_tier_counts();
    assert_eq!(counts.hot, 1000, "All memories should be stored");

    // CRITICAL: the log's regions: versions unique, regions disjoint and inside one segment
    // each, and each one holds the record of the episode that was given it.
    assert_eq!(regions.len(), 1000);
    {
        let log = store.log();
        let pinned = log.pin();
        for region in &regions {
            let record = log
                .append_log()
                .read(region.position, pinned.guard())
                .expect("a returned version is a readable position");
            assert_eq!(record.position, region.position);
            assert_eq!(record.version, region.position, "version == position");
            assert_eq!(
                u64::from(record.record_bytes),
                region.record_bytes,
                "record length is header + padded key + padded value"
            );
        }
    }
    let segment_bytes = store.stats().segment_bytes;
    check_disjoint(&mut regions, segment_bytes).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        store.stats().segments >= 3,
        "1000 episodes of ~3.2 KB should span several 1 MiB segments"
    );

    // Every episode back, exactly.
    let memories: Vec<(String, Episode)> = store.iter_hot_memories().collect();
    assert_eq!(memories.len(), 1000);
    for (id, episode) in &memories {
        let parts: Vec<&str> = id.split('-').collect();
        let thread_id: usize = parts[1].parse().unwrap();
        let i: usize = parts[3].parse().unwrap();
        assert_eq!(&episode.id, id);
        assert_eq!(
            episode.what,
            content(thread_id, i),
            "Content corrupted or truncated for memory {id}"
        );
        assert_eq!(
            *episode.embedding,
            create_test_embedding(thread_id as f32),
            "Embedding corrupted for memory {id}"
        );
        assert_eq!(episode.confidence, Confidence::HIGH);
    }

    // Property: No duplicate memory IDs, and every id written is there.
    let ids: HashSet<&str> = memories.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), memories.len(), "Found duplicate memory IDs");
    for thread_id in 0..10 {
        for i in 0..100 {
            assert!(ids.contains(format!("thread-{thread_id}-ep-{i}").as_str()));
        }
    }
}
