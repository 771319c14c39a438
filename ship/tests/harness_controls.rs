//! Controls for the checkers the ship tests rely on (`common/mod.rs`): each is shown failing on
//! the thing it exists to catch, so a green ship test means something.
//! - `check_prefix` rejects a write returned before the round that is missing, a removed key that is back, a
//!   write started after the round that is present, bytes that are no write's, and accepts
//!   each allowed prefix;
//! - the auditing store reports a manifest put naming a missing object, a delete of an object
//!   a manifest names, and an object created twice.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Audited, History, Op, check_prefix, key_of, payload, value_of};
use object_store::ObjectStore;
use object_store::path::Path;
use seglog_ship::{Manifest, ObjectEntry, SegmentEntry};

/// Writer 0: put k0 (op 0), put k1 (op 1), remove k0 (op 2), put k0 (op 3); ops 0-2 returned at
/// `t0 + 6..8 ms` and synced at 10 ms, op 3 started at 20 ms, returned at 21, never synced.
fn history(t0: Instant) -> History {
    let at = |ms| t0 + Duration::from_millis(ms);
    vec![vec![
        Op {
            key: 0,
            put: Some(10),
            started: at(0),
            returned: Some(at(6)),
            synced: Some(at(10)),
        },
        Op {
            key: 1,
            put: Some(20),
            started: at(1),
            returned: Some(at(7)),
            synced: Some(at(10)),
        },
        Op {
            key: 0,
            put: None,
            started: at(2),
            returned: Some(at(8)),
            synced: Some(at(10)),
        },
        Op {
            key: 0,
            put: Some(30),
            started: at(20),
            returned: Some(at(21)),
            synced: None,
        },
    ]]
}

fn state(entries: &[(u64, u64, usize)]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    entries
        .iter()
        .map(|&(key, seq, len)| (key_of(0, key), value_of(0, seq, len)))
        .collect()
}

#[test]
fn check_prefix_accepts_allowed_prefixes_and_rejects_the_rest() {
    let t0 = Instant::now();
    let h = history(t0);
    let ms = |n| t0 + Duration::from_millis(n);
    // A round that started after ops 0-2 returned and ended before op 3: exactly ops 0-2.
    let exact = state(&[(1, 1, 20)]);
    assert_eq!(check_prefix(&exact, &h, ms(15), ms(19)), Ok(vec![3]));
    // A round that ended after op 3 started: ops 0-2 or 0-3.
    let with_op3 = state(&[(0, 3, 30), (1, 1, 20)]);
    assert_eq!(check_prefix(&with_op3, &h, ms(15), ms(25)), Ok(vec![4]));
    assert_eq!(check_prefix(&exact, &h, ms(15), ms(25)), Ok(vec![3]));
    // A round before ops 0-2 returned: any prefix up to op 2, e.g. nothing at all, or ops 0-1.
    assert_eq!(
        check_prefix(&BTreeMap::new(), &h, ms(5), ms(19)),
        Ok(vec![0])
    );
    assert_eq!(
        check_prefix(&state(&[(0, 0, 10), (1, 1, 20)]), &h, ms(5), ms(19)),
        Ok(vec![2])
    );

    // A write returned before the round missing.
    assert!(check_prefix(&BTreeMap::new(), &h, ms(15), ms(19)).is_err());
    // A remove returned before the round undone: k0 is back with op 0's value.
    assert!(check_prefix(&state(&[(0, 0, 10), (1, 1, 20)]), &h, ms(15), ms(19)).is_err());
    // A write started after the round present.
    assert!(check_prefix(&with_op3, &h, ms(15), ms(19)).is_err());
    // Not a prefix of the writer's order: op 3 without op 1 before it (each alone allowed).
    assert!(check_prefix(&state(&[(0, 3, 30)]), &h, ms(5), ms(25)).is_err());
    // Bytes that are no write's value, and a value under the wrong key.
    let mut damaged = exact.clone();
    damaged.get_mut(&key_of(0, 1)).unwrap()[20] ^= 1;
    assert!(check_prefix(&damaged, &h, ms(15), ms(19)).is_err());
    let swapped: BTreeMap<_, _> = [(key_of(0, 0), value_of(0, 1, 20))].into();
    assert!(check_prefix(&swapped, &h, ms(15), ms(25)).is_err());
    // A key nobody wrote.
    let mut stranger = exact.clone();
    stranger.insert(b"intruder".to_vec(), b"x".to_vec());
    assert!(check_prefix(&stranger, &h, ms(15), ms(19)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auditing_store_reports_each_protocol_violation() {
    let remote = tempfile::tempdir().unwrap();
    let inner: Arc<dyn ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(remote.path()).unwrap());
    let prefix = Path::from("p");
    let audited = Audited::new(Arc::clone(&inner), prefix.clone());
    let entry = |key: &str, len| ObjectEntry {
        key: key.to_owned(),
        start: 0,
        len,
        crc32c: 0,
    };
    let manifest = |seq, keys: &[(&str, u64)]| Manifest {
        format: seglog_ship::MANIFEST_FORMAT,
        seq,
        segment_bytes: 1 << 20,
        synced_segment: 0,
        synced_offset: 100,
        segments: keys
            .iter()
            .enumerate()
            .map(|(i, (key, len))| SegmentEntry {
                id: i as u64,
                sealed: true,
                header_crc32c: 0,
                parts: vec![entry(key, *len)],
                hint: None,
            })
            .collect(),
    };
    let put_manifest = |m: Manifest| {
        let audited = Arc::clone(&audited);
        async move {
            let path = Path::from(format!("p/manifests/{:020}.json", m.seq));
            audited
                .put(&path, payload(&serde_json::to_vec(&m).unwrap()))
                .await
                .unwrap();
        }
    };

    // Within the protocol: the object first, then a manifest naming it.
    audited
        .put(&Path::from("p/segments/a.seg"), payload(b"abc"))
        .await
        .unwrap();
    put_manifest(manifest(1, &[("segments/a.seg", 3)])).await;
    assert!(
        audited.violations().is_empty(),
        "{:?}",
        audited.violations()
    );
    assert!(audited.published(1).is_some());

    // A manifest naming a missing object, and one naming an object with another length.
    put_manifest(manifest(2, &[("segments/missing.seg", 3)])).await;
    put_manifest(manifest(3, &[("segments/a.seg", 4)])).await;
    // A delete of an object a manifest names.
    audited
        .delete(&Path::from("p/segments/a.seg"))
        .await
        .unwrap();
    // An object created twice.
    audited
        .put(&Path::from("p/segments/b.seg"), payload(b"1"))
        .await
        .unwrap();
    audited
        .put(&Path::from("p/segments/b.seg"), payload(b"2"))
        .await
        .unwrap();
    let violations = audited.violations();
    assert_eq!(violations.len(), 5, "{violations:#?}");
    assert!(violations[0].contains("missing.seg") && violations[0].contains("not stored"));
    assert!(violations[1].contains("of 4 bytes, stored with 3"));
    // Manifests 1 and 3 both name it.
    assert!(violations[2].contains("segments/a.seg deleted while manifest 1 names it"));
    assert!(violations[3].contains("segments/a.seg deleted while manifest 3 names it"));
    assert!(violations[4].contains("created twice"));
    assert_eq!(audited.created_twice(), vec!["p/segments/b.seg".to_owned()]);
}
