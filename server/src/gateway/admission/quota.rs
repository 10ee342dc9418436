//! Quotas: a workspace's or a key's budget of tokens, requests and/or money per calendar day or
//! month (UTC), across every model. A call is admitted only while what the period spent plus
//! what calls in flight reserved is below each budget that applies (the key's and its
//! workspace's); it reserves one request, its token estimate and that estimate's cost at its
//! model's prices, and settles to its real usage and cost when it ends, like a token rule (see
//! [`QuotaHold`]). So a money budget overshoots by at most what the calls in flight when it
//! filled cost beyond their reservations, and the last admitted call's reservation.
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
    pub spend: Option<Money>,
    counter: Arc<QuotaCounter>,
}

/// A budget in money.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Money {
    /// Nano-units of `currency`.
    pub nanos: u64,
    /// What it does with a call to a model without a price in force.
    pub unpriced: Unpriced,
    pub currency: Arc<str>,
    /// Percents of it at which an alert is raised, once per period, ascending.
    pub alerts: Arc<[u16]>,
}

/// What a money budget does with calls to a model that has no price in force: their cost is
/// unknown, never taken as 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Unpriced {
    /// Refused (403): the budget cannot tell what they cost.
    #[default]
    Refuse,
    /// Let through, uncounted in the budget (their usage rows say their cost is unknown).
    Pass,
}

impl Unpriced {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "refuse" => Some(Unpriced::Refuse),
            "pass" => Some(Unpriced::Pass),
            _ => None,
        }
    }
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
    ledger_nanos: u64,
    /// This process's calls since, not yet in the ledger.
    new_tokens: u64,
    new_requests: u64,
    new_nanos: u64,
    /// Token estimates of this process's calls in flight, and their cost.
    reserved: u64,
    reserved_nanos: u64,
    /// The highest alert threshold known to be recorded in this period.
    alerted: u16,
}

impl Spent {
    /// A new period starts from nothing.
    fn at(&mut self, period_start: i64) -> &mut Self {
        if self.period_start != period_start {
            *self = Spent { period_start, reserved: self.reserved, reserved_nanos: self.reserved_nanos, ..Default::default() };
        }
        self
    }
    fn tokens(&self) -> u64 {
        self.ledger_tokens + self.new_tokens + self.reserved
    }
    fn requests(&self) -> u64 {
        self.ledger_requests + self.new_requests
    }
    fn nanos(&self) -> u64 {
        self.ledger_nanos + self.new_nanos + self.reserved_nanos
    }
}

/// What a quota's counter counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    Tokens,
    Requests,
    /// Money, nano-units.
    Spend,
}

/// A spent quota: what the 429 says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    pub target: RuleTarget,
    pub period: Period,
    /// What ran out.
    pub budget_of: Budget,
    pub budget: u64,
    /// When the period turns (Unix second).
    pub resets_at: i64,
    /// The currency of a money budget.
    pub currency: Option<Arc<str>>,
    /// Seconds until then (`Retry-After`).
    pub retry_after_secs: i64,
}

impl QuotaCheck {
    pub fn counter(&self) -> &Arc<QuotaCounter> {
        &self.counter
    }

    /// The refusal this quota's `budget` gives at `now_secs`.
    pub fn exceeded(&self, now_secs: i64, budget: Budget) -> QuotaExceeded {
        let amount = match budget {
            Budget::Tokens => self.tokens,
            Budget::Requests => self.requests,
            Budget::Spend => self.spend.as_ref().map(|m| m.nanos),
        };
        let resets_at = self.key.period.end(now_secs);
        QuotaExceeded {
            target: self.key.target,
            period: self.key.period,
            budget_of: budget,
            budget: amount.unwrap_or(0),
            resets_at,
            retry_after_secs: (resets_at - now_secs).max(1),
            currency: self.spend.as_ref().map(|m| m.currency.clone()),
        }
    }

    /// A quota of `tokens` and/or `requests` for `key`, starting from nothing spent.
    pub fn new(key: QuotaKey, tokens: Option<u64>, requests: Option<u64>) -> Self {
        QuotaCheck { key, tokens, requests, spend: None, counter: Arc::default() }
    }

    /// With a budget in money.
    pub fn with_spend(mut self, money: Money) -> Self {
        self.spend = Some(money);
        self
    }

    /// Whether it refuses calls that cannot be priced.
    pub fn refuses_unpriced(&self) -> bool {
        self.spend.as_ref().is_some_and(|m| m.unpriced == Unpriced::Refuse)
    }

    /// Tokens that calls in flight hold reserved in it.
    pub fn reserved(&self) -> u64 {
        self.counter.state.lock().reserved
    }

