//! Usage as the console shows it: the operator's Usage page (charts, top workspaces and keys,
//! per-model and per-endpoint figures), each model's last 24 hours in the management list, a
//! user's per-key usage, and the billing export. All of it sums the rollups through
//! `ssr::usage_rollups`; nothing here reads the tables directly.
use super::visibility;
use crate::error::AppError;
use crate::ssr::entities::{api_key, endpoint, workspace};
use crate::ssr::pricing::format_nanos;
use crate::ssr::usage_rollups::{aggregate, quantile, rank_keys, By, Group, Scope, Sums};
use crate::ssr::{charts, now, SResult};
use crate::types::*;
use sea_orm::{ConnectionTrait, EntityTrait};
use std::collections::{BTreeMap, HashMap};

/// Rows of the top-workspaces and top-keys tables.
const TOP: usize = 10;
/// Rows of the models and endpoints tables at most.
const TABLE_ROWS: usize = 50;
/// Days a CSV export may span at most (a bounded answer, whatever is asked).
pub const MAX_EXPORT_DAYS: i64 = 400;

/// Adds the sums of groups (of one outcome each) into figures.
#[derive(Default)]
struct Tally {
    all: Sums,
    errors: i64,
    rate_limited: i64,
    cancelled: i64,
}

impl Tally {
    fn add(&mut self, outcome: Option<&str>, s: &Sums) {
        self.all.merge(s);
        match outcome {
            Some("upstream_error" | "bad_request") => self.errors += s.requests,
            Some("rate_limited") => self.rate_limited += s.requests,
            Some("cancelled") => self.cancelled += s.requests,
            _ => {}
        }
    }

    fn figures(&self) -> UsageFigures {
        let s = &self.all;
        UsageFigures {
            requests: s.requests,
            errors: self.errors,
            rate_limited: self.rate_limited,
            cancelled: self.cancelled,
            usage_unknown: s.requests - s.usage_known,
            input_tokens: s.input,
            output_tokens: s.output,
            total_tokens: s.total,
            cached_tokens: s.cached,
            cache_write_tokens: s.cache_write,
            units: s.units,
            unit: None,
            cost: format_nanos(s.cost),
            cost_unknown: s.cost_unknown,
            failovers: s.failovers,
            p50_ms: quantile(&s.latency_hist, 0.5),
            p95_ms: quantile(&s.latency_hist, 0.95),
            ttft_p50_ms: quantile(&s.ttfb_hist, 0.5),
            ttft_p95_ms: quantile(&s.ttfb_hist, 0.95),
        }
    }
}

/// Tallies groups by `key`, the outcome being dimension `outcome_at`.
fn tally_by<K: Ord>(groups: &[Group], key: impl Fn(&Group) -> K, outcome_at: usize) -> BTreeMap<K, Tally> {
    let mut out: BTreeMap<K, Tally> = BTreeMap::new();
    for g in groups {
        out.entry(key(g)).or_default().add(g.text(outcome_at), &g.sums);
    }
    out
}

/// The operator's filter as a scope ending with the current minute.
fn scope_of(f: &UsageFilter, now_minute: i64) -> Scope {
    let to = now_minute + 1;
    Scope {
        from_minute: to - f.range.minutes(),
        to_minute: to,
        models: f.model.map(|m| vec![m]),
        workspaces: f.workspace.map(|w| vec![w]),
        keys: f.key.map(|k| vec![k]),
    }
}

/// Names of models, workspaces and keys by id, for labels (usage outlives what it names:
/// a deleted one shows as "#id (deleted)").
struct Names {
    models: HashMap<i64, String>,
    kinds: HashMap<i64, ModelKind>,
    workspaces: HashMap<i64, String>,
    keys: HashMap<i64, (String, String, i64)>,
    endpoints: HashMap<i64, (i64, String, String)>,
}

/// Which keys and endpoints to name (`None`: all of them). Loading all 10,000 keys of a
/// platform for ten labels cost the Usage page ~60 ms (rows come one by one from SQLite).
#[derive(Default)]
struct Wanted {
    keys: Option<Vec<i64>>,
    /// Also every key of this workspace (the key filter's options).
    keys_of: Option<i64>,
    endpoints: Option<Vec<i64>>,
}

