//! Validation rules that need no database. The form runs them as the operator types; the
//! server runs them again (and the database-dependent checks) because the browser is never
//! trusted.
use crate::types::*;

pub const MAX_LIMIT: i64 = 1_000_000_000;
/// Tokens per window: a trillion (a whole fleet's day) and no more; beyond is a typo.
pub const MAX_TOKEN_LIMIT: i64 = 1_000_000_000_000;
/// Calls in flight at once: more than any upstream serves.
pub const MAX_CONCURRENT: i64 = 100_000;

/// An endpoint's cap on calls at once, as typed: empty for none.
pub fn endpoint_cap(s: &str) -> Result<Option<i64>, String> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    parse_int(s, 1, MAX_CONCURRENT).map(Some)
}

/// Output tokens a call may reserve: above any model's output window.
pub const MAX_RESERVE_OUTPUT: i64 = 1_000_000;

/// A model's output reservation, as typed: empty for the gateway's default.
pub fn reserve_output(s: &str) -> Result<Option<i64>, String> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    parse_int(s, 1, MAX_RESERVE_OUTPUT).map(Some)
}

/// The largest limit a rule of `kind` takes.
pub fn max_limit(kind: RuleKind) -> i64 {
    match kind {
        RuleKind::Requests => MAX_LIMIT,
        RuleKind::Tokens => MAX_TOKEN_LIMIT,
        RuleKind::Concurrent => MAX_CONCURRENT,
    }
}
/// One week: longer windows are almost always a units mistake (ms typed as s).
pub const MAX_DURATION_SECS: i64 = 7 * 24 * 3600;
pub const MAX_ENDPOINTS: usize = 64;
pub const MAX_RULES: usize = 64;
/// Pages of a list: far more than any list holds (100 per page), small enough that the offset
/// can never overflow the database's integer.
pub const MAX_PAGE: u64 = 1_000_000;
pub const MAX_SEARCH: usize = 256;

/// A list's page number and search text.
pub fn list_query(search: &str, page: u64) -> FieldErrors {
    let mut e = FieldErrors::default();
    if page > MAX_PAGE {
        e.add("page", format!("must be at most {MAX_PAGE}"));
    }
    if search.chars().count() > MAX_SEARCH {
        e.add("search", format!("at most {MAX_SEARCH} characters"));
    }
    e
}

/// `Ok(())` for an absolute http(s) URL made of a scheme, a host, an optional port and an
/// optional path, and nothing else (no user info, query or fragment); the message otherwise.
/// Entry addresses and endpoint URLs are parsed this strictly because they end up in copy-ready
/// snippets, shell lines among them, and in the gateway's request lines.
pub fn http_url(s: &str) -> Result<(), &'static str> {
    let s = s.trim();
    if s.is_empty() {
        return Err("required");
    }
    if s.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces");
    }
    let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")).ok_or("must start with http:// or https://")?;
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    if path.contains(['?', '#']) || authority.contains(['?', '#']) {
        return Err("no query or fragment: scheme, host, port and path only");
    }
    if authority.contains('@') {
        return Err("must not contain a user name or password");
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (addr, after) = v6.split_once(']').ok_or("must name a host, e.g. https://api.example.com")?;
            addr.parse::<std::net::Ipv6Addr>().map_err(|_| "not a valid IPv6 address")?;
            (authority, after.strip_prefix(':').map(Some).unwrap_or_else(|| if after.is_empty() { None } else { Some("") }))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    if !host.starts_with('[') && !valid_host_name(host) {
        return Err("must name a host, e.g. https://api.example.com");
    }
    if let Some(p) = port {
        if !p.bytes().all(|b| b.is_ascii_digit()) || !matches!(p.parse::<u32>(), Ok(1..=65535)) {
            return Err("the port must be a number from 1 to 65535");
        }
    }
    if !valid_path(path) {
        return Err("the path may hold only letters, digits, / - . _ ~ % : @ + , = !");
    }
    Ok(())
}

