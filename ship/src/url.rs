//! Object-store URLs: `s3://bucket/prefix` and `file:///path`, as the `seglog ship` and
//! `seglog restore` commands take them.
//!
//! - `s3://BUCKET[/PREFIX]`: Amazon S3 or any S3-compatible server, configured from the
//!   environment as `object_store`'s [`AmazonS3Builder::from_env`] reads it: `AWS_ENDPOINT_URL`
//!   (or `AWS_ENDPOINT`) for a server other than AWS, `AWS_ACCESS_KEY_ID`,
//!   `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (default `us-east-1`), and
//!   `AWS_ALLOW_HTTP=true` for a plain-http endpoint. Requests are retried with exponential
//!   backoff (0.1 s doubling to at most 4 s, 6 retries), and a request gives up once 15 s have
//!   passed since its first attempt, so a dead or unreachable endpoint fails in well under 30 s
//!   instead of the minutes `object_store`'s default allows.
//! - `file:///PATH` (or `file://localhost/PATH`): a directory on this machine, created if
//!   missing. The prefix is the directory itself: objects are files under it.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientConfigKey, ObjectStore, RetryConfig};

use crate::{Error, Result};

/// How requests to an S3 endpoint are retried: with backoff, but bounded so that a dead
/// endpoint is reported within seconds (connection refused: about 3 s of backoff; a black hole:
/// three 5 s connect timeouts, about 16 s).
pub fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(4),
            base: 2.0,
        },
        max_retries: 6,
        retry_timeout: Duration::from_secs(15),
    }
}

/// The store and the prefix inside it that `url` names.
///
/// `s3://bucket/some/prefix` gives an S3 store for `bucket` and the prefix `some/prefix`;
/// `file:///var/backups/log` gives a [`LocalFileSystem`] rooted at `/var/backups/log` (created
/// if missing) and the empty prefix. Nothing is sent over the network here: an unreachable
/// endpoint or wrong credentials show up at the first request.
///
/// Errors: [`Error::BadUrl`], with a reason that says what to write instead, for any other
/// scheme, a bare path, a missing bucket, a query or fragment, a prefix that is not a valid
/// object path (`a//b`, `..`), a plain-http `AWS_ENDPOINT_URL` without `AWS_ALLOW_HTTP=true`,
/// or a local directory that cannot be created.
pub fn store_from_url(url: &str) -> Result<(Arc<dyn ObjectStore>, Path)> {
    let bad = |reason: String| Error::BadUrl {
        url: url.to_string(),
        reason,
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        let hint = if url.starts_with('/') {
            format!("for a local directory write file://{url}")
        } else {
            "write s3://BUCKET/PREFIX or file:///ABSOLUTE/PATH".to_string()
        };
        return Err(bad(format!("not a URL: {hint}")));
    };
    match scheme {
        "s3" => s3(url, rest).map_err(bad),
        "file" => local(url, rest).map_err(bad),
        other => Err(bad(format!(
            "unsupported scheme {other}:// (supported: s3://BUCKET/PREFIX for S3 or an \
             S3-compatible server, file:///ABSOLUTE/PATH for a local directory)"
        ))),
    }
}

/// `s3://` + `rest`.
fn s3(url: &str, rest: &str) -> std::result::Result<(Arc<dyn ObjectStore>, Path), String> {
    if rest.contains(['?', '#']) {
        return Err(
            "an s3:// URL takes no query or fragment (?…, #…): endpoint, region and \
                    credentials come from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and \
                    AWS_SECRET_ACCESS_KEY"
                .into(),
        );
    }
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err("no bucket: write s3://BUCKET/PREFIX".into());
    }
    if let Some(c) = bucket
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!(
            "bucket name {bucket:?} has {c:?}: bucket names are letters, digits, '.', '-' and '_' \
             (credentials go in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, not in the URL)"
        ));
    }
    let prefix = object_path(prefix)?;
    let builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(retry_config());
    let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
    let allow_http = builder
        .get_config_value(&AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp))
        .is_some_and(|v| v == "true");
    if let Some(endpoint) = &endpoint {
        if endpoint.starts_with("http://") && !allow_http {
            return Err(format!(
                "AWS_ENDPOINT_URL is plain http ({endpoint}): set AWS_ALLOW_HTTP=true to allow \
                 it, or use an https:// endpoint"
            ));
        }
        if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
            return Err(format!(
                "AWS_ENDPOINT_URL ({endpoint}) is not an http:// or https:// URL"
            ));
        }
    }
    let store = builder
        .build()
        .map_err(|e| format!("cannot configure S3 for {url}: {e}"))?;
    Ok((Arc::new(store), prefix))
}