async fn names(db: &impl ConnectionTrait, wanted: Wanted) -> SResult<Names> {
    use sea_orm::{ColumnTrait, Condition, QueryFilter};
    let named = super::model_names::names_and_kinds(db).await?;
    let kinds = named.iter().map(|(id, _, kind)| (*id, *kind)).collect();
    let models = named.into_iter().map(|(id, name, _)| (id, name)).collect();
    let workspaces = workspace::Entity::find().all(db).await?.into_iter().map(|w| (w.id, w.name)).collect();
    let mut keys = api_key::Entity::find();
    if let Some(ids) = wanted.keys {
        let mut which = Condition::any().add(api_key::Column::Id.is_in(ids));
        if let Some(ws) = wanted.keys_of {
            which = which.add(api_key::Column::WorkspaceId.eq(ws));
        }
        keys = keys.filter(which);
    }
    let keys = keys.all(db).await?.into_iter().map(|k| (k.id, (k.name, k.public_id, k.workspace_id))).collect();
    let mut endpoints = endpoint::Entity::find();
    if let Some(ids) = wanted.endpoints {
        endpoints = endpoints.filter(endpoint::Column::Id.is_in(ids));
    }
    let endpoints = endpoints.all(db).await?.into_iter().map(|e| (e.id, (e.maas_model_id, e.url, e.model_id))).collect();
    Ok(Names { models, kinds, workspaces, keys, endpoints })
}

impl Names {
    /// The unit a model's calls are counted in besides tokens.
    fn unit(&self, model: Option<i64>) -> Option<String> {
        model.and_then(|m| self.kinds.get(&m)).and_then(|k| k.unit()).map(|u| u.as_str().to_owned())
    }

    fn workspace(&self, id: Option<i64>) -> String {
        match id {
            None => "(no workspace: refused before authentication)".into(),
            Some(id) => self.workspaces.get(&id).cloned().unwrap_or_else(|| format!("#{id} (deleted)")),
        }
    }

    fn key(&self, id: Option<i64>) -> (String, String) {
        match id.and_then(|id| self.keys.get(&id).map(|k| (id, k))) {
            Some((_, (name, public_id, ws))) => (name.clone(), format!("{public_id} · {}", self.workspace(Some(*ws)))),
            None => match id {
                Some(id) => (format!("#{id} (deleted)"), String::new()),
                None => ("(no key)".into(), "invalid or missing API key".into()),
            },
        }
    }
}

fn sorted_top(mut lines: Vec<UsageLine>, n: usize) -> Vec<UsageLine> {
    lines.sort_by(|a, b| {
        b.figures.total_tokens.cmp(&a.figures.total_tokens).then(b.figures.requests.cmp(&a.figures.requests)).then(a.label.cmp(&b.label))
    });
    lines.truncate(n);
    lines
}

