//! Failed logins, throttled per account and per client address with exponential backoff.
//!
//! - After [`ACCOUNT_FREE`] failures in a row an account is locked for 1 s, each further one
//!   doubling it (2 s, 4 s …) up to [`ACCOUNT_MAX_LOCK`]: guessing one account's password is slowed to one
//!   try a minute, while a real user is never locked out for longer than that. A client address
//!   that has logged in to the account before (a "known device") is not held back by the
//!   account's lock, so an attacker hammering a colleague's account does not lock them out.
//! - A client address gets [`ADDRESS_FREE`] failures (across every account: one source trying
//!   many names), then backoff up to [`ADDRESS_MAX_LOCK`].
//! - An attempt is counted as a failure when it is admitted, before its password is hashed, and
//!   given back if it succeeds: so the bounds hold for any interleaving, a burst of parallel
//!   attempts included (counted only after the hash, every attempt arriving while the first
//!   ones were hashing would pass). Attempts refused during a lock are not counted and cost no
//!   password hash; failures are forgotten [`FORGET_AFTER`] after the last one, and a success
//!   clears its account's count.
//!
//! In memory, per process, bounded: at most [`MAX_ENTRIES`] of each kind (the stalest entry
//! makes room). Behind a load balancer each console process throttles on its own.
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

pub const ACCOUNT_FREE: u32 = 5;
pub const ACCOUNT_MAX_LOCK: u64 = 60_000;
pub const ADDRESS_FREE: u32 = 20;
pub const ADDRESS_MAX_LOCK: u64 = 15 * 60_000;
pub const FORGET_AFTER: u64 = 15 * 60_000;
/// How long an address that logged in stays a known device of the account.
pub const KNOWN_FOR: u64 = 30 * 24 * 3_600_000;
pub const MAX_ENTRIES: usize = 100_000;

#[derive(Clone, Copy, Debug, Default)]
struct Failures {
    count: u32,
    last_ms: u64,
    locked_until_ms: u64,
}

impl Failures {
    /// Gives back one counted attempt (it succeeded), and the lock it may have set.
    fn give_back(&mut self, free: u32, max_lock: u64) {
        self.count = self.count.saturating_sub(1);
        self.locked_until_ms = if self.count >= free { self.last_ms + (1000u64 << (self.count - free).min(20)).min(max_lock) } else { 0 };
    }

    fn fail(&mut self, now: u64, free: u32, max_lock: u64) {
        if now.saturating_sub(self.last_ms) > FORGET_AFTER {
            *self = Failures::default();
        }
        self.count += 1;
        self.last_ms = now;
        if self.count >= free {
            let exp = (self.count - free).min(20);
            self.locked_until_ms = now + (1000u64 << exp).min(max_lock);
        }
    }
}

#[derive(Default)]
struct State {
    accounts: HashMap<String, Failures>,
    addresses: HashMap<IpAddr, Failures>,
    known: HashMap<(String, IpAddr), u64>,
}

#[derive(Default)]
pub struct LoginThrottle {
    state: Mutex<State>,
}

/// The account key: usernames are matched as typed after trimming, but counted case-folded
/// and bounded so that variants of one name share a count and a long name costs no memory.
fn account_key(username: &str) -> String {
    username.trim().chars().take(64).flat_map(char::to_lowercase).collect()
}

fn make_room<K: Clone + Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>, now: u64, last: impl Fn(&V) -> u64, keep_for: u64) {
    if map.len() < MAX_ENTRIES {
        return;
    }
    map.retain(|_, v| now.saturating_sub(last(v)) <= keep_for);
    if map.len() >= MAX_ENTRIES {
        if let Some(k) = map.iter().min_by_key(|(_, v)| last(v)).map(|(k, _)| k.clone()) {
            map.remove(&k);
        }
    }
}

