//! Small pieces every page uses: the caller, the role gate, field messages, the nav bar.
use crate::api::account::Logout;
use crate::call::{Call, CallForm};
use crate::error::AppError;
use crate::types::{CurrentUser, FieldErrors, Period, QuotaView, Role};
use leptos::prelude::*;
use leptos_router::components::{Redirect, A};
use leptos_router::hooks::use_location;

#[derive(Clone, Copy)]
pub struct Me(pub crate::load::Loaded<Option<CurrentUser>>);

/// Shows `children` only to a logged-in caller with the role; others go to the login page.
#[component]
pub fn RequireRole(#[prop(optional)] operator: bool, children: ChildrenFn) -> impl IntoView {
    let Me(me) = expect_context::<Me>();
    let loc = use_location();
    let children = StoredValue::new(children);
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match me.await {
                    Ok(Some(u)) if !operator || u.role == Role::Operator => children.read_value()().into_any(),
                    Ok(Some(_)) => view! { <p class="error-box">"This page is for operators."</p> }.into_any(),
                    Ok(None) => {
                        let next = loc.pathname.get_untracked();
                        view! { <Redirect path=format!("/login?next={next}")/> }.into_any()
                    }
                    Err(e) => view! { <p class="error-box">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// The message for `field` from the latest failed submission, shown under the field. The
/// field's control (the input before it, or the one in its label) is marked `aria-invalid`
/// and described by the message, so a screen reader says what is wrong when it gets there.
#[component]
pub fn FieldMsg(errors: Signal<Option<FieldErrors>>, #[prop(into)] field: Signal<String>) -> impl IntoView {
    let msg = move || errors.with(|e| e.as_ref().and_then(|e| field.with(|f| e.get(f).map(str::to_owned))));
    let anchor = NodeRef::<leptos::html::Span>::new();
    // Client only (effects do not run on the server): the ids never reach the server's HTML,
    // so hydration sees the same markup.
    Effect::new(move |_| {
        let text = msg();
        let Some(anchor) = anchor.get() else { return };
        let Some(control) = control_of(&anchor, &field.get_untracked()) else { return };
        let id = format!("msg-{}", field.get_untracked().replace(|c: char| !c.is_ascii_alphanumeric(), "-"));
        let id = match anchor.get_attribute("id") {
            Some(existing) => existing,
            None => {
                // Unique on the page: the same field name can appear in two forms.
                static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
                let id = format!("{id}-{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
                let _ = anchor.set_attribute("id", &id);
                id
            }
        };
        if text.is_some() {
            let _ = control.set_attribute("aria-invalid", "true");
            let _ = control.set_attribute("aria-describedby", &id);
        } else {
            let _ = control.remove_attribute("aria-invalid");
            let _ = control.remove_attribute("aria-describedby");
        }
    });
    view! {
        <span class="field-msg" node_ref=anchor>
            <Show when=move || msg().is_some()>
                <span class="field-error" role="alert" data-field=move || field.get()>{msg}</span>
            </Show>
        </span>
    }
}

/// The control a field message belongs to: the input, select or textarea just before it; the
/// one in the label just before it; the one of that name in the form just before it; or the
/// one in the label the message sits in. A message about a group (`weights`, `rules`) has none.
fn control_of(anchor: &web_sys::Element, field: &str) -> Option<web_sys::Element> {
    let is_control = |e: &web_sys::Element| matches!(e.tag_name().as_str(), "INPUT" | "SELECT" | "TEXTAREA");
    let first = |e: &web_sys::Element, sel: &str| e.query_selector(sel).ok().flatten();
    // Other fields' messages between (a form followed by several) are skipped.
    let mut prev = anchor.previous_element_sibling();
    while let Some(p) = prev.clone().filter(|p| p.get_attribute("class").is_some_and(|c| c.split_whitespace().any(|c| c == "field-msg"))) {
        prev = p.previous_element_sibling();
    }
    if let Some(p) = prev {
        if is_control(&p) {
            return Some(p);
        }
        match p.tag_name().as_str() {
            "LABEL" => return first(&p, "input, select, textarea"),
            "FORM" => return first(&p, &format!("[name=\"{field}\"]")),
            _ => {}
        }
    }
    first(&anchor.closest("label").ok().flatten()?, "input, select, textarea")
}

/// Field errors out of a server-function result signal.
pub fn field_errors<T: Clone + Send + Sync + 'static>(
    value: impl Fn() -> Option<Result<T, AppError>> + Send + Sync + 'static,
) -> Signal<Option<FieldErrors>> {
    Signal::derive(move || match value() {
        Some(Err(AppError::Invalid(f))) => Some(f),
        _ => None,
    })
}

/// A failure that is not about one field (not allowed, server down…), or nothing.
#[component]
pub fn ErrorBox<T: Clone + Send + Sync + 'static>(value: Signal<Option<Result<T, AppError>>>) -> impl IntoView {
    move || match value.get() {
        Some(Err(AppError::Invalid(_))) => None,
        Some(Err(e)) => Some(view! { <p class="error-box" role="alert">{e.to_string()}</p> }),
        _ => None,
    }
}

#[component]
pub fn Nav() -> impl IntoView {
    let Me(me) = expect_context::<Me>();
    let logout = Call::<Logout>::new();
    // On a phone the links fold into a menu (style/main.css); the button opens it.
    let menu = RwSignal::new(false);
    Effect::new(move |_| {
        if let Some(Ok(())) = logout.value().get() {
            let _ = window().location().set_href("/login");
        }
    });
    view! {
        <header class="topbar">
            <a class="brand" href="/">"MaaS"</a>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match me.await {
                        Ok(Some(u)) => {
                            let links = if u.role == Role::Operator {
                                view! {
                                    <A href="/models">"Models"</A>
                                    <A href="/usage">"Usage"</A>
                                    <A href="/marketplace/manage">"Marketplace"</A>
                                    <A href="/clusters">"Clusters"</A>
                                    <A href="/workspaces">"Workspaces"</A>
                                    <A href="/keys">"API keys"</A>
                                    <A href="/audit">"Audit"</A>
                                    <A href="/admin-tokens">"Admin tokens"</A>
                                    <A href="/marketplace">"User view"</A>
                                }.into_any()
                            } else {
                                view! {
                                    <A href="/marketplace">"Marketplace"</A>
                                    <A href="/keys">"API keys"</A>
                                }.into_any()
                            };
                            view! {
                                <button type="button" class="menu-toggle" aria-controls="main-nav" aria-expanded=move || menu.get().to_string()
                                    on:click=move |_| menu.update(|m| *m = !*m)>"Menu"</button>
                                <nav id="main-nav" aria-label="Main" class:open=move || menu.get() on:click=move |_| menu.set(false)>{links}</nav>
                                <span class="who">{u.username.clone()} " (" {u.role.as_str()} ")"</span>
                                <CallForm call=logout attr:class="inline">
                                    <button type="submit" class="link">"Log out"</button>
                                </CallForm>
                            }.into_any()
                        }
                        _ => view! { <span></span> }.into_any(),
                    }
                })}
            </Transition>
        </header>
    }
}