/// The operator's Usage page for `f`.
pub async fn report(db: &impl ConnectionTrait, f: &UsageFilter) -> SResult<UsageReport> {
    let now_minute = now() / 60;
    let scope = scope_of(f, now_minute);
    let bucket = f.range.bucket_minutes();
    // Four scans, at once (the pool has connections for each): per time bucket and outcome
    // (the charts, and the totals: the same sums added up, percentiles over the whole range);
    // per model, endpoint and outcome; per workspace; and the top keys, ranked by the database.
    let (series, by_endpoint, by_workspace, ranked, by_fallback) = tokio::try_join!(
        aggregate(db, &scope, By::Outcome, Some(bucket)),
        aggregate(db, &scope, By::ModelEndpointOutcome, None),
        aggregate(db, &scope, By::WorkspaceOutcome, None),
        rank_keys(db, &scope, TOP),
        aggregate(db, &scope, By::Fallback, None),
    )?;
    // The top keys' own figures (a handful of rows, through the key index).
    let ranked_ids: Vec<i64> = ranked.iter().flatten().copied().collect();
    let by_key = if ranked_ids.is_empty() {
        Vec::new()
    } else {
        aggregate(db, &Scope { keys: Some(ranked_ids.clone()), ..scope.clone() }, By::KeyOutcome, None).await?
    };
    let per_bucket = tally_by(&series, |g| g.at_minute, 0);
    let start = scope.from_minute - scope.from_minute.rem_euclid(bucket);
    let points: Vec<(i64, UsageFigures)> = (0..)
        .map(|i| start + i * bucket)
        .take_while(|m| *m < scope.to_minute)
        .map(|m| (m, per_bucket.get(&m).map(Tally::figures).unwrap_or_default()))
        .collect();
    let currency = super::currency::currency(db).await?;
    let charts = charts::usage_charts(&points, f.range, &currency);
    let mut all = Tally::default();
    for g in &series {
        all.add(g.text(0), &g.sums);
    }

    // Only the keys and endpoints the page shows are named: the top keys, the endpoints
    // failing or busiest first.
    let key_tallies = tally_by(&by_key, |g| g.int(1), 2);
    let workspace_tallies = tally_by(&by_workspace, |g| g.int(0), 1);
    let endpoint_tallies = tally_by(&by_endpoint, |g| g.int(2), 3);
    let mut busiest: Vec<(&Option<i64>, &Tally)> = endpoint_tallies.iter().collect();
    busiest.sort_by_key(|(id, t)| (std::cmp::Reverse(t.errors), std::cmp::Reverse(t.all.requests), **id));
    let wanted = Wanted {
        keys: Some(ranked_ids.iter().copied().chain(f.key).collect()),
        keys_of: f.workspace,
        endpoints: Some(busiest.iter().take(TABLE_ROWS).filter_map(|(id, _)| **id).collect()),
    };
    let names = names(db, wanted).await?;
    let top_workspaces = sorted_top(
        workspace_tallies
            .iter()
            .map(|(ws, t)| UsageLine { label: names.workspace(*ws), detail: String::new(), figures: t.figures() })
            .collect(),
        TOP,
    );
    let top_keys = sorted_top(
        ranked
            .iter()
            .filter_map(|k| {
                // Calls without a key are those without a workspace (refused before
                // authentication): the same tally.
                let t = match k {
                    Some(_) => key_tallies.get(k)?,
                    None => workspace_tallies.get(&None)?,
                };
                let (label, detail) = names.key(*k);
                Some(UsageLine { label, detail, figures: t.figures() })
            })
            .collect(),
        TOP,
    );
    let models = sorted_top(
        tally_by(&by_endpoint, |g| (g.int(0), g.text(1).unwrap_or_default().to_owned()), 3)
            .into_iter()
            .map(|((id, sent), t)| {
                let label = match id {
                    Some(id) => names.models.get(&id).cloned().unwrap_or_else(|| format!("{sent} (deleted)")),
                    None => sent,
                };
                let detail = if id.is_none() { "not a served model (404)".into() } else { String::new() };
                UsageLine { label, detail, figures: UsageFigures { unit: names.unit(id), ..t.figures() } }
            })
            .collect(),
        usize::MAX,
    );
    let fallbacks = sorted_top(
        tally_by(&by_fallback, |g| (g.int(0), g.int(1)), 3)
            .into_iter()
            .map(|((asked, answered), t)| {
                let name = |id: Option<i64>| match id {
                    Some(id) => names.models.get(&id).cloned().unwrap_or_else(|| format!("#{id} (deleted)")),
                    None => "?".into(),
                };
                UsageLine {
                    label: format!("{} → {}", name(asked), name(answered)),
                    detail: format!("answered by {} for {}", name(answered), name(asked)),
                    figures: UsageFigures { unit: names.unit(answered), ..t.figures() },
                }
            })
            .collect(),
        TABLE_ROWS,
    );
    let endpoints_hidden = busiest.iter().filter(|(id, _)| id.is_some()).count().saturating_sub(TABLE_ROWS);
    let endpoints: Vec<UsageLine> = busiest
        .iter()
        .filter(|(id, _)| id.is_some())
        .take(TABLE_ROWS)
        .filter_map(|(id, t)| {
            let id = (**id)?;
            let unit = names.unit(names.endpoints.get(&id).map(|e| e.0));
            let (label, detail) = match names.endpoints.get(&id) {
                Some((m, url, upstream_model)) => {
                    (url.clone(), format!("{} → {upstream_model}", names.models.get(m).map_or("?", String::as_str)))
                }
                None => (format!("endpoint #{id} (removed)"), String::new()),
            };
            Some(UsageLine { label, detail, figures: UsageFigures { unit, ..t.figures() } })
        })
        .collect();
    // A page, not a dump: the rest is one filter away (a platform with 1,000 models drew
    // 2,000 table rows and 10,000 key options, 1.6 MB of HTML, most of the page's time).
    let models_hidden = models.len().saturating_sub(TABLE_ROWS);
    let mut models = models;
    models.truncate(TABLE_ROWS);

    let mut model_choices: Vec<Choice> = names.models.iter().map(|(id, n)| Choice { id: *id, label: n.clone() }).collect();
    model_choices.sort_by(|a, b| a.label.cmp(&b.label));
    let mut workspace_choices: Vec<Choice> = names.workspaces.iter().map(|(id, n)| Choice { id: *id, label: n.clone() }).collect();
    workspace_choices.sort_by(|a, b| a.label.cmp(&b.label));
    let mut key_choices: Vec<Choice> = names
        .keys
        .iter()
        // A workspace's keys once one is chosen (all of them would be thousands of options);
        // the chosen key always.
        .filter(|(id, (_, _, ws))| f.workspace == Some(*ws) || f.key == Some(**id))
        .map(|(id, (n, public_id, _))| Choice { id: *id, label: format!("{n} ({public_id})") })
        .collect();
    key_choices.sort_by(|a, b| a.label.cmp(&b.label));
    let today = now_minute.div_euclid(1440);
    Ok(UsageReport {
        filter: f.clone(),
        totals: all.figures(),
        charts,
        top_workspaces,
        top_keys,
        models,
        endpoints,
        models_hidden,
        endpoints_hidden,
        fallbacks,
        currency,
        model_choices,
        workspace_choices,
        key_choices,
        export_from: format_day(today - 29),
        export_to: format_day(today),
    })
}

