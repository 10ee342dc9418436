//! Validation rules that need no database. The form runs them as the operator types; the
//! server runs them again (and the database-dependent checks) because the browser is never
//! trusted.
use crate::types::*;

pub const MAX_LIMIT: i64 = 1_000_000_000;
/// One week: longer windows are almost always a units mistake (ms typed as s).
pub const MAX_DURATION_SECS: i64 = 7 * 24 * 3600;
pub const MAX_ENDPOINTS: usize = 64;
pub const MAX_RULES: usize = 64;

/// `Ok(())` for an absolute http(s) URL with a host; the message otherwise.
pub fn http_url(s: &str) -> Result<(), &'static str> {
    let s = s.trim();
    if s.is_empty() {
        return Err("required");
    }
    let rest = if let Some(r) = s.strip_prefix("https://") {
        r
    } else if let Some(r) = s.strip_prefix("http://") {
        r
    } else {
        return Err("must start with http:// or https://");
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') || host.contains(char::is_whitespace) || host.contains('@') {
        return Err("must name a host, e.g. https://api.example.com");
    }
    if s.contains(char::is_whitespace) {
        return Err("must not contain spaces");
    }
    Ok(())
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
    if !value.trim().is_empty()
        && !value.trim().chars().all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c))
    {
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
    let mut seen = std::collections::HashSet::new();
    for (i, r) in input.rules.iter().enumerate() {
        if r.workspace_id.is_none() {
            e.add(format!("rules.{i}.workspace"), "choose a workspace");
        }
        if r.target == RuleTarget::ApiKey && r.api_key_id.is_none() {
            e.add(format!("rules.{i}.api_key"), "choose an API key");
        }
        if let Err(m) = parse_int(&r.limit, 1, MAX_LIMIT) {
            e.add(format!("rules.{i}.limit"), m);
        }
        match parse_int(&r.duration, 1, MAX_DURATION_SECS) {
            Err(m) => e.add(format!("rules.{i}.duration"), m),
            Ok(d) => {
                let key_id = if r.target == RuleTarget::ApiKey { r.api_key_id } else { None };
                if !seen.insert((r.target, r.workspace_id, key_id, d)) {
                    e.add(format!("rules.{i}.duration"), "duplicate of an earlier rule (same target and duration)");
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
        EndpointInput { id: None, model_id: "m".into(), url: url.into(), api_key: KeyChange::Keep, weight: weight.into() }
    }
    fn base() -> ModelInput {
        ModelInput {
            marketplace_model_id: Some(1),
            cluster_id: Some(1),
            policy: Policy::Weighted,
            endpoints: vec![ep("https://a.example", "50"), ep("http://b.example:8080/v1", "30"), ep("https://c", "20")],
            rules: vec![],
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
        assert!(http_url("http://127.0.0.1:9000").is_ok());
    }

    #[test]
    fn rules_need_integer_bounds_and_no_duplicates() {
        let mut m = base();
        let rule = RuleInput { target: RuleTarget::Workspace, workspace_id: Some(1), api_key_id: None, limit: "10".into(), duration: "60".into() };
        m.rules = vec![rule.clone(), rule.clone(), RuleInput { limit: "0".into(), duration: "1.5".into(), ..rule }];
        let e = model(&m);
        assert!(e.get("rules.1.duration").unwrap().starts_with("duplicate"));
        assert_eq!(e.get("rules.2.limit"), Some("must be at least 1"));
        assert_eq!(e.get("rules.2.duration"), Some("must be a whole number"));
        assert!(e.get("rules.0.duration").is_none());
    }

    #[test]
    fn at_least_one_endpoint_and_key_rules_need_a_key() {
        let mut m = base();
        m.endpoints.clear();
        m.rules = vec![RuleInput { target: RuleTarget::ApiKey, workspace_id: Some(1), api_key_id: None, limit: "1".into(), duration: "1".into() }];
        let e = model(&m);
        assert_eq!(e.get("endpoints"), Some("add at least one endpoint"));
        assert_eq!(e.get("rules.0.api_key"), Some("choose an API key"));
    }
}
