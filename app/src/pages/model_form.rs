//! Create / edit a MaaS model: dropdowns, endpoint rows, policy with weight sliders, rule editor.
//! The same `validate::model` the server runs gives live feedback here; the server re-checks all.
use crate::api::models::{self, GetModel, SaveModel};
use crate::call::Call;
use crate::components::{BoundField, ErrorBox, FieldMsg, RequireRole};
use crate::error::AppError;
use crate::load::load;
use crate::types::*;
use crate::validate;
use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_params_map};

#[component]
pub fn NewModelPage() -> impl IntoView {
    let opts = load(|| (), |_| models::FormOptions {});
    view! {
        <RequireRole operator=true>
            <h1>"Create MaaS model"</h1>
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match opts.await {
                        Ok(o) => view! { <ModelForm options=o initial=None/> }.into_any(),
                        Err(e) => view! { <p class="error-box">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </RequireRole>
    }
}

#[component]
pub fn EditModelPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|s| s.parse::<i64>().ok());
    let opts = load(|| (), |_| models::FormOptions {});
    // No such id is no such model (ids start at 1).
    let model = load(id, |id| GetModel { id: id.unwrap_or(0) });
    let health = load(id, |id| models::ModelHealth { id: id.unwrap_or(0) });
    let prices = load(id, |id| models::ModelPrices { id: id.unwrap_or(0) });
    let data = move || async move {
        Ok::<_, AppError>((opts.await?, model.await?, health.await.unwrap_or_default(), prices.await.unwrap_or_default()))
    };
    view! {
        <RequireRole operator=true>
            <h1>"Edit MaaS model"</h1>
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match data().await {
                        Ok((o, m, health, prices)) => {
                            // The same playground users have, through the gateway and this
                            // model's rules (an operator's call counts against a workspace too).
                            let name = o.marketplace.iter().find(|x| x.id == m.marketplace_model_id).map(|x| x.name.clone()).unwrap_or_default();
                            let spaces: Vec<(i64, String)> = o.workspaces.iter().map(|w| (w.id, w.name.clone())).collect();
                            let enabled = m.enabled;
                            let model_id = m.id;
                            let base_url = o.clusters.iter().find(|c| c.id == m.cluster_id).map(|c| crate::types::access_path(&c.entry_address)).unwrap_or_default();
                            view! {
                                <ModelForm options=o initial=Some(m)/>
                                <h2>"Endpoint health"</h2>
                                <div inner_html=health/>
                                <h2>"Prices"</h2>
                                <crate::pages::model_prices::Prices id=model_id html=prices/>
                                <h2>"Playground"</h2>
                                {if !enabled {
                                    view! { <p class="hint">"Enable the model to try it: a disabled model answers 404."</p> }.into_any()
                                } else if spaces.is_empty() {
                                    view! { <p class="hint">"Create a workspace to try the model: the calls count against one."</p> }.into_any()
                                } else {
                                    view! { <crate::pages::playground::Playground model=name base_url workspaces=spaces/> }.into_any()
                                }}
                            }.into_any()
                        }
                        Err(e) => view! { <p class="error-box">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </RequireRole>
    }
}

#[derive(Clone, Copy)]
struct EpRow {
    key: u64,
    id: Option<i64>,
    has_key: bool,
    model_id: RwSignal<String>,
    url: RwSignal<String>,
    api_key: RwSignal<String>,
    clear_key: RwSignal<bool>,
    weight: RwSignal<String>,
    skip_stream_usage: RwSignal<bool>,
    max_concurrent: RwSignal<String>,
    native_apis: RwSignal<Vec<Api>>,
    draining: RwSignal<bool>,
}

impl EpRow {
    fn new(key: u64, weight: &str) -> Self {
        EpRow {
            key,
            id: None,
            has_key: false,
            model_id: RwSignal::new(String::new()),
            url: RwSignal::new(String::new()),
            api_key: RwSignal::new(String::new()),
            clear_key: RwSignal::new(false),
            weight: RwSignal::new(weight.into()),
            skip_stream_usage: RwSignal::new(false),
            max_concurrent: RwSignal::new(String::new()),
            native_apis: RwSignal::new(crate::types::default_apis()),
            draining: RwSignal::new(false),
        }
    }
    fn input(&self) -> EndpointInput {
        let k = self.api_key.get();
        EndpointInput {
            id: self.id,
            model_id: self.model_id.get(),
            url: self.url.get(),
            api_key: if !k.is_empty() {
                KeyChange::Set(k)
            } else if self.clear_key.get() {
                KeyChange::Clear
            } else {
                KeyChange::Keep
            },
            weight: self.weight.get(),
            skip_stream_usage: self.skip_stream_usage.get(),
            max_concurrent: self.max_concurrent.get(),
            native_apis: self.native_apis.get(),
            draining: self.draining.get(),
        }
    }
}

#[derive(Clone, Copy)]
struct RuleRow {
    key: u64,
    kind: RwSignal<RuleKind>,
    target: RwSignal<RuleTarget>,
    workspace: RwSignal<Option<i64>>,
    api_key: RwSignal<Option<i64>>,
    limit: RwSignal<String>,
    duration: RwSignal<String>,
}

impl RuleRow {
    fn input(&self) -> RuleInput {
        RuleInput {
            kind: self.kind.get(),
            target: self.target.get(),
            workspace_id: self.workspace.get(),
            api_key_id: self.api_key.get(),
            limit: self.limit.get(),
            duration: self.duration.get(),
        }
    }
}

#[component]
fn ModelForm(options: FormOptions, initial: Option<ModelDetail>) -> impl IntoView {
    let options = StoredValue::new(options);
    let edit_id = initial.as_ref().map(|m| m.id);
    // Sent back with the save: refused (and said so) if someone changed the model since.
    let revision = initial.as_ref().map(|m| m.revision);
    let next_key = StoredValue::new(0u64);
    let fresh = move || {
        let k = next_key.get_value();
        next_key.set_value(k + 1);
        k
    };

    let mm = RwSignal::new(initial.as_ref().map(|m| m.marketplace_model_id));
    let cluster = RwSignal::new(initial.as_ref().map(|m| m.cluster_id));
    let policy = RwSignal::new(initial.as_ref().map(|m| m.policy).unwrap_or_default());
    let affinity_key = RwSignal::new(initial.as_ref().map(|m| m.affinity_key).unwrap_or_default());
    let eps = RwSignal::new(match &initial {
        Some(m) => m
            .endpoints
            .iter()
            .map(|e| {
                let r = EpRow::new(fresh(), &e.weight.to_string());
                r.model_id.set(e.model_id.clone());
                r.url.set(e.url.clone());
                r.skip_stream_usage.set(e.skip_stream_usage);
                r.max_concurrent.set(e.max_concurrent.map(|c| c.to_string()).unwrap_or_default());
                r.native_apis.set(e.native_apis.clone());
                r.draining.set(e.draining);
                EpRow { id: Some(e.id), has_key: e.has_key, ..r }
            })
            .collect(),
        None => vec![EpRow::new(fresh(), "100")],
    });
    let rules: RwSignal<Vec<RuleRow>> = RwSignal::new(
        initial
            .as_ref()
            .map(|m| {
                m.rules
                    .iter()
                    .map(|r| RuleRow {
                        key: fresh(),
                        kind: RwSignal::new(r.kind),
                        target: RwSignal::new(r.target),
                        workspace: RwSignal::new(Some(r.workspace_id)),
                        api_key: RwSignal::new(r.api_key_id),
                        limit: RwSignal::new(r.limit.to_string()),
                        // A concurrency rule has no window; switched to another kind, it starts at a minute.
                        duration: RwSignal::new(if r.kind.windowed() { r.duration.to_string() } else { "60".into() }),
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default(),
    );

    let fleet = FleetForm::new(initial.as_ref());
    let reserve_output = RwSignal::new(initial.as_ref().and_then(|m| m.reserve_output).map(|r| r.to_string()).unwrap_or_default());
    let to_input = move || {
        let (fallbacks, retry, health_check) = fleet.input();
        ModelInput {
            marketplace_model_id: mm.get(),
            cluster_id: cluster.get(),
            policy: policy.get(),
            endpoints: eps.get().iter().map(EpRow::input).collect(),
            rules: rules.get().iter().map(RuleRow::input).collect(),
            reserve_output: reserve_output.get(),
            affinity_key: affinity_key.get(),
            fallbacks,
            retry,
            health_check,
        }
    };
    let total = Memo::new(move |_| validate::weight_total(&eps.get().iter().map(EpRow::input).collect::<Vec<_>>()));
    let weights_ok = move || policy.get() != Policy::Weighted || total.get() == 100;

    let save = Call::<SaveModel>::new();
    let errors = RwSignal::new(None::<FieldErrors>);
    let submitted = RwSignal::new(false);
    // Live re-validation once the operator has tried to save, so fixed fields clear at once.
    Effect::new(move |_| {
        if submitted.get() {
            let e = validate::model(&to_input());
            errors.set((!e.is_empty()).then_some(e));
        }
    });
    let navigate = use_navigate();
    Effect::new(move |_| match save.value().get() {
        Some(Ok(_)) => navigate("/models", Default::default()),
        Some(Err(AppError::Invalid(f))) => errors.set(Some(f)),
        _ => {}
    });
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        submitted.set(true);
        let input = to_input();
        let e = validate::model(&input);
        if e.is_empty() {
            save.dispatch_json(SaveModel { id: edit_id, revision, input });
        } else {
            errors.set(Some(e));
        }
    };
    let errs: Signal<Option<FieldErrors>> = errors.into();

    // The chosen marketplace model's kind decides which fields apply.
    let kind = Memo::new(move |_| {
        let id = mm.get();
        options.with_value(|o| id.and_then(|id| o.marketplace.iter().find(|m| m.id == id)).map(|m| m.kind).unwrap_or_default())
    });
    let access = move || {
        let o = options.read_value();
        let name = mm.get().and_then(|id| o.marketplace.iter().find(|m| m.id == id)).map(|m| m.name.clone());
        let base = cluster.get().and_then(|id| o.clusters.iter().find(|c| c.id == id)).map(|c| access_path(&c.entry_address));
        match (base, name) {
            (Some(b), Some(n)) => format!("{b}  ·  model = \"{n}\""),
            (Some(b), None) => format!("{b}  ·  choose a marketplace model"),
            _ => "choose a cluster and a marketplace model".to_string(),
        }
    };

    view! {
        // The kind's class hides what does not apply to it (style/main.css): cheaper than a view
        // per field in the bundle.
        <form class=move || if kind.get() == ModelKind::Chat { "model-form card" } else { "model-form card not-chat" } id="model-form" on:submit=on_submit novalidate>
            <div class="columns">
                <label>"Marketplace model"
                    <select id="marketplace-select" on:change:target=move |ev| mm.set(ev.target().value().parse().ok())>
                        <option value="" selected=move || mm.get().is_none()>"Choose…"</option>
                        {move || options.with_value(|o| o.marketplace.iter()
                            .filter(|m| m.published || Some(m.id) == mm.get_untracked())
                            .map(|m| { let id = m.id; view! {
                                <option value=id.to_string() selected=move || mm.get() == Some(id)>{m.name.clone()}</option>
                            }}).collect_view())}
                    </select>
                    <FieldMsg errors=errs field="marketplace_model"/>
                </label>
                <label>"Cluster"
                    <select id="cluster-select" on:change:target=move |ev| cluster.set(ev.target().value().parse().ok())>
                        <option value="" selected=move || cluster.get().is_none()>"Choose…"</option>
                        {move || options.with_value(|o| o.clusters.iter().map(|c| { let id = c.id; view! {
                            <option value=id.to_string() selected=move || cluster.get() == Some(id)>{c.name.clone()}</option>
                        }}).collect_view())}
                    </select>
                    <FieldMsg errors=errs field="cluster"/>
                </label>
            </div>
            <p class="access">"Access path: " <code id="access-preview">{access}</code></p>
            <p class="hint" id="model-kind">{move || if mm.get().is_some() { kind.get().label() } else { "" }} " model"</p>

            <h2>"Load balancing"</h2>
            <div class="policy" role="radiogroup">
                {Policy::ALL.into_iter().map(|p| view! {
                    <label class="radio">
                        <input type="radio" name="policy" value=p.as_str() prop:checked=move || policy.get() == p
                            on:change=move |_| policy.set(p)/>
                        {p.label()}
                    </label>
                }).collect_view()}
            </div>
            <label class="affinity-key" hidden=move || policy.get() != Policy::Affinity>"Conversation key"
                <select id="affinity-key" on:change:target=move |ev| affinity_key.set(AffinityKey::parse(&ev.target().value()))>
                    {AffinityKey::ALL.into_iter().map(|k| view! {
                        <option value=k.as_str() selected=move || affinity_key.get() == k>{k.as_str()}</option>
                    }).collect_view()}
                </select>
                <small>"Calls with the same key go to the same endpoint (its prefix cache) while it is usable and not overloaded."</small>
            </label>

            <h2>"Endpoints"</h2>
            <FieldMsg errors=errs field="endpoints"/>
            <div class="rows" id="endpoint-rows">
                <For each=move || eps.get() key=|r| r.key let:row>
                    <EndpointRowView row eps policy errors=errs/>
                </For>
            </div>
            <button type="button" class="small" id="add-endpoint"
                on:click=move |_| eps.update(|v| v.push(EpRow::new(fresh(), if v.is_empty() { "100" } else { "0" })))>"+ Add endpoint"</button>
            <Show when=move || policy.get() == Policy::Weighted>
                <p id="weight-total" class=move || if total.get() == 100 { "total ok" } else { "total bad" }>
                    {move || format!("Total weight: {} / 100", total.get())}
                </p>
                <FieldMsg errors=errs field="weights"/>
            </Show>

            <h2>"Rate-limit rules"</h2>
            <FieldMsg errors=errs field="rules"/>
            <div class="rows" id="rule-rows">
                <For each=move || rules.get() key=|r| r.key let:row>
                    <RuleRowView row rules options errors=errs/>
                </For>
            </div>
            <button type="button" class="small" id="add-rule" on:click=move |_| rules.update(|v| v.push(RuleRow {
                key: fresh(),
                kind: RwSignal::new(RuleKind::Requests),
                target: RwSignal::new(RuleTarget::ApiKey),
                workspace: RwSignal::new(None),
                api_key: RwSignal::new(None),
                limit: RwSignal::new("60".into()),
                duration: RwSignal::new("60".into()),
            }))>"+ Add rule"</button>
                <label class="reserve-output">"Output tokens reserved per call without max_tokens"
                    <input id="reserve-output" inputmode="numeric" placeholder="1024 (default)" prop:value=move || reserve_output.get()
                        on:input:target=move |ev| reserve_output.set(ev.target().value())/>
                    <small>"What a call reserves in token rules and quotas until its real usage is known."</small>
                    <FieldMsg errors=errs field="reserve_output"/>
                </label>

            <Fleet options edit_id cluster fleet errors=errs/>

            <ErrorBox value=save.value()/>
            <div class="form-actions">
                <a href="/models" class="button secondary">"Cancel"</a>
                <Show when=move || !weights_ok()>
                    <span id="save-why" class="save-why">{move || format!("The weights total {}: they must total exactly 100 to save.", total.get())}</span>
                </Show>
                <button type="submit" id="save-model" disabled=move || save.pending().get() || !weights_ok()
                    aria-describedby=move || (!weights_ok()).then_some("save-why")>
                    {move || if save.pending().get() { "Saving…" } else if edit_id.is_some() { "Save changes" } else { "Create model" }}
                </button>
            </div>
        </form>
    }
}

#[component]
fn EndpointRowView(row: EpRow, eps: RwSignal<Vec<EpRow>>, policy: RwSignal<Policy>, errors: Signal<Option<FieldErrors>>) -> impl IntoView {
    let key = row.key;
    let idx = move || eps.with(|v| v.iter().position(|r| r.key == key).unwrap_or(0));
    let f = move |name: &'static str| Signal::derive(move || format!("endpoints.{}.{name}", idx()));
    let key_hint = if row.has_key { "set (leave blank to keep)" } else { "not set" };
    view! {
        <div class="row endpoint-row">
            <BoundField label="Model ID" class="ep-model-id" placeholder="deepseek-chat" value=row.model_id errors field=f("model_id")/>
            <BoundField label="Endpoint URL" class="ep-url" placeholder="https://api.deepseek.com" value=row.url errors field=f("url") wide=true/>
            <div class="field">
                <label>"API key " <small class="key-state">{key_hint}</small>
                    <input class="ep-key" type="password" autocomplete="off" placeholder="sk-…" prop:value=move || row.api_key.get()
                        on:input:target=move |ev| row.api_key.set(ev.target().value())/>
                </label>
                {row.has_key.then(|| view! {
                    <label class="inline"><input type="checkbox" class="ep-clear-key" prop:checked=move || row.clear_key.get()
                        on:change:target=move |ev| row.clear_key.set(ev.target().checked())/>" clear saved key"</label>
                })}
                <FieldMsg errors field=f("api_key")/>
            </div>
            <Show when=move || policy.get() == Policy::Weighted>
                <label>"Weight"
                    <span class="slider">
                        <input type="range" class="ep-weight" min="0" max="100" step="1" prop:value=move || row.weight.get()
                            on:input:target=move |ev| row.weight.set(ev.target().value())/>
                        // The exact value, typed (or stepped with the arrow keys).
                        <input type="number" class="ep-weight-value" min="0" max="100" step="1" aria-label="Weight, exact"
                            prop:value=move || row.weight.get() on:input:target=move |ev| row.weight.set(ev.target().value())/>
                    </span>
                    <FieldMsg errors field=f("weight")/></label>
            </Show>
            <BoundField label="Max concurrent" class="ep-max-concurrent" inputmode="numeric" placeholder="no cap" value=row.max_concurrent errors field=f("max_concurrent")
                title="Calls sent to this upstream at once (a self-hosted server's slots); more go to the next endpoint, or wait. Empty: no cap"/>
            <div class="field ep-apis" title="The APIs this upstream speaks as they are. Messages and Responses calls to one that speaks only chat completions are translated">
                <span class="label">"Speaks"</span>
                {Api::ALL.into_iter().map(|api| view! {
                    <label class="inline"><input type="checkbox" class=format!("ep-api-{}", api.as_str())
                        prop:checked=move || row.native_apis.with(|a| a.contains(&api))
                        on:change:target=move |ev| {
                            let on = ev.target().checked();
                            row.native_apis.update(|a| {
                                a.retain(|x| *x != api);
                                if on {
                                    a.push(api);
                                    a.sort();
                                }
                            });
                        }/>" " {api.label()}</label>
                }).collect_view()}
                <FieldMsg errors field=f("native_apis")/>
            </div>
            <label class="inline stream-usage" title="For upstreams that refuse stream_options: their streams' token usage is then unknown">
                <input type="checkbox" class="ep-stream-usage" prop:checked=move || !row.skip_stream_usage.get()
                    on:change:target=move |ev| row.skip_stream_usage.set(!ev.target().checked())/>
                " Ask for stream usage"</label>
            <label class="inline" title="No new calls go to a drained endpoint; calls under way finish">
                <input type="checkbox" class="ep-drain" prop:checked=move || row.draining.get()
                    on:change:target=move |ev| row.draining.set(ev.target().checked())/>
                " Drain"</label>
            <button type="button" class="small danger remove-endpoint" on:click=move |_| eps.update(|v| v.retain(|r| r.key != key))>"Remove"</button>
        </div>
    }
}

#[component]
fn RuleRowView(
    row: RuleRow,
    rules: RwSignal<Vec<RuleRow>>,
    options: StoredValue<FormOptions>,
    errors: Signal<Option<FieldErrors>>,
) -> impl IntoView {
    let key = row.key;
    let idx = move || rules.with(|v| v.iter().position(|r| r.key == key).unwrap_or(0));
    let f = move |name: &'static str| Signal::derive(move || format!("rules.{}.{name}", idx()));
    view! {
        <div class="row rule-row">
            <label>"Limits"
                <select class="rule-kind" on:change:target=move |ev| row.kind.set(RuleKind::parse(&ev.target().value()).unwrap_or_default())>
                    <option value="requests" selected=move || row.kind.get() == RuleKind::Requests>"Requests per window"</option>
                    <option value="tokens" selected=move || row.kind.get() == RuleKind::Tokens>"Tokens per window"</option>
                    <option value="concurrent" selected=move || row.kind.get() == RuleKind::Concurrent>"Concurrent calls"</option>
                </select>
                <FieldMsg errors field=f("kind")/></label>
            <label>"Target"
                <select class="rule-target" on:change:target=move |ev| row.target.set(RuleTarget::parse(&ev.target().value()).unwrap_or_default())>
                    <option value="api_key" selected=move || row.target.get() == RuleTarget::ApiKey>"API key"</option>
                    <option value="workspace" selected=move || row.target.get() == RuleTarget::Workspace>"Workspace (all keys)"</option>
                </select></label>
            <label>"Workspace"
                <select class="rule-workspace" on:change:target=move |ev| { row.workspace.set(ev.target().value().parse().ok()); row.api_key.set(None); }>
                    <option value="" selected=move || row.workspace.get().is_none()>"Choose…"</option>
                    {options.with_value(|o| o.workspaces.iter().map(|w| { let id = w.id; view! {
                        <option value=id.to_string() selected=move || row.workspace.get() == Some(id)>{w.name.clone()}</option>
                    }}).collect_view())}
                </select>
                <FieldMsg errors field=f("workspace")/></label>
            <Show when=move || row.target.get() == RuleTarget::ApiKey>
                <label>"API key"
                    <select class="rule-key" on:change:target=move |ev| row.api_key.set(ev.target().value().parse().ok())>
                        <option value="" selected=move || row.api_key.get().is_none()>"Choose…"</option>
                        {move || {
                            let ws = row.workspace.get();
                            options.with_value(|o| o.keys.iter().filter(|k| Some(k.workspace_id) == ws).map(|k| { let id = k.id; view! {
                                <option value=id.to_string() selected=move || row.api_key.get() == Some(id)>{format!("{} ({})", k.name, k.public_id)}</option>
                            }}).collect_view())
                        }}
                    </select>
                    <FieldMsg errors field=f("api_key")/></label>
            </Show>
            <BoundField label=move || format!("Limit ({})", row.kind.get().unit()) class="rule-limit" inputmode="numeric" value=row.limit errors field=f("limit")/>
            <Show when=move || row.kind.get().windowed()>
                <BoundField label="Duration (seconds)" class="rule-duration" inputmode="numeric" value=row.duration errors field=f("duration")/>
            </Show>
            <button type="button" class="small danger remove-rule" on:click=move |_| rules.update(|v| v.retain(|r| r.key != key))>"Remove"</button>
        </div>
    }
}

/// The "Fleet" section's state, in the signal types the form already has (each new signal
/// type costs the bundle a few kilobytes): numbers as typed, choices as their names.
#[derive(Clone, Copy)]
struct FleetForm {
    /// Fallback model ids, as the three selects hold them ("" for none).
    fallbacks: [RwSignal<String>; 3],
    retry_on: [RwSignal<bool>; 4],
    max_tries: RwSignal<String>,
    budget: RwSignal<String>,
    check_on: RwSignal<bool>,
    probe: RwSignal<String>,
    /// interval, timeout, unhealthy threshold, healthy threshold.
    check: [RwSignal<String>; 4],
}

impl FleetForm {
    fn new(m: Option<&ModelDetail>) -> Self {
        let s = |v: String| RwSignal::new(v);
        let n = |v: u32| RwSignal::new(v.to_string());
        let retry = m.map(|m| m.retry.clone()).unwrap_or_default();
        let hc = m.and_then(|m| m.health_check);
        let h = hc.unwrap_or_default();
        let fb = |i: usize| s(m.and_then(|m| m.fallbacks.get(i)).map(|f| f.to_string()).unwrap_or_default());
        FleetForm {
            fallbacks: [fb(0), fb(1), fb(2)],
            retry_on: RetryOn::ALL.map(|r| RwSignal::new(retry.on.contains(&r))),
            max_tries: n(retry.max_tries),
            budget: n(retry.budget_percent),
            check_on: RwSignal::new(hc.is_some()),
            probe: s(h.probe.as_str().to_owned()),
            check: [n(h.interval_secs), n(h.timeout_secs), n(h.unhealthy_threshold), n(h.healthy_threshold)],
        }
    }

    /// What the input carries; a number that does not parse is 0, which validation refuses
    /// with what the field takes.
    fn input(&self) -> (Vec<i64>, RetryPolicy, Option<HealthCheck>) {
        let n = |v: RwSignal<String>| v.get().trim().parse().unwrap_or(0);
        let fallbacks = self.fallbacks.iter().map_while(|f| f.get().parse().ok()).collect();
        let on = RetryOn::ALL.into_iter().zip(self.retry_on).filter(|(_, s)| s.get()).map(|(r, _)| r).collect();
        let retry = RetryPolicy { on, max_tries: n(self.max_tries), budget_percent: n(self.budget) };
        let [interval_secs, timeout_secs, unhealthy_threshold, healthy_threshold] = self.check.map(n);
        let check = self.check_on.get().then(|| HealthCheck {
            probe: ProbeKind::parse(&self.probe.get()),
            interval_secs,
            timeout_secs,
            healthy_threshold,
            unhealthy_threshold,
        });
        (fallbacks, retry, check)
    }
}

/// Fallback models, the retry policy and active health checks.
#[component]
fn Fleet(
    options: StoredValue<FormOptions>,
    edit_id: Option<i64>,
    cluster: RwSignal<Option<i64>>,
    fleet: FleetForm,
    errors: Signal<Option<FieldErrors>>,
) -> impl IntoView {
    const CHECK: [(&str, &str, &str); 4] = [
        ("Every (s)", "health-interval", "health_check.interval_secs"),
        ("Timeout (s)", "health-timeout", "health_check.timeout_secs"),
        ("Out after failures", "health-unhealthy", "health_check.unhealthy_threshold"),
        ("Back after passes", "health-healthy", "health_check.healthy_threshold"),
    ];
    view! {
        <h2>"Fleet"</h2>
        <div class="columns fleet">
            <div class="field" id="fallbacks">
                <span class="label" id="fallbacks-label">"Fallback models, in order"</span>
                {fleet.fallbacks.into_iter().map(|sel| view! {
                    <select class="fallback" aria-labelledby="fallbacks-label" on:change:target=move |ev| sel.set(ev.target().value())>
                        <option value="">"—"</option>
                        {move || options.with_value(|o| o.models.iter()
                            .filter(|(id, _, c)| Some(*id) != edit_id && Some(*c) == cluster.get())
                            .map(|(id, name, _)| { let id = id.to_string(); view! {
                                <option selected=sel.get_untracked() == id value=id>{name.clone()}</option>
                            }}).collect_view())}
                    </select>
                }).collect_view()}
                <small>"Answer when none of this model's endpoints can (down, draining, full, 429 or 5xx)."</small>
                <FieldMsg errors field="fallbacks"/>
            </div>
            <div class="field" id="retry">
                <span class="label">"Retry the next endpoint after"</span>
                {RetryOn::ALL.into_iter().zip(fleet.retry_on).map(|(r, on)| view! {
                    <label class="inline"><input type="checkbox" data-on=r.as_str() prop:checked=move || on.get()
                        on:change:target=move |ev| on.set(ev.target().checked())/>" " {r.as_str()}</label>
                }).collect_view()}
                <BoundField label="Tries per call (0: each endpoint once)" class="retry-max-tries" inputmode="numeric" value=fleet.max_tries errors field="retry.max_tries"/>
                <BoundField label="Retry budget, % of calls" class="retry-budget" inputmode="numeric" value=fleet.budget errors field="retry.budget_percent"/>
            </div>
            <div class="field" id="health-check">
                <label class="inline"><input type="checkbox" id="health-on" prop:checked=move || fleet.check_on.get()
                    on:change:target=move |ev| fleet.check_on.set(ev.target().checked())/>" Health checks"</label>
                <div hidden=move || !fleet.check_on.get()>
                    <label>"Probe"
                        <select id="health-probe" on:change:target=move |ev| fleet.probe.set(ev.target().value())>
                            {ProbeKind::ALL.into_iter().map(|k| view! {
                                <option selected=fleet.probe.get_untracked() == k.as_str()>{k.as_str()}</option>
                            }).collect_view()}
                        </select></label>
                    {CHECK.into_iter().zip(fleet.check).map(|((label, class, field), value)| view! {
                        <BoundField label class inputmode="numeric" value errors field/>
                    }).collect_view()}
                </div>
            </div>
        </div>
    }
}
