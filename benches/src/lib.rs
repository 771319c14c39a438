//! What the criterion benches and `seglog bench` share.
//!
//! - [`workload`]: the keys, values, random streams and the thread runner every bench uses, so
//!   every subject is driven by the same code and the same bytes.
//! - [`store`]: the [`store::KvStore`] trait the subjects implement, and seglog's adapter.
//! - [`seed_design`]: the seed's warm tier rebuilt as the baseline (a `parking_lot::RwLock<Vec<u8>>`
//!   of content beside a `DashMap<String, u64>` index and a fixed mmap of embedding blocks, with
//!   the seed's `fetch_add` fix for block offsets).
//! - [`floor`]: `fetch_add` + `memcpy` into one mmap with no index: how fast a write or read of
//!   the same bytes can physically be on this machine.
//! - [`scenarios`]: the seed's five concurrent scenarios, run by `seglog bench`.
//! - [`alloc`]: a counting global allocator for the bytes-per-key report.
//! - [`ycsb`]: the YCSB core workloads A, B and C, uniform and Zipfian.
//!
//! The peers (papaya, scc, dashmap, crossbeam-skiplist, fjall, redb) live with the criterion
//! benches (`benches/peers/`), so the CLI does not compile them.

pub mod alloc;
pub mod floor;
pub mod scenarios;
pub mod seed_design;
pub mod store;
pub mod workload;
pub mod ycsb;