/// The fields of a quota (period, token and request budgets), for the form of whichever page
/// sets it (a workspace's, a key's): named as both server functions take them.
#[component]
pub fn QuotaFields(quota: Option<QuotaView>, errors: Signal<Option<FieldErrors>>) -> impl IntoView {
    let period = quota.as_ref().map(|q| q.period).unwrap_or_default();
    let budget = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    let (tokens, requests) = (budget(quota.as_ref().and_then(|q| q.tokens)), budget(quota.as_ref().and_then(|q| q.requests)));
    let spend = quota.as_ref().and_then(|q| q.spend.clone()).unwrap_or_default();
    let pass = quota.as_ref().is_some_and(|q| q.unpriced == "pass");
    let alerts = quota.as_ref().map(|q| q.alerts.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")).unwrap_or_default();
    view! {
        <label>"Per "
            <select name="period">
                <option value="month" selected=period == Period::Month>"calendar month (UTC)"</option>
                <option value="day" selected=period == Period::Day>"calendar day (UTC)"</option>
            </select></label>
        <FieldMsg errors field="period"/>
        <label>"Tokens " <input name="tokens" inputmode="numeric" value=tokens placeholder="no token budget"/></label>
        <FieldMsg errors field="tokens"/>
        <label>"Requests " <input name="requests" inputmode="numeric" value=requests placeholder="no request budget"/></label>
        <FieldMsg errors field="requests"/>
        <label>"Money " <input name="spend" inputmode="decimal" value=spend placeholder="no money budget"/></label>
        <FieldMsg errors field="spend"/>
        <label>"Unpriced models "
            <select name="unpriced">
                <option value="refuse" selected=!pass>"refused"</option>
                <option value="pass" selected=pass>"let through, uncounted"</option>
            </select></label>
        <FieldMsg errors field="unpriced"/>
        <label>"Alerts at % " <input name="alerts" value=alerts placeholder="e.g. 50, 80, 100"/></label>
        <FieldMsg errors field="alerts"/>
        <p class="hint">"All empty: no quota. A spent quota answers 429 insufficient_quota until the period turns."</p>
    }
}

/// A form's submit button with its pending state: disabled and saying `busy` while the
/// action runs, so a double click never submits twice.
#[component]
pub fn SubmitButton(
    #[prop(into)] pending: Signal<bool>,
    label: &'static str,
    busy: &'static str,
    #[prop(optional)] id: &'static str,
) -> impl IntoView {
    view! {
        <button type="submit" id=(!id.is_empty()).then_some(id) disabled=move || pending.get() aria-busy=move || pending.get().then_some("true")>
            {move || if pending.get() { busy } else { label }}
        </button>
    }
}

/// What a [`Notice`] says, and the link to what was made (`href`, text), if any.
pub type NoticeText = (String, Option<(String, String)>);

/// A short notice that something worked: `role="status"`, so a screen reader says it too; with
/// a link to what was made (`(href, text)`), when there is one to go to.
#[component]
pub fn Notice(#[prop(into)] message: Signal<Option<NoticeText>>) -> impl IntoView {
    move || {
        message.get().map(|(m, link)| {
            view! { <p class="notice" role="status">{m}{link.map(|(href, text)| view! { " " <a href=href>{text}</a> })}</p> }
        })
    }
}

/// Clears `form` once `value` holds a success: the next entry starts empty (a password never
/// stays in its field).
pub fn reset_on_success(succeeded: impl Fn() -> bool + 'static, form: NodeRef<leptos::html::Form>) {
    Effect::new(move |_| {
        if succeeded() {
            if let Some(f) = form.get_untracked() {
                f.reset();
            }
        }
    });
}

/// A create form's wiring, the same on every page: the field errors of its last submission
/// (`value`, the action's value), and the form's `NodeRef`, cleared once a submission succeeds.
pub fn create_form<T, V>(value: V) -> (Signal<Option<FieldErrors>>, NodeRef<leptos::html::Form>)
where
    T: Clone + Send + Sync + 'static,
    V: Get<Value = Option<Result<T, AppError>>> + Copy + Send + Sync + 'static,
{
    let form = NodeRef::new();
    reset_on_success(move || matches!(value.get(), Some(Ok(_))), form);
    (field_errors(move || value.get()), form)
}

/// Runs `then` each time `value` (an action's value) turns to a success: an inline editor
/// closes, a list reloads. A refusal runs nothing, so what was typed stays.
pub fn on_success<T, V>(value: V, then: impl Fn() + 'static)
where
    T: Clone + Send + Sync + 'static,
    V: Get<Value = Option<Result<T, AppError>>> + 'static,
{
    Effect::new(move |_| {
        if matches!(value.get(), Some(Ok(_))) {
            then();
        }
    });
}

/// A labelled select with its message: `options` as (value, text), `selected` the value shown
/// first; `field` names the message when it differs from `name`.
#[component]
pub fn SelectField(
    label: &'static str,
    name: &'static str,
    errors: Signal<Option<FieldErrors>>,
    options: Vec<(String, String)>,
    #[prop(optional, into)] selected: String,
    #[prop(optional)] field: &'static str,
) -> impl IntoView {
    view! {
        <div class="field">
            <label>{label}
                <select name=name>
                    {options.into_iter().map(|(v, t)| { let on = v == selected; view! { <option value=v selected=on>{t}</option> } }).collect_view()}
                </select>
            </label>
            <FieldMsg errors field=if field.is_empty() { name } else { field }/>
        </div>
    }
}

/// A destructive button (Delete, Revoke) that asks first, in the page: the dialog names what
/// goes and what goes with it (`consequences`), and acting needs a second, deliberate click.
/// Escape or Cancel closes it.
#[component]
pub fn ConfirmButton(
    #[prop(default = "Delete")] verb: &'static str,
    #[prop(into)] what: String,
    #[prop(into)] consequences: String,
    on_confirm: Callback<()>,
) -> impl IntoView {
    let open = RwSignal::new(false);
    let title = format!("{verb} {what}?");
    let label = format!("{verb} {what}");
    view! {
        <button type="button" class="small danger" aria-haspopup="dialog" aria-label=label on:click=move |_| open.set(true)>{verb}</button>
        <Show when=move || open.get()>
            <div class="dialog-backdrop">
                <div class="dialog" role="alertdialog" aria-modal="true" aria-label=title.clone()
                    on:keydown=move |ev| if ev.key() == "Escape" { open.set(false) }>
                    <h2>{title.clone()}</h2>
                    <p>{consequences.clone()}</p>
                    <div class="dialog-actions">
                        <button type="button" class="danger" on:click=move |_| { open.set(false); on_confirm.run(()); }>{verb}</button>
                        <button type="button" autofocus on:click=move |_| open.set(false)>"Cancel"</button>
                    </div>
                </div>
            </div>
        </Show>
    }
}

/// A Copy button for a value shown once (a key's secret): the clipboard, and "Copied" for a
/// moment.
#[component]
pub fn CopyButton(#[prop(into)] text: String) -> impl IntoView {
    let copied = RwSignal::new(false);
    view! {
        <button type="button" class="small copy" on:click=move |_| {
            let _ = window().navigator().clipboard().write_text(&text);
            copied.set(true);
        }>{move || if copied.get() { "Copied" } else { "Copy" }}</button>
    }
}

/// A labelled field with its message (and an optional hint under it): the one way the forms lay
/// out a text field. The message sits after the label, so it describes the input without
/// becoming part of its name.
#[component]
pub fn TextField(
    label: &'static str,
    name: &'static str,
    errors: Signal<Option<FieldErrors>>,
    #[prop(optional, into)] value: String,
    #[prop(optional)] placeholder: &'static str,
    /// `password`, `date`…; plain text by default.
    #[prop(optional)]
    kind: &'static str,
    #[prop(optional)] autocomplete: &'static str,
    /// A textarea instead of an input.
    #[prop(optional)]
    multiline: bool,
    #[prop(optional)] hint: &'static str,
) -> impl IntoView {
    let opt = |s: &'static str| (!s.is_empty()).then_some(s);
    let control = if multiline {
        view! { <textarea name=name placeholder=opt(placeholder) prop:value=value></textarea> }.into_any()
    } else {
        view! { <input name=name type=opt(kind).unwrap_or("text") value=value placeholder=opt(placeholder) autocomplete=opt(autocomplete)/> }.into_any()
    };
    view! {
        <div class="field">
            <label>{label} {control}</label>
            <FieldMsg errors field=name/>
            {opt(hint).map(|h| view! { <small class="hint">{h}</small> })}
        </div>
    }
}

/// A column heading of a [`DataTable`]; figures (`num`) are right-aligned.
#[derive(Clone, Copy)]
pub struct Col {
    title: &'static str,
    num: bool,
}

/// A text column.
pub const fn col(title: &'static str) -> Col {
    Col { title, num: false }
}

/// A column of figures.
pub const fn num(title: &'static str) -> Col {
    Col { title, num: true }
}

/// What a list shows when it has no rows: `Empty` when there is nothing yet (it says how to
/// start), `NoMatch` when a filter found nothing (it says so, not "create one").
pub enum Nothing {
    Empty(ViewFn),
    NoMatch(String),
}

impl Nothing {
    /// `NoMatch(text)` while `filtered`, else `Empty`.
    pub fn when_filtered(filtered: bool, no_match: String, empty: impl Into<ViewFn>) -> Self {
        if filtered {
            Nothing::NoMatch(no_match)
        } else {
            Nothing::Empty(empty.into())
        }
    }
}

impl<F: Fn() -> V + Send + Sync + 'static, V: IntoView + 'static> From<F> for Nothing {
    fn from(f: F) -> Self {
        Nothing::Empty(f.into())
    }
}

/// Every list's table: its headings and rows (`children`, the `<tr>`s) in a box that scrolls on
/// its own when the window is narrower than the table (a focusable region named `label`, so a
/// keyboard can scroll it and a screen reader names it), or, with no rows, what `nothing` says
/// (`#{id}-empty`).
#[component]
pub fn DataTable(
    id: &'static str,
    label: &'static str,
    /// A `&'static [Col]` or a `Vec<Col>`.
    #[prop(into)]
    columns: Vec<Col>,
    rows: usize,
    #[prop(into)] nothing: Nothing,
    children: Children,
) -> impl IntoView {
    if rows == 0 {
        let empty_id = format!("{id}-empty");
        return match nothing {
            Nothing::Empty(f) => view! { <p class="empty" id=empty_id>{f.run()}</p> }.into_any(),
            Nothing::NoMatch(text) => view! { <p class="empty no-match" id=empty_id>{text}</p> }.into_any(),
        };
    }
    view! {
        <div class="table-scroll" tabindex="0" role="region" aria-label=label>
            <table class="list" id=id>
                <thead><tr>{columns.iter().map(|c| view! { <th class=c.num.then_some("num")>{c.title}</th> }).collect_view()}</tr></thead>
                <tbody>{children()}</tbody>
            </table>
        </div>
    }
    .into_any()
}

/// [`TextField`] for a form kept in signals (the model form): the input shows and sets `value`,
/// its message is the one for `field` (an indexed name such as `endpoints.1.url`).
#[component]
pub fn BoundField(
    #[prop(into)] label: TextProp,
    /// The input's class (what tests and styles find it by).
    class: &'static str,
    value: RwSignal<String>,
    errors: Signal<Option<FieldErrors>>,
    #[prop(into)] field: Signal<String>,
    #[prop(optional)] placeholder: &'static str,
    /// `numeric`, `decimal`…: the keyboard a phone shows.
    #[prop(optional)]
    inputmode: &'static str,
    /// Spans two columns of the row.
    #[prop(optional)]
    wide: bool,
    #[prop(optional)] title: &'static str,
) -> impl IntoView {
    let opt = |s: &'static str| (!s.is_empty()).then_some(s);
    view! {
        <div class="field" class:wide=wide title=opt(title)>
            <label>{move || label.get()} " " <input class=class placeholder=opt(placeholder) inputmode=opt(inputmode)
                prop:value=move || value.get() on:input:target=move |ev| value.set(ev.target().value())/></label>
            <FieldMsg errors field/>
        </div>
    }
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::*;

    const COLUMNS: &[Col] = &[col("Name"), num("Calls")];

    fn render(rows: usize, nothing: Nothing) -> String {
        let owner = Owner::new();
        owner.with(|| {
            view! {
                <DataTable id="t" label="Things" columns=COLUMNS rows nothing>
                    {(0..rows).map(|i| view! { <tr><td>{format!("row {i}")}</td><td>"1"</td></tr> }).collect_view()}
                </DataTable>
            }
            .to_html()
        })
    }

    #[test]
    fn a_table_with_rows_is_a_named_scrolling_region_with_its_headings() {
        let html = render(2, Nothing::when_filtered(false, "none match".into(), || "nothing yet"));
        assert!(html.contains(r#"role="region""#) && html.contains(r#"aria-label="Things""#) && html.contains(r#"tabindex="0""#), "{html}");
        assert!(html.contains(">Name<") && html.contains(r#"<th class="num">Calls"#) && html.contains("<tbody>"), "{html}");
        assert!(html.contains("row 0") && html.contains("row 1"), "{html}");
        assert!(!html.contains("nothing yet") && !html.contains("none match"), "{html}");
    }

    #[test]
    fn an_empty_list_says_how_to_start_and_a_filter_that_finds_nothing_says_so() {
        let fresh = render(0, Nothing::when_filtered(false, "No thing matches.".into(), || "No things yet: create one."));
        assert!(fresh.contains(r#"id="t-empty""#) && fresh.contains("No things yet: create one.") && !fresh.contains("<table"), "{fresh}");
        let filtered = render(0, Nothing::when_filtered(true, "No thing matches.".into(), || "No things yet: create one."));
        assert!(filtered.contains("No thing matches.") && !filtered.contains("create one") && filtered.contains("no-match"), "{filtered}");
    }
}
