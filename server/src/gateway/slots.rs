//! An endpoint's cap on calls in flight at once (a self-hosted vLLM with N slots): a call takes
//! a slot before it is sent and holds it until its answer ends or the client leaves. A full
//! endpoint is skipped for the next one of the policy; when every one is full the call waits, in
//! a bounded queue for a bounded time, for the first slot to free on any of them
//! ([`wait_any`]), then answers 429. The upstream never sees more than its cap.
//!
//! Slots carry over across configuration reloads (like an endpoint's health), so calls in
//! flight keep counting; a changed cap is applied to the same slots: raised at once, lowered as
//! calls end (the slots over the new cap are retired instead of given back).
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Slots {
    sem: Arc<Semaphore>,
    cap: AtomicU32,
    /// Slots to retire as their calls end (the cap was lowered below what was in flight).
    owed: AtomicU32,
}

impl Slots {
    pub fn new(cap: u32) -> Arc<Self> {
        Arc::new(Slots { sem: Arc::new(Semaphore::new(cap as usize)), cap: AtomicU32::new(cap), owed: AtomicU32::new(0) })
    }

    /// Keeps these slots (and the calls holding them) under a new cap.
    pub fn resize(&self, cap: u32) {
        let old = self.cap.swap(cap, Ordering::SeqCst);
        if cap > old {
            let mut more = cap - old;
            // First cancel retirements still owed, then add slots.
            while more > 0 && self.owed.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |o| o.checked_sub(1)).is_ok() {
                more -= 1;
            }
            self.sem.add_permits(more as usize);
        } else if cap < old {
            let fewer = (old - cap) as usize;
            let free = self.sem.forget_permits(fewer);
            self.owed.fetch_add((fewer - free) as u32, Ordering::SeqCst);
        }
    }

    /// Slots free now.
    pub fn available(&self) -> usize {
        self.sem.available_permits()
    }

    /// A free slot now, if there is one.
    pub fn try_take(self: &Arc<Self>) -> Option<Slot> {
        let permit = self.sem.clone().try_acquire_owned().ok()?;
        Some(Slot { permit: Some(permit), slots: self.clone() })
    }

    async fn take(self: Arc<Self>) -> Option<Slot> {
        let permit = self.sem.clone().acquire_owned().await.ok()?;
        Some(Slot { permit: Some(permit), slots: self })
    }
}

/// A call's place on an endpoint, given back when dropped.
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    slots: Arc<Slots>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(p) = self.permit.take() {
            if self.slots.owed.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |o| o.checked_sub(1)).is_ok() {
                p.forget();
            }
        }
    }
}

/// Why no slot came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSlot {
    /// The queue already holds its bound of waiting calls.
    QueueFull { waiting: usize },
    /// None freed within the wait.
    TimedOut { waited: Duration },
}

/// Waits for the first slot to free on any of `candidates` (index, slots), at most `wait`, as
/// one of at most `max_waiting` calls waiting on this model (`waiting` counts them).
pub async fn wait_any(
    candidates: &[(usize, Arc<Slots>)],
    waiting: &AtomicUsize,
    max_waiting: usize,
    wait: Duration,
) -> Result<(usize, Slot), NoSlot> {
    struct Leave<'a>(&'a AtomicUsize);
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let ahead = waiting.fetch_add(1, Ordering::SeqCst);
    let _leave = Leave(waiting);
    if ahead >= max_waiting {
        return Err(NoSlot::QueueFull { waiting: ahead });
    }
    let takes = candidates.iter().map(|(i, s)| {
        let i = *i;
        Box::pin(async move { (i, s.clone().take().await) })
    });
    match tokio::time::timeout(wait, futures_util::future::select_all(takes)).await {
        Ok(((i, Some(slot)), _, _)) => Ok((i, slot)),
        // A semaphore is never closed; should one be, the call is refused like a timeout.
        Ok(((_, None), _, _)) | Err(_) => Err(NoSlot::TimedOut { waited: wait }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lowered_cap_retires_slots_as_calls_end_and_a_raised_one_adds_them() {
        let s = Slots::new(3);
        let held: Vec<Slot> = (0..3).map(|_| s.try_take().unwrap()).collect();
        assert!(s.try_take().is_none(), "3 of 3");
        s.resize(1);
        drop(held);
        let one = s.try_take().expect("one slot under the new cap");
        assert!(s.try_take().is_none(), "the two others were retired as their calls ended");
        s.resize(2);
        let two = s.try_take().expect("raised to 2");
        assert!(s.try_take().is_none());
        drop((one, two));
    }

    #[tokio::test]
    async fn waiting_takes_the_first_slot_to_free_or_gives_up() {
        let (a, b) = (Slots::new(1), Slots::new(1));
        let (ha, hb) = (a.try_take().unwrap(), b.try_take().unwrap());
        let waiting = AtomicUsize::new(0);
        let both = [(0, a.clone()), (1, b.clone())];
        assert_eq!(
            wait_any(&both, &waiting, 8, Duration::from_millis(30)).await.err(),
            Some(NoSlot::TimedOut { waited: Duration::from_millis(30) })
        );
        let frees_b = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(hb);
        };
        let (got, ()) = tokio::join!(wait_any(&both, &waiting, 8, Duration::from_secs(5)), frees_b);
        assert_eq!(got.map(|(i, _)| i).ok(), Some(1), "b freed first");
        assert_eq!(wait_any(&both, &waiting, 0, Duration::from_secs(5)).await.err(), Some(NoSlot::QueueFull { waiting: 0 }));
        assert_eq!(waiting.load(Ordering::SeqCst), 0, "nobody left waiting");
        drop(ha);
    }
}
