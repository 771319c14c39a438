//! seglog: a lock-free segmented mmap append log with an epoch-reclaimed ID index.

#![deny(unsafe_op_in_unsafe_fn)]

pub(crate) mod sync;