/// Each listed model's last 24 hours, for the management list.
pub async fn models_last_day(db: &impl ConnectionTrait, ids: &[i64]) -> SResult<HashMap<i64, UsageFigures>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let to = now() / 60 + 1;
    let scope = Scope { from_minute: to - 1440, to_minute: to, models: Some(ids.to_vec()), ..Default::default() };
    let groups = aggregate(db, &scope, By::ModelOutcome, None).await?;
    Ok(tally_by(&groups, |g| g.int(0), 2).into_iter().filter_map(|(id, t)| Some((id?, t.figures()))).collect())
}

/// The caller's keys' usage over the last 24 hours and 30 days (a user sees only their own
/// workspaces' keys; an operator every key).
pub async fn key_usage(db: &impl ConnectionTrait, who: &CurrentUser) -> SResult<Vec<KeyUsage>> {
    let visible = visibility::visible_ids(db, who).await?;
    let to = now() / 60 + 1;
    let mut out: BTreeMap<i64, KeyUsage> = BTreeMap::new();
    for (days, month) in [(1, false), (30, true)] {
        let scope = Scope { from_minute: to - days * 1440, to_minute: to, workspaces: visible.clone(), ..Default::default() };
        let groups = aggregate(db, &scope, By::KeyOutcome, None).await?;
        for (key, t) in tally_by(&groups, |g| g.int(1), 2) {
            let Some(key) = key else { continue };
            let u = out.entry(key).or_insert_with(|| KeyUsage { key_id: key, ..Default::default() });
            if month {
                u.month = t.figures();
            } else {
                u.day = t.figures();
            }
        }
    }
    let currency = super::currency::currency(db).await?;
    Ok(out.into_values().map(|u| KeyUsage { currency: currency.clone(), ..u }).collect())
}

pub use crate::days::{civil_from_days, format_day, parse_day};

