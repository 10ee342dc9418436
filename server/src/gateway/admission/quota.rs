//! Quotas: a workspace's or a key's budget of tokens and/or requests per calendar day or month
//! (UTC), across every model. A call is admitted only while what the period spent plus what
//! calls in flight reserved is below each budget that applies (the key's and its
//! workspace's); it reserves one request and its token estimate, and settles to its real usage
//! when it ends, like a token rule (see [`QuotaHold`]).
//!
//! What the period spent comes from the `quota_spent` ledger, which every gateway adds its
//! calls to after each usage flush ([`flush`]), plus what this process counted since (not yet
//! written). So a restart, or a replica added mid-period, starts from what was spent. Replicas
//! sharing Redis check quotas there, with the rules in one script (one count per budget and
//! period, seeded from [`QuotaCheck::shared`]'s figures where Redis lacks it), and count each
//! call here too ([`record`]): for the ledger, and for when Redis cannot answer. Without Redis
//! each replica learns of the others' calls at its next flush (every few seconds), so a quota
//! can be overspent by at most what the other replicas admit within one flush interval.
use super::hold::Consumed;
use app::days::Period;
use app::ssr::entities::quota;
use app::types::RuleTarget;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, Statement, TransactionSession, TransactionTrait};
use std::sync::Arc;

/// A counter's identity: a quota means the same after a reload if its subject and period do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuotaKey {
    pub target: RuleTarget,
    pub subject_id: i64,
    pub period: Period,
}

/// One subject's quota as the snapshot serves it.
#[derive(Clone, Debug)]
pub struct QuotaCheck {
    pub key: QuotaKey,
    pub tokens: Option<u64>,
    pub requests: Option<u64>,
    counter: Arc<QuotaCounter>,
}

#[derive(Debug, Default)]
pub struct QuotaCounter {
    state: Mutex<Spent>,
}

#[derive(Debug, Default)]
struct Spent {
    /// The period these figures are of (its first Unix second).
    period_start: i64,
    /// The ledger's figures at the last flush (every gateway's calls written by then).
    ledger_tokens: u64,
    ledger_requests: u64,
    /// This process's calls since, not yet in the ledger.
    new_tokens: u64,
    new_requests: u64,
    /// Token estimates of this process's calls in flight.
    reserved: u64,
}

impl Spent {
    /// A new period starts from nothing.
    fn at(&mut self, period_start: i64) -> &mut Self {
        if self.period_start != period_start {
            *self = Spent { period_start, reserved: self.reserved, ..Default::default() };
        }
        self
    }
    fn tokens(&self) -> u64 {
        self.ledger_tokens + self.new_tokens + self.reserved
    }
    fn requests(&self) -> u64 {
        self.ledger_requests + self.new_requests
    }
}

/// What a quota's counter counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    Tokens,
    Requests,
}

/// A spent quota: what the 429 says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    pub target: RuleTarget,
    pub period: Period,
    /// "tokens" or "requests".
    pub what: &'static str,
    pub budget: u64,
    /// When the period turns (Unix second).
    pub resets_at: i64,
    /// Seconds until then (`Retry-After`).
    pub retry_after_secs: i64,
}

impl QuotaCheck {
    pub fn counter(&self) -> &Arc<QuotaCounter> {
        &self.counter
    }

    /// The refusal this quota's `budget` gives at `now_secs`.
    pub fn exceeded(&self, now_secs: i64, budget: Budget) -> QuotaExceeded {
        let (what, amount) = match budget {
            Budget::Tokens => ("tokens", self.tokens),
            Budget::Requests => ("requests", self.requests),
        };
        let resets_at = self.key.period.end(now_secs);
        QuotaExceeded {
            target: self.key.target,
            period: self.key.period,
            what,
            budget: amount.unwrap_or(0),
            resets_at,
            retry_after_secs: (resets_at - now_secs).max(1),
        }
    }

    /// A quota of `tokens` and/or `requests` for `key`, starting from nothing spent.
    pub fn new(key: QuotaKey, tokens: Option<u64>, requests: Option<u64>) -> Self {
        QuotaCheck { key, tokens, requests, counter: Arc::default() }
    }

    /// Tokens that calls in flight hold reserved in it.
    pub fn reserved(&self) -> u64 {
        self.counter.state.lock().reserved
    }

    /// What the period holding `now_secs` spent, as far as this process knows (the ledger and
    /// its own calls since, not what calls in flight reserve): (period start, tokens, requests).
    pub fn spent(&self, now_secs: i64) -> (i64, u64, u64) {
        let period_start = self.key.period.start(now_secs);
        let mut st = self.counter.state.lock();
        let st = st.at(period_start);
        (period_start, st.ledger_tokens + st.new_tokens, st.ledger_requests + st.new_requests)
    }
}

