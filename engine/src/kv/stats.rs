//! `Log::stats`: counts describing a log, gathered from the append log, the index and the
//! compactor (each counter read on its own, so a snapshot under writes is approximate).

use crate::compaction::CompactionStats;

use super::Log;

/// Counts describing a log.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Live keys (keys whose current record is a put).
    pub keys: u64,
    /// Bytes of all records in the log (puts, tombstones, aborted records), headers included.
    pub bytes: u64,
    /// Bytes of the live keys' current records (puts; tombstones are not live data: they go
    /// once nothing older can come back, see docs/design.md section 3b).
    pub live_bytes: u64,
    /// Bytes of the other records (overwritten and removed values, tombstones, aborted
    /// records): what compaction reclaims, tombstones once they may be dropped.
    pub dead_bytes: u64,
    /// `live_bytes / bytes` (1.0 for an empty log).
    pub live_ratio: f64,
    /// Segments in the log.
    pub segments: u64,
    /// Size of each segment.
    pub segment_bytes: u64,
    /// Index memory in bytes (all tables currently reachable).
    pub index_bytes: u64,
    /// Index slots.
    pub index_capacity: u64,
    /// Times the index doubled since open.
    pub index_resizes: u64,
    /// Padding written at segment ends since open.
    pub padding_bytes: u64,
    /// Records aborted by panicking writers since open.
    pub aborted: u64,
    /// What compaction has done since open.
    pub compaction: CompactionStats,
    /// The last error the background thread met (a failed interval sync or hint write).
    pub background_error: Option<String>,
}

impl Log {
    /// Counts describing the log.
    pub fn stats(&self) -> Stats {
        let append = self.inner.log.stats();
        let index = self.inner.index.stats();
        let live_bytes = self.inner.live_bytes();
        let bytes = append.record_bytes;
        Stats {
            keys: index.live_keys as u64,
            bytes,
            live_bytes,
            dead_bytes: bytes.saturating_sub(live_bytes),
            live_ratio: if bytes == 0 {
                1.0
            } else {
                live_bytes as f64 / bytes as f64
            },
            segments: self.inner.log.segment_count(),
            segment_bytes: self.inner.log.segment_bytes(),
            index_bytes: index.memory_bytes as u64,
            index_capacity: index.capacity as u64,
            index_resizes: index.resizes,
            padding_bytes: append.padding_bytes,
            aborted: append.aborted,
            compaction: self.inner.compactor.stats(),
            background_error: self.inner.background_error.lock().clone(),
        }
    }
}
