//! Racing writers never mix content: twenty writers released by one barrier store 50 episodes
//! each; all 1000 come back with exactly the content and embedding their writer stored (the
//! seed found "Memory w8-m0 contains content from writer 3" here), none twice, and their log
//! regions never overlap.
//!
//! Warm-tier suite: seed test 5 of the warm-tier task (task 017, "writer-writer offset races");
//! this file was `seed_5_writer_writer_races.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use seglog_tests::warm_tier::{
    Confidence, Episode, EpisodeBuilder, Region, WarmTier, check_disjoint, create_test_embedding,
};
use tempfile::TempDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 20)]
async fn test_writer_writer_offset_races() {
    let temp_dir = TempDir::new().expect("temp dir creation");
    let store = Arc::new(WarmTier::open(temp_dir.path()).expect("Failed to create store"));

    // Barrier to maximize simultaneous writes.
    let barrier = Arc::new(tokio::sync::Barrier::new(20));

    // Track all stored episodes with the region the log gave each.
    let stored = Arc::new(Mutex::new(Vec::new()));

    let mut handles = vec![];
    for thread_id in 0..20 {
        let store = Arc::clone(&store);
        let barrier = Arc::clone(&barrier);
        let stored = Arc::clone(&stored);

        let handle = tokio::spawn(async move {
            barrier.wait().await;

            for i in 0..50 {
                let content = format!(
                    "Writer {} content {} - {}",
                    thread_id,
                    i,
                    "x".repeat((thread_id + i) * 3)
                );
                let id = format!("w{}-m{}", thread_id, i);

                let episode = EpisodeBuilder::new()
                    .id(id.clone())
                    .when(SystemTime::now())
                    .what(content)
                    .embedding(create_test_embedding(thread_id as f32))
                    .confidence(Confidence::HIGH)
                    .build();

                let version = store.store(&episode).expect("store");
                let region = Region {
                    position: version,
                    record_bytes: episode.record_bytes(),
                };
                stored.lock().unwrap().push((episode, region));
            }
        });
        handles.push(handle);
    }

    for handle in handles {
        handle.await.expect("Writer panicked");
    }

    // Verify all memories stored correctly.
    let expected = stored.lock().unwrap();
    assert_eq!(expected.len(), 1000, "All writes should succeed");

    let memories: HashMap<String, Episode> = store.iter_hot_memories().collect();
    assert_eq!(
        memories.len(),
        1000,
        "All memories should be retrievable, once each"
    );
    assert_eq!(
        store.iter_hot_memories().count(),
        1000,
        "no id iterated twice"
    );

    // CRITICAL: no content corruption from offset races.
    for (expected_episode, _) in expected.iter() {
        let found = memories
            .get(&expected_episode.id)
            .unwrap_or_else(|| panic!("Memory {} not found", expected_episode.id));

        assert_eq!(
            found, expected_episode,
            "Episode mismatch for {} - likely offset collision",
            expected_episode.id
        );
    }

    let mut regions: Vec<Region> = expected.iter().map(|(_, r)| *r).collect();
    check_disjoint(&mut regions, store.stats().segment_bytes).unwrap_or_else(|e| panic!("{e}"));
}
