//! Concurrent stores keep every episode intact, for arbitrary thread counts (2..=10), episodes
//! per thread (10..=50) and content sizes (1..=1000 bytes): the iteration holds exactly the
//! episodes stored, each with its exact content.
//!
//! Warm-tier suite: seed test 7 of the warm-tier task (task 017, "proptest content
//! integrity"); this file was `seed_7_content_integrity_proptest.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use proptest::collection::vec;
use proptest::prelude::*;
use seglog_tests::warm_tier::{Confidence, Episode, EpisodeBuilder, WarmTier};
use tempfile::TempDir;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    #[test]
    fn prop_concurrent_store_preserves_content(
        thread_count in 2usize..=10,
        memories_per_thread in 10usize..=50,
        content_sizes in vec(1usize..=1000, 10..100)
    ) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let temp_dir = TempDir::new().unwrap();
            let store = Arc::new(WarmTier::open(temp_dir.path()).unwrap());

            let mut handles = vec![];
            let stored_contents = Arc::new(Mutex::new(HashMap::new()));

            for thread_id in 0..thread_count {
                let store = Arc::clone(&store);
                let stored_contents = Arc::clone(&stored_contents);
                let content_sizes = content_sizes.clone();

                let handle = tokio::spawn(async move {
                    for i in 0..memories_per_thread {
                        let size = content_sizes
                            .get(i % content_sizes.len())
                            .copied()
                            .unwrap_or(100);
                        // The seed stored "x" * size for every episode, so a swap of two
                        // same-sized contents would go unseen; the id in the content makes
                        // every episode's bytes its own.
                        let id = format!("t{}-m{}", thread_id, i);
                        let content: String = format!("{id}:{}", "x".repeat(size))
                            .chars()
                            .take(size)
                            .collect();

                        let episode = EpisodeBuilder::new()
                            .id(id.clone())
                            .when(SystemTime::now())
                            .what(content)
                            .embedding([0.5; 768])
                            .confidence(Confidence::HIGH)
                            .build();

                        stored_contents.lock().unwrap().insert(id, episode.clone());
                        store.store(&episode).expect("store");
                    }
                });
                handles.push(handle);
            }

            for handle in handles {
                handle.await.unwrap();
            }

            // Property: all stored episodes are retrievable and exact, none twice.
            let expected = stored_contents.lock().unwrap();
            let memories: Vec<(String, Episode)> = store.iter_hot_memories().collect();

            prop_assert_eq!(memories.len(), expected.len(), "Memory count mismatch");
            prop_assert_eq!(memories.len(), thread_count * memories_per_thread);
            prop_assert_eq!(store.count(), thread_count * memories_per_thread);

            let found: HashMap<&str, &Episode> =
                memories.iter().map(|(id, e)| (id.as_str(), e)).collect();
            prop_assert_eq!(found.len(), memories.len(), "an id was iterated twice");
            for (id, expected_episode) in expected.iter() {
                let Some(&episode) = found.get(id.as_str()) else {
                    return Err(TestCaseError::fail(format!("Memory {id} not found")));
                };
                prop_assert_eq!(episode, expected_episode, "Episode mismatch for {}", id);
            }

            Ok(())
        })?;
    }
}
