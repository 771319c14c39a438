//! Parallel reads are exact and have no latency tail: twenty readers recall 100 episodes ten
//! times each while nothing writes; every recall succeeds with exactly the stored episode, and
//! the latency distribution has no pathological tail (p99 < 10 × p50, the seed's criterion).
//!
//! Warm-tier suite: seed test 2 of the warm-tier task (task 017, "reader parallelism"); this
//! file was `seed_2_reader_parallelism.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use seglog_tests::warm_tier::{
    Confidence, Episode, EpisodeBuilder, WarmTier, create_test_embedding,
};
use tempfile::TempDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 20)]
async fn test_concurrent_get_reader_parallelism() {
    let temp_dir = TempDir::new().expect("temp dir creation");
    let store = Arc::new(WarmTier::open(temp_dir.path()).expect("Failed to create store"));

    // Pre-populate with 100 memories of varying content sizes.
    let mut expected_episodes: HashMap<String, Episode> = HashMap::new();
    for i in 0..100 {
        let content = format!("Content for episode {} - {}", i, "x".repeat(i * 10));
        let episode = EpisodeBuilder::new()
            .id(format!("ep-{}", i))
            .when(SystemTime::now())
            .what(content)
            .embedding(create_test_embedding(i as f32))
            .confidence(Confidence::HIGH)
            .build();

        store.store(&episode).expect("store");
        expected_episodes.insert(episode.id.clone(), episode);
    }
    let expected_episodes = Arc::new(expected_episodes);

    // Track read latencies to detect pathological contention.
    let latencies = Arc::new(Mutex::new(Vec::new()));

    // Spawn 20 reader tasks, each reading all 100 memories 10 times.
    let mut handles = vec![];
    for reader_id in 0..20 {
        let store = Arc::clone(&store);
        let expected = Arc::clone(&expected_episodes);
        let latencies = Arc::clone(&latencies);

        let handle = tokio::spawn(async move {
            let mut mine = Vec::with_capacity(1000);
            for iteration in 0..10 {
                for i in 0..100 {
                    let memory_id = format!("ep-{}", i);
                    let start = Instant::now();

                    // Recall should always succeed.
                    let episode = store.recall(&memory_id).unwrap_or_else(|e| {
                        panic!(
                            "Reader {} iteration {} failed to recall {}: {}",
                            reader_id, iteration, memory_id, e
                        )
                    });

                    let elapsed = start.elapsed();
                    mine.push(elapsed);

                    // CRITICAL: the episode should be exactly correct (no torn reads).
                    assert_eq!(
                        &episode, &expected[&memory_id],
                        "Episode corrupted for memory {} (reader {}, iteration {})",
                        memory_id, reader_id, iteration
                    );
                }
            }
            // One lock per task, not per read: the seed's per-read `lock().push()` put a shared
            // mutex between every two measurements.
            latencies.lock().unwrap().extend(mine);
        });
        handles.push(handle);
    }

    for handle in handles {
        handle.await.expect("Reader thread panicked");
    }

    // Analyze the latency distribution to detect pathological contention.
    let mut lats: Vec<Duration> = latencies.lock().unwrap().clone();
    assert_eq!(lats.len(), 20_000, "every read was measured");
    lats.sort();
    let p50 = lats[lats.len() / 2];
    let p99 = lats[lats.len() * 99 / 100];
    let max = lats[lats.len() - 1];

    println!("Read latency: p50={:?}, p99={:?}, max={:?}", p50, p99, max);

    // P99 should be < 10x p50 (no pathological tail).
    assert!(
        p99 < p50 * 10,
        "Pathological read latency tail: p50={:?}, p99={:?}",
        p50,
        p99
    );
}