    /// Money that calls in flight hold reserved in it.
    pub fn reserved_nanos(&self) -> u64 {
        self.counter.state.lock().reserved_nanos
    }

    /// What the period holding `now_secs` spent, as far as this process knows (the ledger and
    /// its own calls since, not what calls in flight reserve).
    pub fn spent(&self, now_secs: i64) -> SpentFigures {
        let period_start = self.key.period.start(now_secs);
        let mut st = self.counter.state.lock();
        let st = st.at(period_start);
        SpentFigures {
            period_start,
            tokens: st.ledger_tokens + st.new_tokens,
            requests: st.ledger_requests + st.new_requests,
            nanos: st.ledger_nanos + st.new_nanos,
        }
    }
}

impl QuotaCheck {
    /// The alert thresholds of its money budget that what the period spent (as far as this
    /// process knows: the ledger and its own calls since) has reached and that are not known
    /// to be recorded, ascending.
    pub fn crossed(&self, now_secs: i64) -> smallvec::SmallVec<[u16; 4]> {
        let Some(m) = self.spend.as_ref().filter(|m| !m.alerts.is_empty() && m.nanos > 0) else { return Default::default() };
        let mut st = self.counter.state.lock();
        let st = st.at(self.key.period.start(now_secs));
        let percent = u128::from(st.ledger_nanos + st.new_nanos) * 100 / u128::from(m.nanos);
        m.alerts.iter().copied().filter(|&t| u128::from(t) <= percent && t > st.alerted).collect()
    }

    /// Thresholds up to `percent` are recorded (in the period holding `now_secs`).
    pub fn alerted(&self, now_secs: i64, percent: u16) {
        let mut st = self.counter.state.lock();
        let st = st.at(self.key.period.start(now_secs));
        st.alerted = st.alerted.max(percent);
    }
}

/// What a quota's period spent (see [`QuotaCheck::spent`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpentFigures {
    pub period_start: i64,
    pub tokens: u64,
    pub requests: u64,
    pub nanos: u64,
}

/// What a call reserves in quotas at admission: its token estimate and that estimate's cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reservation {
    pub tokens: u64,
    pub nanos: u64,
}

/// The quotas a call reserved in, with its estimate: given back when it ends (the real usage
/// counted, [`QuotaHold::end`]) or is dropped (the estimate counted).
#[derive(Default, Debug)]
pub struct QuotaHold {
    held: smallvec::SmallVec<[(Arc<QuotaCounter>, Reservation); 2]>,
}

impl QuotaHold {
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    pub fn end(&mut self, consumed: Consumed) {
        for (counter, reserved) in self.held.drain(..) {
            let mut st = counter.state.lock();
            st.reserved = st.reserved.saturating_sub(reserved.tokens);
            st.reserved_nanos = st.reserved_nanos.saturating_sub(reserved.nanos);
            match consumed.tokens(reserved.tokens) {
                Some(tokens) => st.new_tokens += tokens,
                None => st.new_requests = st.new_requests.saturating_sub(1),
            }
            st.new_nanos += consumed.nanos(reserved.nanos).unwrap_or(0);
        }
    }
}

impl Drop for QuotaHold {
    fn drop(&mut self) {
        self.end(Consumed::Estimate);
    }
}

/// Checks the call against `quotas` (at most the key's and its workspace's) at wall time
/// `now_secs` and, if every one has room, reserves a request and `estimate` in each (in the
/// returned hold, which the call's end settles). A refusal reserves nothing.
pub fn check(quotas: &[&QuotaCheck], now_secs: i64, estimate: Reservation) -> Result<QuotaHold, QuotaExceeded> {
    let mut held = QuotaHold::default();
    reserve(quotas, now_secs, estimate, &mut held, true)?;
    Ok(held)
}

/// Reserves as [`check`] does without checking: a call Redis admitted is counted here too, for
/// the ledger and for when Redis cannot answer.
pub fn record(quotas: &[&QuotaCheck], now_secs: i64, estimate: Reservation) -> QuotaHold {
    let mut held = QuotaHold::default();
    let _always = reserve(quotas, now_secs, estimate, &mut held, false);
    held
}