/// A DNS name or IPv4 address: labels of letters, digits, `-` and `_`, not starting or ending
/// with `-`, at most 63 characters each and 253 in all.
fn valid_host_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.trim_end_matches('.').split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn valid_path(p: &str) -> bool {
    let b = p.as_bytes();
    b.iter().enumerate().all(|(i, &c)| match c {
        b'%' => b.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)),
        _ => c.is_ascii_alphanumeric() || b"/-._~:@+,=!".contains(&c),
    })
}

/// `next` when it is a path on this origin, safe to send the browser to after login; else `/`.
/// A leading `/` not followed by `/` or `\`, then only a conservative set of path and query
/// characters: `//host`, `/\host` (browsers read `\` as `/`), `/<TAB>/host` (browsers drop
/// tabs and newlines), schemes and fragments never leave the site.
pub fn local_path(next: &str) -> &str {
    let ok = next.len() <= 2048
        && next.starts_with('/')
        && !next[1..].starts_with(['/', '\\'])
        && next.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-._~?=&%+,;:@!".contains(&b));
    if ok {
        next
    } else {
        "/"
    }
}

fn required(errs: &mut FieldErrors, field: &str, value: &str, max: usize) {
    let v = value.trim();
    if v.is_empty() {
        errs.add(field, "required");
    } else if v.chars().count() > max {
        errs.add(field, format!("at most {max} characters"));
    }
}

/// A name clients type: letters, digits and `-_.:/` only (it appears in JSON and URLs).
pub fn name_like(errs: &mut FieldErrors, field: &str, value: &str, max: usize) {
    required(errs, field, value, max);
    if !value.trim().is_empty() && !value.trim().chars().all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c)) {
        errs.add(field, "use letters, digits and - _ . : / only");
    }
}

pub fn parse_int(s: &str, min: i64, max: i64) -> Result<i64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("required".into());
    }
    let v: i64 = s.parse().map_err(|_| "must be a whole number".to_string())?;
    if v < min {
        return Err(format!("must be at least {min}"));
    }
    if v > max {
        return Err(format!("must be at most {max}"));
    }
    Ok(v)
}

pub fn marketplace(input: &MarketplaceInput) -> FieldErrors {
    let mut e = FieldErrors::default();
    name_like(&mut e, "name", &input.name, 128);
    required(&mut e, "provider", &input.provider, 128);
    if input.description.chars().count() > 4000 {
        e.add("description", "at most 4000 characters");
    }
    let tags = parse_tags(&input.tags);
    if tags.len() > 16 {
        e.add("tags", "at most 16 tags");
    } else if tags.iter().any(|t| t.chars().count() > 32) {
        e.add("tags", "each tag at most 32 characters");
    }
    e
}

pub fn cluster(name: &str, entry_address: &str) -> FieldErrors {
    let mut e = FieldErrors::default();
    name_like(&mut e, "name", name, 64);
    if let Err(m) = http_url(entry_address) {
        e.add("entry_address", m);
    }
    e
}

/// The sum of the weights that parse, for the live total under the sliders.
pub fn weight_total(endpoints: &[EndpointInput]) -> i64 {
    endpoints.iter().filter_map(|e| parse_int(&e.weight, 0, 100).ok()).sum()
}

/// Everything about a MaaS model that can be checked without the database.
pub const MAX_FALLBACKS: usize = 5;

/// Fallbacks (how many, none twice), the retry policy and the health check.
#[cfg(any(test, feature = "ssr"))]
fn fleet(e: &mut FieldErrors, input: &ModelInput) {
    if input.fallbacks.len() > MAX_FALLBACKS {
        e.add("fallbacks", format!("at most {MAX_FALLBACKS} fallback models"));
    } else if input.fallbacks.iter().enumerate().any(|(i, f)| input.fallbacks[..i].contains(f)) {
        e.add("fallbacks", "a fallback model is listed twice");
    }
    retry(e, &input.retry);
    if let Some(h) = &input.health_check {
        health_check(e, h);
    }
}

