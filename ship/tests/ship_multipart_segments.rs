//! Large segments go up in parts (issue 18: "multipart for large segments"), and a round cut
//! short after its multipart uploads is adopted, not uploaded again. 16 MiB segments, objects of
//! 8 MiB and more in 5 MiB parts, against moto through the fault proxy: the first round's
//! manifest PUT fails (503 past the retries), so its sealed segments are stored in parts but
//! named by nothing; the next round adopts them (checked byte for byte against the files) and
//! publishes; moto's request log shows the parts and one completed upload per segment, and no
//! segment completed twice; the restore is the log exactly.
//!
//! Sizes: `SEGLOG_SHIP_MULTIPART_MB` (default 40) of values.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{Audited, check_remote};
use object_store::ObjectStore;
use object_store::path::Path;
use seglog::{Log, Options};
use seglog_ship::{ShipOptions, Shipper, restore};
use seglog_tests::fault_proxy::{Fault, FaultProxy};
use seglog_tests::moto::{Moto, s3_store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_segments_go_up_in_parts_and_a_cut_short_round_is_adopted() {
    let _watchdog = common::watchdog("multipart", Duration::from_secs(100));
    let moto = Moto::start();
    let direct = moto.store();
    let proxy = FaultProxy::start(moto.addr());
    let through = s3_store(&proxy.endpoint(), moto.bucket());
    let prefix = Path::from("big");
    let work = tempfile::tempdir().unwrap();
    let log = Arc::new(
        Log::open_with(
            work.path().join("log"),
            Options::default().segment_bytes(16 << 20),
        )
        .unwrap(),
    );
    let megabytes = common::env_u64("SEGLOG_SHIP_MULTIPART_MB", 40);
    let mut expected = BTreeMap::new();
    for i in 0..megabytes * 256 {
        let key = format!("blob-{i:06}").into_bytes();
        let value = seglog_tests::pattern(i, 5, 4000);
        log.put(&key, &value).unwrap();
        expected.insert(key, value);
    }
    log.sync().unwrap();
    let sealed = log
        .segment_files()
        .unwrap()
        .segments()
        .iter()
        .filter(|s| s.sealed)
        .count();
    assert!(sealed >= 2, "{sealed} sealed segments");

    let audited = Audited::new(Arc::clone(&through), prefix.clone());
    let mut shipper = Shipper::new(
        Arc::clone(&log),
        audited.clone() as Arc<dyn ObjectStore>,
        prefix.clone(),
        ShipOptions {
            multipart_bytes: 8 << 20,
            part_bytes: 5 << 20,
            ..ShipOptions::default()
        },
    )
    .await
    .unwrap();
    proxy.on_requests("PUT", "/manifests/", 100, Fault::ServiceUnavailable);
    let cut_short = shipper.ship_once().await.unwrap_err();
    assert!(cut_short.is_transient(), "{cut_short}");
    proxy.clear_rules();
    assert!(common::manifests(&*direct, &prefix).await.is_empty());
    let stored = common::objects(&*direct, &prefix).await;
    let segments_stored = stored.keys().filter(|k| k.ends_with(".seg")).count();
    assert_eq!(segments_stored, sealed, "{stored:?}");

    let report = shipper.ship_once().await.unwrap();
    assert_eq!(report.manifest, 1);
    assert_eq!(report.objects_uploaded, 0, "{report:?}");
    assert!(report.objects_adopted as usize >= sealed, "{report:?}");

    // moto's request log: parts, one completion per sealed segment, none twice.
    let bucket = format!("/{}/big/", moto.bucket());
    let (mut parts, mut completed) = (0, BTreeMap::<String, u64>::new());
    for line in moto.output().lines() {
        let Some(request) = line.split('"').nth(1) else {
            continue;
        };
        let ok = line
            .split('"')
            .nth(2)
            .is_some_and(|s| s.trim_start().starts_with("200"));
        let mut words = request.split(' ');
        let (Some(method), Some(target)) = (words.next(), words.next()) else {
            continue;
        };
        let Some(rest) = target.strip_prefix(&bucket) else {
            continue;
        };
        let (key, query) = rest.split_once('?').unwrap_or((rest, ""));
        if ok && method == "PUT" && query.contains("partNumber") {
            parts += 1;
        }
        if ok && method == "POST" && query.contains("uploadId") {
            *completed.entry(key.to_owned()).or_default() += 1;
        }
    }
    assert_eq!(completed.len(), sealed, "{completed:?}");
    assert!(completed.values().all(|&n| n == 1), "{completed:?}");
    assert!(parts >= 3 * sealed, "{parts} parts for {sealed} segments");

    check_remote(&*direct, &prefix, true).await;
    let violations = audited.violations();
    assert!(violations.is_empty(), "{violations:#?}");
    let dest = work.path().join("restored");
    let restored = restore(Arc::clone(&direct), &prefix, &dest).await.unwrap();
    let reopened = Log::open_with(&dest, Options::default().read_only(true)).unwrap();
    assert!(
        common::state_of(&reopened) == expected,
        "the restore differs"
    );
    eprintln!(
        "{sealed} sealed 16 MiB segments in {parts} parts, adopted after the cut-short round \
         ({report:?}); restored {} objects, {} bytes",
        restored.objects, restored.bytes
    );
}
