//! The S3 test harness itself (`seglog_tests::moto`, `seglog_tests::fault_proxy`): a moto
//! server on a free port of 127.0.0.1 takes puts, gets, lists and deletes through
//! `object_store`'s S3 client byte for byte; a write-once put (`PutMode::Create`) of an existing
//! key is refused with `AlreadyExists` (moto answers `If-None-Match: *` with 412) and leaves the
//! first bytes; the fault proxy's 503s are retried by the client and then succeed, or end in an
//! error once they outlast the retries, and a refused connection fails fast; dropping the
//! harness kills the server.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use seglog_tests::fault_proxy::{Fault, FaultProxy};
use seglog_tests::moto::{Moto, s3_store};

fn payload(bytes: &[u8]) -> PutPayload {
    PutPayload::from(Bytes::copy_from_slice(bytes))
}

async fn get(store: &dyn ObjectStore, key: &str) -> object_store::Result<Vec<u8>> {
    Ok(store.get(&Path::from(key)).await?.bytes().await?.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_list_delete_round_trip() {
    let _watchdog = common::watchdog("put_get_list_delete_round_trip", Duration::from_secs(60));
    let moto = Moto::start();
    let store = moto.store();
    let mut expected = std::collections::BTreeMap::new();
    for i in 0..20u32 {
        let key = format!("dir/{}/object-{i:03}", i % 3);
        // Sizes from empty to 256 KiB + 7, every byte depending on the key.
        let len = if i == 0 {
            0
        } else {
            (i as usize * 13_111) % (256 << 10) + 7
        };
        let bytes = seglog_tests::pattern(u64::from(i), 7, len);
        store
            .put(&Path::from(key.as_str()), payload(&bytes))
            .await
            .unwrap();
        expected.insert(key, bytes);
    }
    for (key, bytes) in &expected {
        assert_eq!(&get(&*store, key).await.unwrap(), bytes, "{key}");
        let meta = store.head(&Path::from(key.as_str())).await.unwrap();
        assert_eq!(meta.size, bytes.len() as u64, "{key}");
    }
    // A ranged read.
    let key = "dir/1/object-007";
    let range = store.get_range(&Path::from(key), 100..1100).await.unwrap();
    assert_eq!(&range[..], &expected[key][100..1100]);

    let mut listed: Vec<(String, u64)> = store
        .list(Some(&Path::from("dir")))
        .map_ok(|m| (m.location.to_string(), m.size))
        .try_collect()
        .await
        .unwrap();
    listed.sort();
    let want: Vec<(String, u64)> = expected
        .iter()
        .map(|(k, v)| (k.clone(), v.len() as u64))
        .collect();
    assert_eq!(listed, want);
    let in_one: Vec<_> = store
        .list(Some(&Path::from("dir/2")))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        in_one.len(),
        expected.keys().filter(|k| k.starts_with("dir/2/")).count()
    );

    store.delete(&Path::from(key)).await.unwrap();
    assert!(matches!(
        get(&*store, key).await,
        Err(object_store::Error::NotFound { .. })
    ));
    // Another bucket on the same server is another namespace.
    moto.create_bucket("seglog-other");
    let other = s3_store(&moto.endpoint(), "seglog-other");
    let in_other: Vec<_> = other.list(None).try_collect().await.unwrap();
    assert!(in_other.is_empty(), "{in_other:?}");
}

/// What the shipper's write-once uploads rest on: moto 5.2 honours `If-None-Match: *`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_on_existing_key_is_already_exists() {
    let _watchdog = common::watchdog("create_on_existing_key", Duration::from_secs(60));
    let moto = Moto::start();
    let store = moto.store();
    let path = Path::from("segments/00000000000000000001.seg");
    let create = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    store
        .put_opts(&path, payload(b"first bytes"), create.clone())
        .await
        .expect("a create of a new key succeeds");
    let second = store
        .put_opts(&path, payload(b"other bytes"), create.clone())
        .await;
    assert!(
        matches!(second, Err(object_store::Error::AlreadyExists { .. })),
        "a create of an existing key: {second:?}"
    );
    assert_eq!(get(&*store, path.as_ref()).await.unwrap(), b"first bytes");
    // The same bytes again are refused too: write-once is by key, not by content.
    let same = store.put_opts(&path, payload(b"first bytes"), create).await;
    assert!(
        matches!(same, Err(object_store::Error::AlreadyExists { .. })),
        "{same:?}"
    );
    // A multipart upload is not conditional; an overwrite is not refused.
    store.put(&path, payload(b"overwritten")).await.unwrap();
    assert_eq!(get(&*store, path.as_ref()).await.unwrap(), b"overwritten");
}