/// Usage per UTC day × workspace × key × model of `[from, to]` (days, inclusive): requests
/// and input, output and total tokens, and the calls whose usage is unknown. Days validated
/// first: a clear error, never a partial or unbounded answer.
pub async fn daily(db: &impl ConnectionTrait, from: &str, to: &str) -> SResult<Vec<DailyUsage>> {
    let mut e = FieldErrors::default();
    let (f, t) = (parse_day(from), parse_day(to));
    if f.is_none() {
        e.add("from", "a day as YYYY-MM-DD");
    }
    if t.is_none() {
        e.add("to", "a day as YYYY-MM-DD");
    }
    if let (Some(f), Some(t)) = (f, t) {
        if t < f {
            e.add("to", "must not be before `from`");
        } else if t - f + 1 > MAX_EXPORT_DAYS {
            e.add("to", format!("at most {MAX_EXPORT_DAYS} days per export"));
        }
    }
    e.into_result()?;
    let (f, t) = (f.unwrap_or_default(), t.unwrap_or_default());
    let scope = Scope { from_minute: f * 1440, to_minute: (t + 1) * 1440, ..Default::default() };
    let groups = aggregate(db, &scope, By::WorkspaceKeyModel, Some(1440)).await?;
    let names = names(db, Wanted::default()).await?;
    Ok(groups
        .iter()
        .map(|g| {
            let (ws, key, model_id) = (g.int(0), g.int(1), g.int(2));
            let s = &g.sums;
            DailyUsage {
                day: format_day(g.at_minute / 1440),
                workspace_id: ws,
                workspace: ws.map(|w| names.workspace(Some(w))).unwrap_or_default(),
                api_key_id: key,
                api_key: key.map(|k| names.key(Some(k)).0).unwrap_or_default(),
                model_id,
                model: g.text(3).unwrap_or_default().to_owned(),
                requests: s.requests,
                input_tokens: s.input,
                output_tokens: s.output,
                total_tokens: s.total,
                cached_tokens: s.cached,
                cache_write_tokens: s.cache_write,
                units: s.units,
                unit: names.unit(model_id),
                requests_usage_unknown: s.requests - s.usage_known,
                cost: format_nanos(s.cost),
                cost_unknown: s.cost_unknown,
                asked_model_id: g.int(4),
                asked_model: g
                    .int(4)
                    .map(|m| names.models.get(&m).cloned().unwrap_or_else(|| format!("#{m} (deleted)")))
                    .unwrap_or_default(),
            }
        })
        .collect())
}

/// The billing export: [`daily`] as CSV, the file a billing system takes.
pub async fn export_csv(db: &impl ConnectionTrait, from: &str, to: &str) -> SResult<String> {
    let mut out = String::from("day,workspace_id,workspace,api_key_id,api_key,model_id,model,requests,input_tokens,output_tokens,total_tokens,requests_usage_unknown,cached_tokens,units,unit,asked_model_id,asked_model,cost,cost_unknown,cache_write_tokens\n");
    let id = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    for d in daily(db, from, to).await? {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            d.day,
            id(d.workspace_id),
            csv_field(&d.workspace),
            id(d.api_key_id),
            csv_field(&d.api_key),
            id(d.model_id),
            csv_field(&d.model),
            d.requests,
            d.input_tokens,
            d.output_tokens,
            d.total_tokens,
            d.requests_usage_unknown,
            d.cached_tokens,
            d.units,
            d.unit.as_deref().unwrap_or(""),
            id(d.asked_model_id),
            csv_field(&d.asked_model),
            d.cost,
            d.cost_unknown,
            d.cache_write_tokens
        ));
    }
    Ok(out)
}

/// A CSV field, quoted when needed; a leading `=`, `+`, `-` or `@` is prefixed with `'` so a
/// spreadsheet never runs a name as a formula.
pub fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// A filter from the page's query string; unknown values are an error, not silently "all".
pub fn filter_from_query(range: &str, model: &str, workspace: &str, key: &str) -> Result<UsageFilter, AppError> {
    let mut e = FieldErrors::default();
    let range = if range.is_empty() { Some(UsageRange::default()) } else { UsageRange::parse(range) };
    if range.is_none() {
        e.add("range", "one of 1h, 24h, 7d, 30d");
    }
    let mut id = |field: &str, v: &str| -> Option<i64> {
        if v.is_empty() {
            return None;
        }
        let n = v.parse::<i64>().ok().filter(|n| *n > 0);
        if n.is_none() {
            e.add(field, "an id");
        }
        n
    };
    let (model, workspace, key) = (id("model", model), id("workspace", workspace), id("key", key));
    if !e.is_empty() {
        return Err(AppError::Invalid(e));
    }
    Ok(UsageFilter { range: range.unwrap_or_default(), model, workspace, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip_and_impossible_days_are_refused() {
        assert_eq!(parse_day("1970-01-01"), Some(0));
        assert_eq!(parse_day("2026-12-01").map(format_day).as_deref(), Some("2026-12-01"));
        assert_eq!(parse_day("2024-02-29").map(format_day).as_deref(), Some("2024-02-29"));
        for bad in ["2026-02-31", "2026-13-01", "26-1-1x", "", "2026-12", "yesterday"] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
    }
}
