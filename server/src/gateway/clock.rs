//! The gateway's one clock: monotonic milliseconds (rate-limit windows, cool-downs, call
//! durations) and wall time (quota periods, key expiry, when a usage row's minute is), read
//! through one injected value, as governor injects its clock. Tests hold a [`ManualClock`] and
//! move time instead of sleeping.
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub trait Clock: std::fmt::Debug + Send + Sync + 'static {
    /// Milliseconds since the clock started, never going back (below 2^44: half a millennium).
    fn now_ms(&self) -> u64;
    /// Unix milliseconds.
    fn unix_ms(&self) -> i64;
    /// Unix seconds.
    fn unix_secs(&self) -> i64 {
        self.unix_ms().div_euclid(1000)
    }
}

/// The machine's clocks: `Instant` for the monotonic reading, `SystemTime` for the wall.
#[derive(Debug)]
pub struct SystemClock(Instant);

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock(Instant::now())
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
    fn unix_ms(&self) -> i64 {
        app::ssr::now_ms() as i64
    }
}

/// A clock that moves only when told: both readings advance together by [`Self::advance`], and
/// the wall can be set on its own (to cross a month, say).
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<(AtomicU64, AtomicI64)>);

impl ManualClock {
    /// Starts at monotonic 0 and at `unix_ms` on the wall.
    pub fn at(unix_ms: i64) -> Self {
        ManualClock(Arc::new((AtomicU64::new(0), AtomicI64::new(unix_ms))))
    }
    pub fn advance(&self, ms: u64) {
        self.0 .0.fetch_add(ms, Ordering::SeqCst);
        self.0 .1.fetch_add(ms as i64, Ordering::SeqCst);
    }
    pub fn set_unix_ms(&self, unix_ms: i64) {
        self.0 .1.store(unix_ms, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::at(0)
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0 .0.load(Ordering::SeqCst)
    }
    fn unix_ms(&self) -> i64 {
        self.0 .1.load(Ordering::SeqCst)
    }
}

/// Shared by the gateway's parts.
pub type SharedClock = Arc<dyn Clock>;
