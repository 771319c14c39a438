//! seglog-ship: ships a seglog log to object storage, and restores and follows it from there.
//!
//! A log's sealed segments are immutable files, the unit Kafka's tiered storage, Neon's
//! safekeepers and SlateDB move to object storage: write-once objects plus a manifest. This
//! crate does that for seglog over any [`object_store::ObjectStore`] (S3 and S3-compatible
//! servers, GCS, Azure, local files):
//!
//! - [`Shipper`] uploads every sealed segment (and its hint) once, the frontier's segment up to
//!   the synced frontier in ranges, then a manifest naming them; deletes remote objects only
//!   once no manifest left names them (`shipper.rs`).
//! - [`restore`] rebuilds a log directory from the newest manifest (`restore.rs`).
//! - [`Follower`] keeps a read-only replica current as new manifests appear (`follow.rs`).
//!
//! The engine stays synchronous and free of HTTP: it gives this crate a listing of its files
//! under a lease and its synced frontier ([`seglog::Log::segment_files`]). See
//! `docs/design.md`, *Beyond one machine*, for what the remote copy guarantees.

mod error;
mod follow;
mod manifest;
mod mirror;
mod restore;
mod shipper;
mod upload;
mod url;

pub use error::{Error, Result};
pub use follow::Follower;
pub use manifest::{MANIFEST_FORMAT, Manifest, ObjectEntry, SegmentEntry, latest_manifest};
pub use object_store;
pub use restore::{RestoreReport, restore, restore_with_progress};
pub use shipper::{Progress, ShipOptions, ShipReport, Shipper};
pub use url::store_from_url;

#[cfg(test)]
mod tests;