fn reserve(quotas: &[&QuotaCheck], now_secs: i64, estimate: Reservation, held: &mut QuotaHold, enforce: bool) -> Result<(), QuotaExceeded> {
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
            if over(q.spend.as_ref().map(|m| m.nanos), st.nanos()) {
                return Err(q.exceeded(now_secs, Budget::Spend));
            }
        }
        locked.push(st);
    }
    for (q, st) in quotas.iter().zip(locked.iter_mut()) {
        // Money is reserved only where there is a money budget (and so counted only there).
        let estimate = Reservation { tokens: estimate.tokens, nanos: if q.spend.is_some() { estimate.nanos } else { 0 } };
        st.new_requests += 1;
        st.reserved += estimate.tokens;
        st.reserved_nanos += estimate.nanos;
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
    let currency: Arc<str> = app::ssr::services::currency::currency(db).await.map_err(|e| DbErr::Custom(e.to_string()))?.into();
    for q in quotas {
        let (Some((target, subject_id)), Some(period)) = (q.subject(), Period::parse(&q.period)) else { continue };
        let key = QuotaKey { target, subject_id, period };
        let counter = previous.get(&key).cloned().unwrap_or_else(|| {
            let start = period.start(now_secs);
            let l = ledger.get(&(target, subject_id, start)).copied().unwrap_or_default();
            Arc::new(QuotaCounter {
                state: Mutex::new(Spent {
                    period_start: start,
                    ledger_tokens: l.tokens,
                    ledger_requests: l.requests,
                    ledger_nanos: l.nanos,
                    ..Default::default()
                }),
            })
        });
        let budget = |v: Option<i64>| v.map(|v| v.max(0) as u64);
        out.insert(
            (target, subject_id),
            QuotaCheck {
                key,
                tokens: budget(q.tokens),
                requests: budget(q.requests),
                spend: budget(q.spend_nanos).map(|nanos| Money {
                    nanos,
                    unpriced: Unpriced::parse(&q.unpriced).unwrap_or_default(),
                    currency: currency.clone(),
                    alerts: app::ssr::services::quotas::alert_percents(&q.alert_percents).into(),
                }),
                counter,
            },
        );
    }
    Ok(out)
}

/// The ledger's figures of the current day and month, as counts.
async fn ledger(db: &impl ConnectionTrait, now_secs: i64) -> Result<FxHashMap<(RuleTarget, i64, i64), SpentFigures>, DbErr> {
    let rows = app::ssr::services::quotas::ledger(db, now_secs, None).await?;
    let n = |v: i64| v.max(0) as u64;
    Ok(rows
        .into_iter()
        .map(|(k, l)| (k, SpentFigures { period_start: k.2, tokens: n(l.tokens), requests: n(l.requests), nanos: n(l.nanos) }))
        .collect())
}