/// `file://` + `rest`.
fn local(url: &str, rest: &str) -> std::result::Result<(Arc<dyn ObjectStore>, Path), String> {
    let path = rest.strip_prefix("localhost").unwrap_or(rest);
    if !path.starts_with('/') {
        return Err(format!(
            "a file URL names an absolute path on this machine: write file:///{} (three \
             slashes)",
            path.trim_start_matches('/')
        ));
    }
    let parsed = url::Url::parse(url).map_err(|e| format!("{e}"))?;
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err("a file:// URL takes no query or fragment (?…, #…)".into());
    }
    let dir = parsed
        .to_file_path()
        .map_err(|()| "not a local absolute path: write file:///ABSOLUTE/PATH".to_string())?;
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create the directory {}: {e}", dir.display()))?;
    let store = LocalFileSystem::new_with_prefix(&dir)
        .map_err(|e| format!("cannot use the directory {}: {e}", dir.display()))?;
    Ok((Arc::new(store), Path::default()))
}

/// The object path of an S3 prefix: `a/b/` and `a/b` are the same prefix.
fn object_path(prefix: &str) -> std::result::Result<Path, String> {
    let trimmed = prefix.trim_end_matches('/');
    Path::parse(trimmed).map_err(|e| {
        format!(
            "prefix {prefix:?} is not a valid object path ({e}): use '/'-separated names, no \
             empty parts ('//'), no '.' or '..'"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(url: &str) -> String {
        match store_from_url(url) {
            Err(Error::BadUrl { url: u, reason }) => {
                assert_eq!(u, url);
                reason
            }
            Err(other) => panic!("{url}: {other}"),
            Ok((_, prefix)) => panic!("{url}: accepted, prefix {prefix}"),
        }
    }

    #[test]
    fn s3_urls_give_bucket_and_prefix() {
        for (url, prefix) in [
            ("s3://bucket", ""),
            ("s3://bucket/", ""),
            ("s3://bucket/logs", "logs"),
            ("s3://my.bucket-1/logs/a/b/", "logs/a/b"),
        ] {
            let (store, got) = store_from_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(got.as_ref(), prefix, "{url}");
            assert!(store.to_string().contains("AmazonS3"), "{store}");
        }
    }

    #[test]
    fn file_urls_create_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a").join("b c");
        let url = format!("file://{}", dir.display()).replace(' ', "%20");
        let (_, prefix) = store_from_url(&url).unwrap();
        assert_eq!(prefix.as_ref(), "");
        assert!(dir.is_dir());
        let url = format!("file://localhost{}", dir.display());
        store_from_url(&url).unwrap();
    }

    #[test]
    fn bad_urls_say_what_to_write() {
        assert!(reason("/tmp/x").contains("file:///tmp/x"));
        assert!(reason("bucket/prefix").contains("s3://BUCKET/PREFIX"));
        assert!(reason("gs://bucket/p").contains("unsupported scheme gs://"));
        assert!(reason("http://host/p").contains("unsupported scheme"));
        assert!(reason("s3://").contains("no bucket"));
        assert!(reason("s3:///prefix").contains("no bucket"));
        assert!(reason("s3://user:pw@bucket/p").contains("bucket name"));
        assert!(reason("s3://bucket/a//b").contains("not a valid object path"));
        assert!(reason("s3://bucket/a/../b").contains("not a valid object path"));
        assert!(reason("s3://bucket/p?region=x").contains("no query"));
        assert!(reason("file://relative/dir").contains("three slashes"));
        assert!(reason("file:///tmp/x?y").contains("no query"));
    }

    #[test]
    fn an_unwritable_directory_is_a_bad_url() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let url = format!("file://{}/sub", file.display());
        assert!(reason(&url).contains("cannot create the directory"));
    }

    #[test]
    fn retries_are_bounded() {
        let config = retry_config();
        let mut worst = Duration::ZERO;
        let mut next = config.backoff.init_backoff;
        for _ in 0..config.max_retries {
            worst += next;
            next = (next * 2).min(config.backoff.max_backoff);
        }
        assert!(worst < Duration::from_secs(15), "{worst:?}");
        assert!(config.retry_timeout <= Duration::from_secs(15));
    }
}