/// A retry policy's bounds: at most 10 tries a call, a budget in percent.
#[cfg(any(test, feature = "ssr"))]
fn retry(e: &mut FieldErrors, r: &crate::types::RetryPolicy) {
    if r.max_tries > 10 {
        e.add("retry.max_tries", "at most 10 tries (0: each endpoint once)");
    }
    if r.budget_percent > 100 {
        e.add("retry.budget_percent", "a percentage: 0 to 100");
    }
    if r.on.iter().enumerate().any(|(i, x)| r.on[..i].contains(x)) {
        e.add("retry.on", "a failure is listed twice");
    }
}

/// Health-check bounds: a probe every 1 s to 1 h, answered within its interval, 1–10 probes
/// to change state.
#[cfg(any(test, feature = "ssr"))]
fn health_check(e: &mut FieldErrors, h: &crate::types::HealthCheck) {
    if !(1..=3600).contains(&h.interval_secs) {
        e.add("health_check.interval_secs", "1 to 3600 seconds");
    }
    if h.timeout_secs < 1 || h.timeout_secs > h.interval_secs.clamp(1, 60) {
        e.add("health_check.timeout_secs", "1 second up to the interval (at most 60)");
    }
    for (field, v) in [("health_check.healthy_threshold", h.healthy_threshold), ("health_check.unhealthy_threshold", h.unhealthy_threshold)]
    {
        if !(1..=10).contains(&v) {
            e.add(field, "1 to 10 probes in a row");
        }
    }
}

/// Fallbacks as saved for model `id` (`None`: a new model) against every saved model's
/// (`graph`): each must exist, and none may lead back to `id`, directly or through the
/// fallbacks of its fallbacks.
#[cfg(any(test, feature = "ssr"))]
pub fn fallback_graph(id: Option<i64>, fallbacks: &[i64], graph: &std::collections::HashMap<i64, Vec<i64>>) -> Result<(), String> {
    if let Some(f) = fallbacks.iter().find(|f| !graph.contains_key(f)) {
        return Err(format!("no MaaS model {f}"));
    }
    let Some(id) = id else { return Ok(()) };
    if fallbacks.contains(&id) {
        return Err("a model cannot fall back to itself".into());
    }
    let mut seen = std::collections::HashSet::new();
    let mut todo: Vec<i64> = fallbacks.to_vec();
    while let Some(m) = todo.pop() {
        if m == id {
            return Err("these fallbacks lead back to this model (a cycle)".into());
        }
        if seen.insert(m) {
            todo.extend(graph.get(&m).into_iter().flatten().copied());
        }
    }
    Ok(())
}