/// The quotas a call reserved in, with its estimate: given back when it ends (the real usage
/// counted, [`QuotaHold::end`]) or is dropped (the estimate counted).
#[derive(Default, Debug)]
pub struct QuotaHold {
    held: smallvec::SmallVec<[(Arc<QuotaCounter>, u64); 2]>,
}

impl QuotaHold {
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    pub fn end(&mut self, consumed: Consumed) {
        for (counter, reserved) in self.held.drain(..) {
            let mut st = counter.state.lock();
            st.reserved = st.reserved.saturating_sub(reserved);
            match consumed.tokens(reserved) {
                Some(tokens) => st.new_tokens += tokens,
                None => st.new_requests = st.new_requests.saturating_sub(1),
            }
        }
    }
}

impl Drop for QuotaHold {
    fn drop(&mut self) {
        self.end(Consumed::Estimate);
    }
}

/// Checks the call against `quotas` (at most the key's and its workspace's) at wall time
/// `now_secs` and, if every one has room, reserves a request and `estimate` tokens in each
/// (in the returned hold, which the call's end settles). A refusal reserves nothing.
pub fn check(quotas: &[&QuotaCheck], now_secs: i64, estimate: u64) -> Result<QuotaHold, QuotaExceeded> {
    let mut held = QuotaHold::default();
    reserve(quotas, now_secs, estimate, &mut held, true)?;
    Ok(held)
}

/// Reserves as [`check`] does without checking: a call Redis admitted is counted here too, for
/// the ledger and for when Redis cannot answer.
pub fn record(quotas: &[&QuotaCheck], now_secs: i64, estimate: u64) -> QuotaHold {
    let mut held = QuotaHold::default();
    let _always = reserve(quotas, now_secs, estimate, &mut held, false);
    held
}