/// Adds what this process counted since the last flush to the ledger (one transaction), then
/// reads the ledger back: each counter then holds every gateway's flushed calls plus its own
/// since. On failure the counts stay in memory for the next flush.
pub async fn flush<C: ConnectionTrait + TransactionTrait>(db: &C, quotas: &[QuotaCheck], now_secs: i64) -> Result<(), DbErr> {
    if quotas.is_empty() {
        return Ok(());
    }
    // (counter, target, subject, figures) taken out of memory.
    let mut taken = Vec::new();
    for q in quotas {
        let mut st = q.counter.state.lock();
        if st.new_tokens > 0 || st.new_requests > 0 || st.new_nanos > 0 {
            let figures = SpentFigures {
                period_start: st.period_start,
                tokens: std::mem::take(&mut st.new_tokens),
                requests: std::mem::take(&mut st.new_requests),
                nanos: std::mem::take(&mut st.new_nanos),
            };
            taken.push((q.counter.clone(), q.key.target, q.key.subject_id, figures));
        }
    }
    let written = async {
        if taken.is_empty() {
            // Nothing new here: no write transaction, just the read-back below.
            return Ok(());
        }
        let txn = db.begin().await?;
        let backend = txn.get_database_backend();
        for (_, target, subject, f) in &taken {
            // Figures of our own making: numbers, and a target from a fixed set.
            txn.execute_raw(Statement::from_string(
                backend,
                format!(
                    "INSERT INTO quota_spent (target, subject_id, period_start, tokens, requests, cost_nanos) VALUES ('{}', {subject}, {}, {}, {}, {}) \
                     ON CONFLICT (target, subject_id, period_start) DO UPDATE SET tokens = quota_spent.tokens + excluded.tokens, \
                     requests = quota_spent.requests + excluded.requests, cost_nanos = quota_spent.cost_nanos + excluded.cost_nanos",
                    target.as_str(),
                    f.period_start,
                    f.tokens,
                    f.requests,
                    f.nanos
                ),
            ))
            .await?;
        }
        txn.commit().await
    }
    .await;
    if let Err(e) = written {
        for (counter, _, _, f) in taken {
            let mut st = counter.state.lock();
            if st.period_start == f.period_start {
                st.new_tokens += f.tokens;
                st.new_requests += f.requests;
                st.new_nanos += f.nanos;
            }
        }
        return Err(e);
    }
    let ledger = ledger(db, now_secs).await?;
    for q in quotas {
        let mut st = q.counter.state.lock();
        let st = st.at(q.key.period.start(now_secs));
        let l = ledger.get(&(q.key.target, q.key.subject_id, st.period_start)).copied().unwrap_or_default();
        st.ledger_tokens = l.tokens;
        st.ledger_requests = l.requests;
        st.ledger_nanos = l.nanos;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(target: RuleTarget, subject_id: i64, tokens: Option<u64>, requests: Option<u64>) -> QuotaCheck {
        QuotaCheck::new(QuotaKey { target, subject_id, period: Period::Month }, tokens, requests)
    }

    fn est(tokens: u64) -> Reservation {
        Reservation { tokens, nanos: 0 }
    }

    #[test]
    fn a_quota_refuses_once_spent_plus_reserved_reach_it_and_is_whole_again_next_month() {
        let dec_2 = app::days::parse_day("2026-12-02").unwrap() * 86_400;
        let key = q(RuleTarget::ApiKey, 1, Some(1_000), None);
        let ws = q(RuleTarget::Workspace, 1, None, Some(3));
        let a = check(&[&key, &ws], dec_2, est(600)).unwrap();
        let b = check(&[&key, &ws], dec_2, est(600)).expect("600 reserved < 1,000");
        let e = check(&[&key, &ws], dec_2, est(1)).unwrap_err();
        assert_eq!((e.target, e.budget_of, e.budget), (RuleTarget::ApiKey, Budget::Tokens, 1_000));
        assert_eq!(e.resets_at, app::days::parse_day("2027-01-01").unwrap() * 86_400);
        assert_eq!(a.held.len() + b.held.len(), 4, "a refusal reserves nothing");
        // Both settle small: 2 requests and 30 tokens spent; the workspace allows one more call.
        for mut h in [a, b] {
            h.end(Consumed::tokens_only(15));
        }
        let mut c = check(&[&key, &ws], dec_2, est(1)).unwrap();
        let e = check(&[&key, &ws], dec_2, est(1)).unwrap_err();
        assert_eq!((e.target, e.budget_of, e.budget), (RuleTarget::Workspace, Budget::Requests, 3));
        // A call that never ran gives its request back.
        c.end(Consumed::Nothing);
        let _d = check(&[&key, &ws], dec_2, est(1)).expect("the cancelled call's request is free again");
        assert!(check(&[&key, &ws], dec_2, est(1)).is_err());
        let jan_1 = app::days::parse_day("2027-01-01").unwrap() * 86_400;
        let _e = check(&[&key, &ws], jan_1, est(1)).expect("a new month");
    }

    #[test]
    fn a_money_budget_reserves_the_estimates_cost_and_settles_to_the_real_one() {
        let dec_2 = app::days::parse_day("2026-12-02").unwrap() * 86_400;
        // 0.01 of the currency: 10,000,000 nano.
        let ws = q(RuleTarget::Workspace, 1, None, None).with_spend(Money {
            nanos: 10_000_000,
            unpriced: Unpriced::Refuse,
            currency: "USD".into(),
            alerts: Arc::new([]),
        });
        let key = q(RuleTarget::ApiKey, 1, Some(1_000_000), None);
        let a = check(&[&key, &ws], dec_2, Reservation { tokens: 100, nanos: 6_000_000 }).unwrap();
        let b = check(&[&key, &ws], dec_2, Reservation { tokens: 100, nanos: 6_000_000 }).expect("6m reserved < 10m");
        assert_eq!(ws.reserved_nanos(), 12_000_000);
        assert_eq!(key.reserved_nanos(), 0, "no money is reserved where no money budget is");
        let e = check(&[&key, &ws], dec_2, Reservation { tokens: 1, nanos: 1 }).unwrap_err();
        assert_eq!((e.target, e.budget_of, e.budget), (RuleTarget::Workspace, Budget::Spend, 10_000_000));
        // One cost 1,500,000 nano; the other's cost is unknown: its reservation stands.
        let mut a = a;
        a.end(Consumed::Used { tokens: 40, nanos: Some(1_500_000) });
        let mut b = b;
        b.end(Consumed::Used { tokens: 40, nanos: None });
        assert_eq!(ws.reserved_nanos(), 0);
        assert_eq!(ws.spent(dec_2).nanos, 7_500_000);
        assert_eq!(key.spent(dec_2).nanos, 1_500_000, "a known cost is spent on every quota of the call");
        let _c = check(&[&key, &ws], dec_2, Reservation { tokens: 1, nanos: 3_000_000 }).expect("7.5m spent < 10m");
        assert!(check(&[&key, &ws], dec_2, Reservation { tokens: 1, nanos: 0 }).is_err(), "7.5m + 3m reserved ≥ 10m");
    }
}