pub fn model(input: &ModelInput) -> FieldErrors {
    let mut e = FieldErrors::default();
    if input.marketplace_model_id.is_none() {
        e.add("marketplace_model", "choose a published marketplace model");
    }
    if input.cluster_id.is_none() {
        e.add("cluster", "choose a cluster");
    }
    if input.endpoints.is_empty() {
        e.add("endpoints", "add at least one endpoint");
    } else if input.endpoints.len() > MAX_ENDPOINTS {
        e.add("endpoints", format!("at most {MAX_ENDPOINTS} endpoints"));
    }
    for (i, ep) in input.endpoints.iter().enumerate() {
        required(&mut e, &format!("endpoints.{i}.model_id"), &ep.model_id, 256);
        if let Err(m) = http_url(&ep.url) {
            e.add(format!("endpoints.{i}.url"), m);
        } else if ep.url.trim().len() > 2048 {
            e.add(format!("endpoints.{i}.url"), "at most 2048 characters");
        }
        if let KeyChange::Set(k) = &ep.api_key {
            if k.trim().is_empty() {
                e.add(format!("endpoints.{i}.api_key"), "empty key: use Clear to remove it");
            } else if k.len() > 4096 || k.contains(char::is_control) {
                e.add(format!("endpoints.{i}.api_key"), "not a valid API key");
            }
        }
        if ep.native_apis.is_empty() {
            e.add(format!("endpoints.{i}.native_apis"), "choose at least one API it speaks".to_owned());
        }
        if let Err(m) = endpoint_cap(&ep.max_concurrent) {
            e.add(format!("endpoints.{i}.max_concurrent"), m);
        }
        // Required for weighted; for other policies checked only when given.
        if input.policy == Policy::Weighted || !ep.weight.trim().is_empty() {
            if let Err(m) = parse_int(&ep.weight, 0, 100) {
                e.add(format!("endpoints.{i}.weight"), m);
            }
        }
    }
    if input.policy == Policy::Weighted && !input.endpoints.is_empty() {
        let total = weight_total(&input.endpoints);
        if total != 100 {
            e.add("weights", format!("weights must total 100 (now {total})"));
        }
    }
    if input.rules.len() > MAX_RULES {
        e.add("rules", format!("at most {MAX_RULES} rules"));
    }
    if let Err(m) = reserve_output(&input.reserve_output) {
        e.add("reserve_output", m);
    }
    // Checked on the server only (the form shows its answer next to each field): live
    // checks of these fields would cost the console's bundle more than they save a save.
    #[cfg(any(test, feature = "ssr"))]
    fleet(&mut e, input);
    let mut seen = std::collections::HashSet::new();
    for (i, r) in input.rules.iter().enumerate() {
        if r.workspace_id.is_none() {
            e.add(format!("rules.{i}.workspace"), "choose a workspace");
        }
        if r.target == RuleTarget::ApiKey && r.api_key_id.is_none() {
            e.add(format!("rules.{i}.api_key"), "choose an API key");
        }
        if let Err(m) = parse_int(&r.limit, 1, max_limit(r.kind)) {
            e.add(format!("rules.{i}.limit"), m);
        }
        let key_id = if r.target == RuleTarget::ApiKey { r.api_key_id } else { None };
        // A concurrency rule has no window: at most one per subject. (Two windows of one kind
        // for one subject are fine: 100/min beside 1,000/day.)
        let duration = if r.kind.windowed() { parse_int(&r.duration, 1, MAX_DURATION_SECS) } else { Ok(0) };
        match duration {
            Err(m) => e.add(format!("rules.{i}.duration"), m),
            Ok(d) => {
                if !seen.insert((r.kind, r.target, r.workspace_id, key_id, d)) {
                    let field = if r.kind.windowed() { "duration" } else { "kind" };
                    let what = if r.kind.windowed() { "same kind, target and duration" } else { "one concurrency rule per target" };
                    e.add(format!("rules.{i}.{field}"), format!("duplicate of an earlier rule ({what})"));
                }
            }
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(url: &str, weight: &str) -> EndpointInput {
        EndpointInput {
            id: None,
            model_id: "m".into(),
            url: url.into(),
            api_key: KeyChange::Keep,
            weight: weight.into(),
            skip_stream_usage: false,
            max_concurrent: String::new(),
            native_apis: crate::types::default_apis(),
            draining: false,
        }
    }
    fn base() -> ModelInput {
        ModelInput {
            marketplace_model_id: Some(1),
            cluster_id: Some(1),
            policy: Policy::Weighted,
            endpoints: vec![ep("https://a.example", "50"), ep("http://b.example:8080/v1", "30"), ep("https://c", "20")],
            rules: vec![],
            reserve_output: String::new(),
            affinity_key: Default::default(),
            fallbacks: vec![],
            retry: Default::default(),
            health_check: None,
        }
    }

    #[test]
    fn fallbacks_exist_and_never_lead_back() {
        let graph: std::collections::HashMap<i64, Vec<i64>> = [(1, vec![]), (2, vec![3]), (3, vec![]), (4, vec![1])].into();
        assert_eq!(fallback_graph(Some(1), &[2, 3], &graph), Ok(()));
        assert_eq!(fallback_graph(Some(1), &[1], &graph), Err("a model cannot fall back to itself".into()));
        // 1 → 4 → 1, and 3 → 2 → 3, through another model's list.
        assert_eq!(fallback_graph(Some(1), &[4], &graph), Err("these fallbacks lead back to this model (a cycle)".into()));
        assert_eq!(fallback_graph(Some(3), &[2], &graph), Err("these fallbacks lead back to this model (a cycle)".into()));
        assert_eq!(fallback_graph(Some(1), &[9], &graph), Err("no MaaS model 9".into()));
        // A new model: nothing leads to it yet.
        assert_eq!(fallback_graph(None, &[4], &graph), Ok(()));
        let mut m = base();
        m.fallbacks = vec![2, 2];
        assert_eq!(model(&m).get("fallbacks"), Some("a fallback model is listed twice"));
    }

    #[test]
    fn retry_and_health_check_bounds() {
        let mut m = base();
        m.retry.max_tries = 11;
        m.retry.budget_percent = 101;
        m.health_check = Some(crate::types::HealthCheck { interval_secs: 5, timeout_secs: 6, healthy_threshold: 0, ..Default::default() });
        let e = model(&m);
        assert_eq!(e.get("retry.max_tries"), Some("at most 10 tries (0: each endpoint once)"));
        assert_eq!(e.get("retry.budget_percent"), Some("a percentage: 0 to 100"));
        assert_eq!(e.get("health_check.timeout_secs"), Some("1 second up to the interval (at most 60)"));
        assert_eq!(e.get("health_check.healthy_threshold"), Some("1 to 10 probes in a row"));
        assert_eq!(e.get("health_check.interval_secs"), None);
        m.health_check = Some(Default::default());
        m.retry = Default::default();
        assert!(model(&m).is_empty());
    }

    #[test]
    fn only_same_origin_paths_are_redirect_targets() {
        for good in ["/", "/models", "/models/3/edit", "/login?next=/keys", "/keys?page=2&q=a%20b"] {
            assert_eq!(local_path(good), good);
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "/\tevil",
            "/\t/evil.example",
            "\t//evil.example",
            "https://evil.example",
            "javascript:alert(1)",
            "evil.example",
            "",
            "/\n/evil",
            "/ /evil",
            "/\"/><script>",
            "/x#frag",
        ] {
            assert_eq!(local_path(bad), "/", "{bad:?}");
        }
    }

    #[test]
    fn weighted_must_total_exactly_100() {
        assert!(model(&base()).is_empty());
        let mut m = base();
        m.endpoints[2].weight = "10".into();
        assert_eq!(model(&m).get("weights"), Some("weights must total 100 (now 90)"));
    }

    #[test]
    fn urls_must_be_http_with_a_host() {
        assert_eq!(http_url("ftp://x"), Err("must start with http:// or https://"));
        assert_eq!(http_url("https:///v1"), Err("must name a host, e.g. https://api.example.com"));
        assert_eq!(http_url(""), Err("required"));
        for good in [
            "http://127.0.0.1:9000",
            "https://api.deepseek.com",
            "https://api.example.com/v1",
            "http://vllm-0.vllm.svc.cluster.local:8000/v1/",
            "http://[::1]:8080/v1",
            "https://host.example/openai/deployments/gpt-4o",
            "http://h/a%2Fb",
        ] {
            assert_eq!(http_url(good), Ok(()), "{good}");
        }
        // The hostile entry address of issue 10, and its relatives: nothing but scheme, host,
        // port and path.
        for bad in [
            "http://host/\"><svg/onload=alert(1)>$(id)",
            "http://host/$(id)",
            "http://host/`id`",
            "http://host/a'b",
            "http://host/a;b",
            "http://host/?q=1",
            "http://host/#x",
            "http://user:pw@host/",
            "http://host:0/",
            "http://host:99999/",
            "http://host:80x/",
            "http://-host/",
            "http://ho st/",
            "http://host/a%zz",
            "http://[::1/",
            "http://[nothex]/",
            "http://host\\evil/",
        ] {
            assert!(http_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rules_need_integer_bounds_and_no_duplicates() {
        let mut m = base();
        let rule = RuleInput {
            kind: RuleKind::Requests,
            target: RuleTarget::Workspace,
            workspace_id: Some(1),
            api_key_id: None,
            limit: "10".into(),
            duration: "60".into(),
        };
        m.rules = vec![rule.clone(), rule.clone(), RuleInput { limit: "0".into(), duration: "1.5".into(), ..rule }];
        let e = model(&m);
        assert!(e.get("rules.1.duration").unwrap().starts_with("duplicate"));
        assert_eq!(e.get("rules.2.limit"), Some("must be at least 1"));
        assert_eq!(e.get("rules.2.duration"), Some("must be a whole number"));
        assert!(e.get("rules.0.duration").is_none());
    }

    #[test]
    fn an_endpoints_cap_is_empty_or_a_bounded_whole_number() {
        let mut m = base();
        m.endpoints = ["", "4", "0", "2.5", "100001"]
            .iter()
            .map(|c| EndpointInput { max_concurrent: c.to_string(), ..ep("https://a.example", "") })
            .collect();
        let e = model(&m);
        assert!(e.get("endpoints.0.max_concurrent").is_none() && e.get("endpoints.1.max_concurrent").is_none());
        assert_eq!(e.get("endpoints.2.max_concurrent"), Some("must be at least 1"));
        assert_eq!(e.get("endpoints.3.max_concurrent"), Some("must be a whole number"));
        assert_eq!(e.get("endpoints.4.max_concurrent"), Some("must be at most 100000"));
    }

    #[test]
    fn an_output_reservation_is_empty_or_a_bounded_whole_number() {
        for (typed, error) in [
            ("", None),
            ("300", None),
            ("0", Some("must be at least 1")),
            ("1e3", Some("must be a whole number")),
            ("1000001", Some("must be at most 1000000")),
        ] {
            let e = model(&ModelInput { reserve_output: typed.into(), ..base() });
            assert_eq!(e.get("reserve_output"), error, "{typed:?}");
        }
    }

    #[test]
    fn each_kind_has_its_own_bounds_and_duplicates() {
        let mut m = base();
        let rule = |kind, limit: &str, duration: &str| RuleInput {
            kind,
            target: RuleTarget::Workspace,
            workspace_id: Some(1),
            limit: limit.into(),
            duration: duration.into(),
            ..Default::default()
        };
        m.rules = vec![
            rule(RuleKind::Requests, "10", "60"),
            // Same subject and window, another kind: allowed.
            rule(RuleKind::Tokens, "5000000000", "60"),
            rule(RuleKind::Concurrent, "10", ""),
            rule(RuleKind::Concurrent, "20", "60"),
            rule(RuleKind::Concurrent, "100001", ""),
            rule(RuleKind::Tokens, "1000000000001", "60"),
        ];
        let e = model(&m);
        assert!(e.get("rules.0.limit").is_none() && e.get("rules.1.limit").is_none(), "5e9 tokens is within the tokens' bound: {e:?}");
        assert!(e.get("rules.2.duration").is_none(), "a concurrency rule needs no duration");
        assert_eq!(e.get("rules.3.kind"), Some("duplicate of an earlier rule (one concurrency rule per target)"));
        assert_eq!(e.get("rules.4.limit"), Some("must be at most 100000"));
        assert_eq!(e.get("rules.5.limit"), Some("must be at most 1000000000000"));
        assert_eq!(e.get("rules.5.duration"), Some("duplicate of an earlier rule (same kind, target and duration)"));
    }

    #[test]
    fn at_least_one_endpoint_and_key_rules_need_a_key() {
        let mut m = base();
        m.endpoints.clear();
        m.rules = vec![RuleInput {
            target: RuleTarget::ApiKey,
            workspace_id: Some(1),
            api_key_id: None,
            limit: "1".into(),
            duration: "1".into(),
            ..Default::default()
        }];
        let e = model(&m);
        assert_eq!(e.get("endpoints"), Some("add at least one endpoint"));
        assert_eq!(e.get("rules.0.api_key"), Some("choose an API key"));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn host() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?){0,3}",
                (0u8..=255, 0u8..=255, 0u8..=255, 0u8..=255).prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
                any::<[u16; 8]>().prop_map(|s| format!("[{}]", std::net::Ipv6Addr::from(s))),
            ]
        }

        proptest! {
            /// Every address made of scheme, host, port and a path of the allowed characters
            /// is accepted...
            #[test]
            fn real_urls_are_accepted(scheme in prop_oneof!["http", "https"], host in host(), port in proptest::option::of(1u32..=65535), path in "(/[A-Za-z0-9._~:@+,=!-]{0,12}){0,4}/?") {
                let url = format!("{scheme}://{host}{}{path}", port.map(|p| format!(":{p}")).unwrap_or_default());
                prop_assert_eq!(http_url(&url), Ok(()), "{}", url);
            }

            /// ...and whatever is accepted, from any input, can appear in a snippet or a
            /// request line as it is: no character a shell, a string literal or HTML treats
            /// specially, and nothing but scheme, host, port and path.
            #[test]
            fn accepted_urls_hold_nothing_dangerous(s in "(https?://)?[ -~\t\n\u{80}-\u{10ffff}]{0,40}") {
                if http_url(&s).is_ok() {
                    let t = s.trim();
                    prop_assert!(t.starts_with("http://") || t.starts_with("https://"));
                    prop_assert!(!t.contains(|c: char| c.is_whitespace() || c.is_control() || "\"'`$<>;&|(){}\\?#^*".contains(c) || !c.is_ascii()), "{}", t);
                    prop_assert!(!t.split("://").nth(1).unwrap().split('/').next().unwrap().contains('@'));
                }
            }

            #[test]
            fn redirect_targets_never_leave_the_origin(s in "[ -~\t\n\\\\]{0,30}") {
                let p = local_path(&s);
                prop_assert!(p.starts_with('/'));
                prop_assert!(!p[1..].starts_with(['/', '\\']));
                prop_assert!(!p.contains(|c: char| c.is_control() || c == '\\' || c == ' ' || c == '#'));
                prop_assert!(p == "/" || p == s);
            }

            #[test]
            fn names_hold_only_their_characters(s in "\\PC{0,80}") {
                let mut e = FieldErrors::default();
                name_like(&mut e, "name", &s, 64);
                if e.is_empty() {
                    let t = s.trim();
                    prop_assert!(!t.is_empty() && t.chars().count() <= 64);
                    prop_assert!(t.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c)));
                }
            }

            #[test]
            fn integers_parse_exactly_within_their_bounds(v in any::<i64>(), lo in -1000i64..1000, span in 0i64..1_000_000) {
                let hi = lo + span;
                let r = parse_int(&v.to_string(), lo, hi);
                prop_assert_eq!(r.is_ok(), v >= lo && v <= hi);
                if let Ok(p) = r { prop_assert_eq!(p, v); }
            }

            #[test]
            fn any_text_is_a_clear_integer_error_never_a_panic(s in "\\PC{0,30}") {
                if let Ok(v) = parse_int(&s, 1, MAX_LIMIT) {
                    prop_assert_eq!(s.trim().parse::<i64>().ok(), Some(v));
                }
            }

            #[test]
            fn page_numbers_are_bounded(page in any::<u64>()) {
                prop_assert_eq!(list_query("", page).is_empty(), page <= MAX_PAGE);
            }

            /// Weighted: saved exactly when every weight is a whole number in 0..=100 and they
            /// total 100.
            #[test]
            fn weighted_models_save_iff_the_weights_total_100(ws in proptest::collection::vec(-5i64..120, 1..6)) {
                let mut m = base();
                m.endpoints = ws.iter().map(|w| ep("https://a.example", &w.to_string())).collect();
                let ok = ws.iter().all(|w| (0..=100).contains(w)) && ws.iter().sum::<i64>() == 100;
                prop_assert_eq!(model(&m).is_empty(), ok, "{:?}", model(&m));
            }

            #[test]
            fn limits_and_durations_are_bounded(limit in any::<i64>(), duration in any::<i64>()) {
                let mut m = base();
                m.rules = vec![RuleInput { target: RuleTarget::Workspace, workspace_id: Some(1), api_key_id: None, limit: limit.to_string(), duration: duration.to_string(), ..Default::default() }];
                let e = model(&m);
                prop_assert_eq!(e.get("rules.0.limit").is_none(), (1..=MAX_LIMIT).contains(&limit));
                prop_assert_eq!(e.get("rules.0.duration").is_none(), (1..=MAX_DURATION_SECS).contains(&duration));
            }
        }
    }
}
