//! Server functions called from the console's forms and buttons, through one action type.
//!
//! Leptos's `ServerAction<S>` and `ActionForm` compile, once per server function, the action
//! machinery, the server function's client and a serde_qs deserializer that reads the form's
//! fields into `S` in the browser, only for the client to encode them again. With 27 of them
//! that was the largest block of the WASM bundle after the reactive runtime itself. A
//! [`Call<S>`] keeps the typed surface (its answer is `S`'s output or an [`AppError`]) over a
//! single `Action<Request, Answer>`: a [`CallForm`] posts its fields as the browser encodes
//! them, [`Call::dispatch`] encodes `S` as a form would, and only reading the answer (postcard,
//! as every server function answers: `api`) is compiled per type.
use crate::error::AppError;
use leptos::prelude::*;
use serde::{de::DeserializeOwned, Serialize};
use server_fn::error::FromServerFnError;
use server_fn::ServerFn;
use std::marker::PhantomData;

pub(crate) const FORM: &str = "application/x-www-form-urlencoded";

/// One call of a server function as it goes over the wire (or why its arguments could not be
/// encoded).
#[derive(Clone)]
// Read by the browser's `send` only: the server never dispatches.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub struct Request {
    path: &'static str,
    content_type: &'static str,
    body: Result<String, String>,
}

/// What came back: the status and the body, or why nothing did.
#[derive(Clone, PartialEq, Serialize, serde::Deserialize)]
pub enum Answer {
    Http(u16, Vec<u8>),
    Failed(String),
}

/// A server function `S` the page calls: dispatch it, watch it run, read its answer.
pub struct Call<S> {
    action: Action<Request, Answer>,
    _s: PhantomData<fn() -> S>,
}

impl<S> Clone for Call<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for Call<S> {}

impl<S> Default for Call<S>
where
    S: ServerFn<Error = AppError> + 'static,
    S::Output: DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Call<S>
where
    S: ServerFn<Error = AppError> + 'static,
    S::Output: DeserializeOwned + Clone + Send + Sync + 'static,
{
    pub fn new() -> Self {
        Call { action: Action::new_unsync(send), _s: PhantomData }
    }

    /// Calls it with `args`, encoded as its form would post them.
    pub fn dispatch(&self, args: S)
    where
        S: Serialize,
    {
        self.send(FORM, serde_qs::to_string(&args).map_err(|e| e.to_string()));
    }

    /// Calls it with `args` as JSON (a server function declared `input = Json`).
    pub fn dispatch_json(&self, args: S)
    where
        S: Serialize,
    {
        self.send("application/json", serde_json::to_string(&args).map_err(|e| e.to_string()));
    }

    fn send(&self, content_type: &'static str, body: Result<String, String>) {
        self.action.dispatch(Request { path: S::PATH, content_type, body });
    }

    /// The answer of the latest call, once it came.
    pub fn value(&self) -> Signal<Option<Result<S::Output, AppError>>> {
        let value = self.action.value();
        Signal::derive(move || value.with(|a| a.as_ref().map(read::<S::Output>)))
    }

    /// Whether a call is under way.
    pub fn pending(&self) -> Memo<bool> {
        self.action.pending()
    }

    /// Changes when a call succeeds, never when one is refused: what a list showing the call's
    /// effect reloads on. A refusal changed nothing, and reloading the list would rebuild an
    /// editor inside it from the stored row, wiping what the user is typing to correct it.
    pub fn saved(&self) -> Memo<bool> {
        saved(self.action)
    }
}

/// Flips at each answer that is a success (out of the generic `Call`: compiled once). Read from
/// the answer alone: the action bumps its version before it stores the answer. A `bool`, as
/// `pending`'s memo: one more memo type would cost the bundle most of a kilobyte.
fn saved(action: Action<Request, Answer>) -> Memo<bool> {
    let value = action.value();
    Memo::new(move |prev| {
        let ok = value.with(|a| matches!(a, Some(Answer::Http(200..=299, _))));
        prev.copied().unwrap_or(false) ^ ok
    })
}