impl LoginThrottle {
    /// Milliseconds to wait before this login may be tried, or `None` to go ahead (nothing is
    /// counted: see [`Self::admit`]).
    pub fn check(&self, username: &str, ip: Option<IpAddr>, now: u64) -> Option<u64> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Self::wait(&st, &account_key(username), ip, now)
    }

    fn wait(st: &State, key: &str, ip: Option<IpAddr>, now: u64) -> Option<u64> {
        let known = ip.is_some_and(|ip| st.known.get(&(key.to_owned(), ip)).is_some_and(|&t| now.saturating_sub(t) <= KNOWN_FOR));
        let account = if known { 0 } else { st.accounts.get(key).map_or(0, |f| f.locked_until_ms) };
        let address = ip.and_then(|ip| st.addresses.get(&ip)).map_or(0, |f| f.locked_until_ms);
        let until = account.max(address);
        (until > now).then(|| until - now)
    }

    /// Admits a login attempt and counts it as a failure at once, in one lock; `Err(ms)` to wait
    /// (nothing counted). An attempt that then succeeds is given back by [`Self::succeeded`].
    pub fn admit(&self, username: &str, ip: Option<IpAddr>, now: u64) -> Result<(), u64> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let key = account_key(username);
        if let Some(wait) = Self::wait(&st, &key, ip, now) {
            return Err(wait);
        }
        Self::count(&mut st, key, ip, now);
        Ok(())
    }

    /// Counts a failure without admitting anything (what [`Self::admit`] counts).
    #[cfg(test)]
    fn failed(&self, username: &str, ip: Option<IpAddr>, now: u64) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Self::count(&mut st, account_key(username), ip, now);
    }

    fn count(st: &mut State, key: String, ip: Option<IpAddr>, now: u64) {
        if !st.accounts.contains_key(&key) {
            make_room(&mut st.accounts, now, |f| f.last_ms, FORGET_AFTER);
        }
        st.accounts.entry(key).or_default().fail(now, ACCOUNT_FREE, ACCOUNT_MAX_LOCK);
        if let Some(ip) = ip {
            if !st.addresses.contains_key(&ip) {
                make_room(&mut st.addresses, now, |f| f.last_ms, FORGET_AFTER);
            }
            st.addresses.entry(ip).or_default().fail(now, ADDRESS_FREE, ADDRESS_MAX_LOCK);
        }
    }

    /// A successful login (admitted by [`Self::admit`]): the account's failures are forgotten,
    /// the attempt is given back to the address, and the address becomes one of the account's
    /// known devices. (The address's earlier failures stay: logging in to one's own account
    /// between guesses at others must not reset them.)
    pub fn succeeded(&self, username: &str, ip: Option<IpAddr>, now: u64) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let key = account_key(username);
        st.accounts.remove(&key);
        if let Some(ip) = ip {
            if let Some(f) = st.addresses.get_mut(&ip) {
                f.give_back(ADDRESS_FREE, ADDRESS_MAX_LOCK);
            }
            if !st.known.contains_key(&(key.clone(), ip)) {
                make_room(&mut st.known, now, |t| *t, KNOWN_FOR);
            }
            st.known.insert((key, ip), now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn an_account_backs_off_after_its_free_failures_and_the_lock_is_bounded() {
        let t = LoginThrottle::default();
        let a = ip("10.0.0.1");
        let mut now = 1_000;
        for _ in 0..ACCOUNT_FREE - 1 {
            assert_eq!(t.admit("alice", a, now), Ok(()));
        }
        assert_eq!(t.admit("Alice ", a, now), Ok(())); // the same account, however it is typed
        assert_eq!(t.admit("alice", a, now), Err(1000), "refused, and not counted");
        assert_eq!(t.check("alice", a, now), Some(1000));
        assert_eq!(t.check("alice", a, now + 1000), None, "the lock ends");
        // Each further failure doubles it, up to the bound.
        let mut waits = vec![];
        for _ in 0..10 {
            now += 100_000;
            // Within FORGET_AFTER of the last failure: the count goes on.
            t.failed("alice", a, now);
            waits.push(t.check("alice", a, now).unwrap());
        }
        assert_eq!(waits, [2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000, 60000, 60000]);
        // Failures are forgotten a while after the last.
        assert_eq!(t.check("alice", a, now + ACCOUNT_MAX_LOCK), None);
        t.failed("alice", a, now + FORGET_AFTER + 1);
        assert_eq!(t.check("alice", a, now + FORGET_AFTER + 1), None, "counting starts over");
    }

    #[test]
    fn a_known_device_is_not_locked_out_by_someone_else_hammering_the_account() {
        let t = LoginThrottle::default();
        t.succeeded("bob", ip("10.0.0.2"), 0);
        for i in 0..50 {
            t.failed("bob", ip("203.0.113.9"), 10 + i);
        }
        assert!(t.check("bob", ip("203.0.113.9"), 100).is_some());
        assert!(t.check("bob", ip("198.51.100.1"), 100).is_some(), "a new address waits too");
        assert_eq!(t.check("bob", ip("10.0.0.2"), 100), None, "bob's own machine does not");
    }

    #[test]
    fn one_address_trying_many_accounts_is_throttled_and_a_success_does_not_reset_it() {
        let t = LoginThrottle::default();
        let a = ip("203.0.113.7");
        for i in 0..ADDRESS_FREE - 1 {
            assert_eq!(t.admit(&format!("user{i}"), a, 0), Ok(()));
        }
        // Mallory logs in to her own account: that attempt is given back, the others stay.
        assert_eq!(t.admit("mallory", a, 0), Ok(()));
        t.succeeded("mallory", a, 0);
        assert_eq!(t.admit("user-last", a, 0), Ok(()));
        assert_eq!(t.check("someone-new", a, 0), Some(1000));
        assert_eq!(t.check("someone-new", ip("192.0.2.1"), 0), None, "other addresses are not affected");
    }

    #[test]
    fn a_parallel_burst_is_bounded_as_a_sequence_is() {
        let t = std::sync::Arc::new(LoginThrottle::default());
        let a = ip("203.0.113.8");
        // 40 threads admit wrong passwords for one account at once, and 60 for unknown names
        // from one address: the hash happens after admission, so only what admission lets
        // through is hashed.
        let one = |name: String| {
            let t = t.clone();
            std::thread::spawn(move || t.admit(&name, a, 0).is_ok())
        };
        let account: usize = (0..40).map(|_| one("carol".into())).collect::<Vec<_>>().into_iter().map(|h| h.join().unwrap() as usize).sum();
        assert_eq!(account, ACCOUNT_FREE as usize, "one account: its free tries, then none");
        let t2 = std::sync::Arc::new(LoginThrottle::default());
        let names: usize = (0..60)
            .map(|i| {
                let t = t2.clone();
                std::thread::spawn(move || t.admit(&format!("nobody{i}"), a, 0).is_ok())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap() as usize)
            .sum();
        assert_eq!(names, ADDRESS_FREE as usize, "one address: its free tries across names");
    }

    #[test]
    fn memory_is_bounded() {
        let t = LoginThrottle::default();
        for i in 0..(MAX_ENTRIES + 10) {
            t.failed(&format!("u{i}"), None, i as u64);
        }
        assert_eq!(t.state.lock().unwrap().accounts.len(), MAX_ENTRIES);
    }
}