fn reserve(quotas: &[&QuotaCheck], now_secs: i64, estimate: u64, held: &mut QuotaHold, enforce: bool) -> Result<(), QuotaExceeded> {
    // Locked in the order given (the key's, then the workspace's: the same for every call, and a
    // counter is only ever one subject's), so two calls never wait on each other in a cycle.
    let mut locked: smallvec::SmallVec<[parking_lot::MutexGuard<'_, Spent>; 2]> = smallvec::SmallVec::new();
    for q in quotas {
        let mut st = q.counter.state.lock();
        st.at(q.key.period.start(now_secs));
        if enforce {
            let over = |budget: Option<u64>, used: u64| budget.is_some_and(|b| used >= b);
            if over(q.requests, st.requests()) {
                return Err(q.exceeded(now_secs, Budget::Requests));
            }
            if over(q.tokens, st.tokens()) {
                return Err(q.exceeded(now_secs, Budget::Tokens));
            }
        }
        locked.push(st);
    }
    for (q, st) in quotas.iter().zip(locked.iter_mut()) {
        st.new_requests += 1;
        st.reserved += estimate;
        held.held.push((q.counter.clone(), estimate));
    }
    Ok(())
}

/// Builds the snapshot's quotas: counters carried over from `previous` for the same subject
/// and period, new ones starting from the ledger's figures of the period holding `now_secs`.
pub async fn load(
    db: &impl ConnectionTrait,
    previous: &FxHashMap<QuotaKey, Arc<QuotaCounter>>,
    now_secs: i64,
) -> Result<FxHashMap<(RuleTarget, i64), QuotaCheck>, DbErr> {
    let quotas = quota::Entity::find().all(db).await?;
    let mut out = FxHashMap::default();
    if quotas.is_empty() {
        return Ok(out);
    }
    let ledger = ledger(db, now_secs).await?;
    for q in quotas {
        let (Some((target, subject_id)), Some(period)) = (q.subject(), Period::parse(&q.period)) else { continue };
        let key = QuotaKey { target, subject_id, period };
        let counter = previous.get(&key).cloned().unwrap_or_else(|| {
            let start = period.start(now_secs);
            let (tokens, requests) = ledger.get(&(target, subject_id, start)).copied().unwrap_or_default();
            Arc::new(QuotaCounter {
                state: Mutex::new(Spent { period_start: start, ledger_tokens: tokens, ledger_requests: requests, ..Default::default() }),
            })
        });
        let budget = |v: Option<i64>| v.map(|v| v.max(0) as u64);
        out.insert((target, subject_id), QuotaCheck { key, tokens: budget(q.tokens), requests: budget(q.requests), counter });
    }
    Ok(out)
}

/// The ledger's figures of the current day and month, as counts.
async fn ledger(db: &impl ConnectionTrait, now_secs: i64) -> Result<FxHashMap<(RuleTarget, i64, i64), (u64, u64)>, DbErr> {
    let rows = app::ssr::services::quotas::ledger(db, now_secs, None).await?;
    Ok(rows.into_iter().map(|(k, (t, r))| (k, (t.max(0) as u64, r.max(0) as u64))).collect())
}

/// Adds what this process counted since the last flush to the ledger (one transaction), then
/// reads the ledger back: each counter then holds every gateway's flushed calls plus its own
/// since. On failure the counts stay in memory for the next flush.
pub async fn flush<C: ConnectionTrait + TransactionTrait>(db: &C, quotas: &[QuotaCheck], now_secs: i64) -> Result<(), DbErr> {
    if quotas.is_empty() {
        return Ok(());
    }
    // (counter, target, subject, period start, tokens, requests) taken out of memory.
    let mut taken = Vec::new();
    for q in quotas {
        let mut st = q.counter.state.lock();
        if st.new_tokens > 0 || st.new_requests > 0 {
            taken.push((
                q.counter.clone(),
                q.key.target,
                q.key.subject_id,
                st.period_start,
                std::mem::take(&mut st.new_tokens),
                std::mem::take(&mut st.new_requests),
            ));
        }
    }
    let written = async {
        if taken.is_empty() {
            // Nothing new here: no write transaction, just the read-back below.
            return Ok(());
        }
        let txn = db.begin().await?;
        let backend = txn.get_database_backend();
        for (_, target, subject, start, tokens, requests) in &taken {
            // Figures of our own making: numbers, and a target from a fixed set.
            txn.execute_raw(Statement::from_string(
                backend,
                format!(
                    "INSERT INTO quota_spent (target, subject_id, period_start, tokens, requests) VALUES ('{}', {subject}, {start}, {tokens}, {requests}) \
                     ON CONFLICT (target, subject_id, period_start) DO UPDATE SET tokens = quota_spent.tokens + excluded.tokens, requests = quota_spent.requests + excluded.requests",
                    target.as_str()
                ),
            ))
            .await?;
        }
        txn.commit().await
    }
    .await;
    if let Err(e) = written {
        for (counter, _, _, start, tokens, requests) in taken {
            let mut st = counter.state.lock();
            if st.period_start == start {
                st.new_tokens += tokens;
                st.new_requests += requests;
            }
        }
        return Err(e);
    }
    let ledger = ledger(db, now_secs).await?;
    for q in quotas {
        let mut st = q.counter.state.lock();
        let st = st.at(q.key.period.start(now_secs));
        let (tokens, requests) = ledger.get(&(q.key.target, q.key.subject_id, st.period_start)).copied().unwrap_or_default();
        st.ledger_tokens = tokens;
        st.ledger_requests = requests;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(target: RuleTarget, subject_id: i64, tokens: Option<u64>, requests: Option<u64>) -> QuotaCheck {
        QuotaCheck { key: QuotaKey { target, subject_id, period: Period::Month }, tokens, requests, counter: Arc::default() }
    }

    #[test]
    fn a_quota_refuses_once_spent_plus_reserved_reach_it_and_is_whole_again_next_month() {
        let dec_2 = app::days::parse_day("2026-12-02").unwrap() * 86_400;
        let key = q(RuleTarget::ApiKey, 1, Some(1_000), None);
        let ws = q(RuleTarget::Workspace, 1, None, Some(3));
        let a = check(&[&key, &ws], dec_2, 600).unwrap();
        let b = check(&[&key, &ws], dec_2, 600).expect("600 reserved < 1,000");
        let e = check(&[&key, &ws], dec_2, 1).unwrap_err();
        assert_eq!((e.target, e.what, e.budget), (RuleTarget::ApiKey, "tokens", 1_000));
        assert_eq!(e.resets_at, app::days::parse_day("2027-01-01").unwrap() * 86_400);
        assert_eq!(a.held.len() + b.held.len(), 4, "a refusal reserves nothing");
        // Both settle small: 2 requests and 30 tokens spent; the workspace allows one more call.
        for mut h in [a, b] {
            h.end(Consumed::Tokens(15));
        }
        let mut c = check(&[&key, &ws], dec_2, 1).unwrap();
        let e = check(&[&key, &ws], dec_2, 1).unwrap_err();
        assert_eq!((e.target, e.what, e.budget), (RuleTarget::Workspace, "requests", 3));
        // A call that never ran gives its request back.
        c.end(Consumed::Nothing);
        let _d = check(&[&key, &ws], dec_2, 1).expect("the cancelled call's request is free again");
        assert!(check(&[&key, &ws], dec_2, 1).is_err());
        let jan_1 = app::days::parse_day("2027-01-01").unwrap() * 86_400;
        let _e = check(&[&key, &ws], jan_1, 1).expect("a new month");
    }
}