/// A multipart upload of several parts arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload_round_trip() {
    let _watchdog = common::watchdog("multipart_upload_round_trip", Duration::from_secs(60));
    let moto = Moto::start();
    let store = moto.store();
    let path = Path::from("big/object");
    let part = 5 << 20; // S3's smallest part but the last
    let bytes = seglog_tests::pattern(1, 2, 2 * part + 12_345);
    let mut upload = store.put_multipart(&path).await.unwrap();
    for chunk in bytes.chunks(part) {
        upload.put_part(payload(chunk)).await.unwrap();
    }
    upload.complete().await.unwrap();
    assert_eq!(get(&*store, "big/object").await.unwrap(), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_proxy_503_refused_and_reset() {
    let _watchdog = common::watchdog("fault_proxy", Duration::from_secs(90));
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.addr());
    let store = s3_store(&proxy.endpoint(), moto.bucket());
    let path = Path::from("k");

    store.put(&path, payload(b"v1")).await.unwrap();
    assert_eq!(get(&*store, "k").await.unwrap(), b"v1");
    let forwarded = proxy.counts().forwarded;
    assert!(forwarded >= 2, "{:?}", proxy.counts());

    // Two 503s: the client retries (3 retries) and succeeds.
    proxy.fail_next(2);
    store.put(&path, payload(b"v2")).await.unwrap();
    assert_eq!(proxy.counts().unavailable, 2);
    assert_eq!(proxy.queued(), 0);
    assert_eq!(get(&*store, "k").await.unwrap(), b"v2");

    // 503 on everything: the put fails, with the status in the error, within the retry bounds.
    proxy.set(Fault::ServiceUnavailable);
    let started = Instant::now();
    let failed = store.put(&path, payload(b"v3")).await;
    let took = started.elapsed();
    let message = format!("{:?}", failed.as_ref().err());
    assert!(failed.is_err(), "a put through 503s only succeeded");
    assert!(message.contains("503"), "{message}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    proxy.forward();
    assert_eq!(
        get(&*store, "k").await.unwrap(),
        b"v2",
        "the refused put wrote nothing"
    );

    // Refused connections: a clear error, fast.
    proxy.refuse();
    let started = Instant::now();
    let refused = store.put(&path, payload(b"v4")).await;
    let took = started.elapsed();
    assert!(refused.is_err(), "a put to a closed port succeeded");
    assert!(took < Duration::from_secs(10), "{took:?}");
    eprintln!("refused after {took:?}: {}", refused.unwrap_err());
    proxy.forward();
    assert_eq!(get(&*store, "k").await.unwrap(), b"v2");

    // Resets: the next two connections are closed at once, the client retries.
    proxy.next(2, Fault::Reset);
    assert_eq!(get(&*store, "k").await.unwrap(), b"v2");
    assert_eq!(proxy.counts().reset, 2);

    // A large body passes the proxy whole.
    let big = seglog_tests::pattern(3, 4, 3 << 20);
    store.put(&Path::from("big"), payload(&big)).await.unwrap();
    assert_eq!(get(&*store, "big").await.unwrap(), big);
}

#[test]
fn drop_kills_the_server() {
    let _watchdog = common::watchdog("drop_kills_the_server", Duration::from_secs(60));
    let moto = Moto::start();
    let addr = moto.addr();
    assert!(std::net::TcpStream::connect(addr).is_ok());
    drop(moto);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "moto still answers on {addr} after drop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
