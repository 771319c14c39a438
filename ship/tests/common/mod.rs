//! Helpers shared by the ship tests (each test file includes this module with `mod common;`).

#![allow(dead_code)] // each test file uses some of these

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Kills the test process if it is still alive after `limit`: a test that could hang fails
/// instead, with `what` and the limit in the message. Disarmed on drop.
#[must_use = "the watchdog is disarmed when dropped"]
pub struct Watchdog {
    done: Arc<AtomicBool>,
}

/// Arms a [`Watchdog`].
pub fn watchdog(what: &'static str, limit: Duration) -> Watchdog {
    let done = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&done);
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            let deadline = std::time::Instant::now() + limit;
            while std::time::Instant::now() < deadline {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !flag.load(Ordering::SeqCst) {
                eprintln!(
                    "watchdog: {what} still running after {limit:?}; killing the test process"
                );
                std::process::exit(101);
            }
        })
        .expect("the watchdog thread");
    Watchdog { done }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
    }
}

/// A number from the environment variable `name`, or `default` (sizes of a test: CI's defaults
/// are small, a longer run sets them higher).
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