/// A successful answer in postcard, a refusal as the `AppError` it encodes.
pub(crate) fn read<T: DeserializeOwned>(answer: &Answer) -> Result<T, AppError> {
    match answer {
        Answer::Http(200..=299, body) => postcard::from_bytes(body).map_err(|e| AppError::Transport(format!("unreadable answer: {e}"))),
        Answer::Http(_, body) => Err(AppError::de(body.clone().into())),
        Answer::Failed(why) => Err(AppError::Transport(why.clone())),
    }
}

/// Where a [`CallForm`] posts: any [`Call`], its type forgotten, so that the form is compiled once.
#[derive(Clone, Copy)]
pub struct Target {
    action: Action<Request, Answer>,
    path: &'static str,
}

impl<S: ServerFn> From<Call<S>> for Target {
    fn from(c: Call<S>) -> Self {
        Target { action: c.action, path: S::PATH }
    }
}

/// A form that calls a server function with its fields (as the browser would post them), in
/// place of Leptos's `ActionForm`. Attributes (`attr:id`, `attr:class`) land on the `<form>`.
#[component]
pub fn CallForm(#[prop(into)] call: Target, #[prop(optional)] node_ref: NodeRef<leptos::html::Form>, children: Children) -> impl IntoView {
    let Target { action, path } = call;
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if let Some(body) = form_body(&ev) {
            action.dispatch(Request { path, content_type: FORM, body: Ok(body) });
        }
    };
    view! { <form method="post" action=path node_ref=node_ref on:submit=submit>{children()}</form> }
}

/// The submitted form's fields, url-encoded (with the button that submitted it, as a browser
/// posting the form would).
fn form_body(ev: &leptos::ev::SubmitEvent) -> Option<String> {
    use wasm_bindgen::JsCast;
    let form: web_sys::HtmlFormElement = ev.target()?.dyn_into().ok()?;
    let data = web_sys::FormData::new_with_form(&form).ok()?;
    if let Some(button) = ev.submitter() {
        if let Some(name) = button.get_attribute("name").filter(|n| !n.is_empty()) {
            data.append_with_str(&name, &button.get_attribute("value").unwrap_or_default()).ok()?;
        }
    }
    let params = web_sys::UrlSearchParams::new_with_str_sequence_sequence(&data).ok()?;
    Some(params.to_string().into())
}

/// POSTs the call and reads the answer whole. A server function that redirects (`login`)
/// answers with its `Location` and the redirect header; the router's hook follows it, as it
/// does for Leptos's own client.
fn send(req: &Request) -> impl std::future::Future<Output = Answer> + 'static {
    let Request { path, content_type, body } = req.clone();
    post(path, content_type, body)
}

/// POSTs `body` to the server function at `path` and reads the answer whole.
#[cfg(feature = "hydrate")]
pub(crate) fn post(
    path: &'static str,
    content_type: &'static str,
    body: Result<String, String>,
) -> impl std::future::Future<Output = Answer> + 'static {
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;
    let run = async move {
        let body = body.map_err(|e| wasm_bindgen::JsValue::from_str(&e))?;
        let headers = web_sys::Headers::new()?;
        headers.set("Content-Type", content_type)?;
        headers.set("Accept", "application/x-postcard")?;
        let init = web_sys::RequestInit::new();
        init.set_method("POST");
        init.set_headers(&headers);
        init.set_body(&wasm_bindgen::JsValue::from_str(&body));
        let res: web_sys::Response = JsFuture::from(window().fetch_with_str_and_init(path, &init)).await?.dyn_into()?;
        let bytes = js_sys::Uint8Array::new(&JsFuture::from(res.array_buffer()?).await?).to_vec();
        if res.headers().has(server_fn::redirect::REDIRECT_HEADER)? {
            if let Some(to) = res.headers().get("Location")? {
                server_fn::redirect::call_redirect_hook(&to);
            }
        }
        Ok::<_, wasm_bindgen::JsValue>(Answer::Http(res.status(), bytes))
    };
    async move { run.await.unwrap_or_else(|e| Answer::Failed(e.as_string().unwrap_or_else(|| "the request failed (network)".into()))) }
}

/// On the server a page renders; nothing is ever dispatched there.
#[cfg(not(feature = "hydrate"))]
pub(crate) fn post(_: &'static str, _: &'static str, _: Result<String, String>) -> impl std::future::Future<Output = Answer> + 'static {
    std::future::ready(Answer::Failed("server functions are called from the browser".into()))
}
