//! The playground: try a model from the browser, through the real gateway. The console issues
//! a short-lived key for the model in one of the caller's workspaces (`api::playground`), the
//! browser calls `/v1/chat/completions` on this origin with `fetch` and reads the SSE body chunk
//! by chunk as it arrives (never polling), showing time to first token, total time and the
//! usage the gateway passed on. Stop aborts the fetch: the gateway sees the client leave and
//! cancels the upstream call. The key is revoked when the playground goes away, and expires
//! within minutes anyway.
use crate::api::playground::{end_playground, start_playground};
use crate::types::PlaygroundKey;
use leptos::prelude::*;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

#[derive(Clone, Debug, PartialEq)]
enum Run {
    Idle,
    Starting,
    Streaming,
    Done,
    Stopped,
    Failed(String),
}

/// `base_url`: the model's access path as clients use it (`https://gw.example.com/v1`), for the
/// code snippet; the playground itself calls this origin's gateway.
#[component]
pub fn Playground(model: String, base_url: String, workspaces: Vec<(i64, String)>) -> impl IntoView {
    let model = StoredValue::new(model);
    let base_url = StoredValue::new(base_url);
    let ws = RwSignal::new(workspaces.first().map(|w| w.0));
    // A key of the caller's own, pasted: kept in this page's memory only (never stored, never
    // sent anywhere but the gateway). Empty: the console issues a short-lived key instead.
    let own_key = RwSignal::new(String::new());
    let system = RwSignal::new(String::new());
    let prompt = RwSignal::new("Say hello in five words.".to_string());
    let temperature = RwSignal::new("0.7".to_string());
    let max_tokens = RwSignal::new("256".to_string());
    let output = RwSignal::new(String::new());
    let run = RwSignal::new(Run::Idle);
    let ttft = RwSignal::new(None::<u64>);
    let total = RwSignal::new(None::<u64>);
    let usage = RwSignal::new(None::<(u64, u64, u64)>);
    let key = StoredValue::new(None::<PlaygroundKey>);
    let abort = StoredValue::new_local(None::<web_sys::AbortController>);
    on_cleanup(move || {
        if let Some(a) = abort.try_get_value().flatten() {
            a.abort();
        }
        if let Some(k) = key.try_get_value().flatten() {
            leptos::task::spawn_local(async move {
                let _ = end_playground(k.key_id).await;
            });
        }
    });
    // A page that is closed, reloaded or left by a full navigation is not unmounted, so the
    // cleanup above never runs: the key is ended by a beacon, which the browser still sends as
    // the page goes. (A page kept in the back-forward cache comes back without it and gets a new
    // one at its next run.)
    let beacon = window_event_listener_untyped("pagehide", move |_| {
        if let Some(k) = key.try_get_value().flatten() {
            if let Ok(form) = web_sys::UrlSearchParams::new_with_str(&format!("key_id={}", k.key_id)) {
                let _ = window().navigator().send_beacon_with_opt_url_search_params("/api/playground/end", Some(&form));
            }
            key.set_value(None);
        }
    });
    on_cleanup(move || beacon.remove());
    let body = move || {
        request_body(
            &model.get_value(),
            &system.get_untracked(),
            &prompt.get_untracked(),
            &temperature.get_untracked(),
            &max_tokens.get_untracked(),
        )
    };
    let start = move |_| {
        let own = own_key.get_untracked().trim().to_string();
        let workspace_id = ws.get_untracked();
        if own.is_empty() && workspace_id.is_none() {
            run.set(Run::Failed("choose a workspace: the call counts against it".into()));
            return;
        }
        let body = match body() {
            Ok(b) => b,
            Err(e) => return run.set(Run::Failed(e)),
        };
        output.set(String::new());
        ttft.set(None);
        total.set(None);
        usage.set(None);
        run.set(Run::Starting);
        leptos::task::spawn_local(async move {
            // The caller's own key, or one short-lived key per playground, until it nears its end.
            let now = (js_sys::Date::now() / 1000.0) as i64;
            let secret = match (own.is_empty(), key.get_value().filter(|k| k.expires_at - now > 60), workspace_id) {
                (false, _, _) => own,
                (true, Some(k), _) => k.secret,
                (true, None, Some(workspace_id)) => match start_playground(workspace_id, model.get_value()).await {
                    Ok(k) => {
                        key.set_value(Some(k.clone()));
                        k.secret
                    }
                    Err(e) => return run.set(Run::Failed(e.to_string())),
                },
                (true, None, None) => return,
            };
            let Ok(ctrl) = web_sys::AbortController::new() else { return run.set(Run::Failed("this browser cannot stop a call".into())) };
            abort.set_value(Some(ctrl.clone()));
            run.set(Run::Streaming);
            let t0 = js_sys::Date::now();
            let on_text = move |t: &str| {
                if ttft.get_untracked().is_none() {
                    ttft.set(Some((js_sys::Date::now() - t0) as u64));
                }
                output.update(|o| o.push_str(t));
            };
            let on_usage = move |u| usage.set(Some(u));
            let r = stream(&body, &secret, &ctrl, on_text, on_usage).await;
            total.set(Some((js_sys::Date::now() - t0) as u64));
            abort.set_value(None);
            match r {
                _ if run.get_untracked() == Run::Stopped => {}
                Ok(()) => run.set(Run::Done),
                Err(e) => run.set(Run::Failed(e)),
            }
        });
    };
    let stop = move |_| {
        run.set(Run::Stopped);
        if let Some(a) = abort.get_value() {
            a.abort();
        }
    };
    let busy = move || matches!(run.get(), Run::Starting | Run::Streaming);
    let snippet = move || {
        let b = request_body(&model.get_value(), &system.get(), &prompt.get(), &temperature.get(), &max_tokens.get()).unwrap_or_default();
        format!("curl -N {}/chat/completions \\\n  -H \"Authorization: Bearer $MAAS_API_KEY\" -H \"Content-Type: application/json\" \\\n  -d '{}'", base_url.get_value(), b.replace('\'', "'\\''"))
    };
    view! {
        <section class="playground card" data-model=model.get_value()>
            <h3>{format!("Try {}", model.get_value())}</h3>
            <div class="columns">
                <label>"Workspace (the call counts against it)"
                    <select class="pg-workspace" disabled=move || !own_key.with(|k| k.trim().is_empty()) on:change:target=move |ev| ws.set(ev.target().value().parse().ok())>
                        {workspaces.iter().map(|(id, name)| view! { <option value=id.to_string()>{name.clone()}</option> }).collect_view()}
                    </select>
                </label>
                <label>"Temperature"
                    <input class="pg-temperature" inputmode="decimal" prop:value=move || temperature.get() on:input:target=move |ev| temperature.set(ev.target().value())/>
                </label>
                <label>"Max tokens"
                    <input class="pg-max-tokens" inputmode="numeric" prop:value=move || max_tokens.get() on:input:target=move |ev| max_tokens.set(ev.target().value())/>
                </label>
            </div>
            <label>"Your API key (optional)"
                <input class="pg-own-key" type="password" autocomplete="off" placeholder="sk-maas-…: empty for a 15-minute key the console issues"
                    prop:value=move || own_key.get() on:input:target=move |ev| own_key.set(ev.target().value())/>
            </label>
            <small class="hint">"With your own key the call counts against its workspace and its limits; the key stays in this page."</small>
            <label>"System prompt (optional)"
                <textarea class="pg-system" prop:value=move || system.get() on:input:target=move |ev| system.set(ev.target().value())></textarea>
            </label>
            <label>"Prompt"
                <textarea class="pg-prompt" prop:value=move || prompt.get() on:input:target=move |ev| prompt.set(ev.target().value())></textarea>
            </label>
            <div class="form-actions">
                <button type="button" class="pg-run" disabled=busy on:click=start>{move || if busy() { "Running…" } else { "Run" }}</button>
                <button type="button" class="pg-stop secondary" disabled=move || !busy() on:click=stop>"Stop"</button>
            </div>
            <pre class="pg-output" role="log" aria-label="Answer">{move || output.get()}</pre>
            <p class="pg-figures hint">
                {move || match run.get() {
                    Run::Idle => String::new(),
                    Run::Starting => "Getting a key…".into(),
                    Run::Streaming => "Streaming…".into(),
                    Run::Done => "Done.".into(),
                    Run::Stopped => "Stopped.".into(),
                    Run::Failed(_) => String::new(),
                }}
                {move || ttft.get().map(|t| format!(" First token after {t} ms."))}
                {move || total.get().map(|t| format!(" Total {t} ms."))}
                {move || usage.get().map(|(i, o, t)| format!(" Tokens: {i} in, {o} out, {t} total."))}
            </p>
            {move || match run.get() {
                Run::Failed(e) => Some(view! { <p class="error-box" role="alert">{e}</p> }),
                _ => None,
            }}
            <details class="snippet">
                <summary>"The same call as code"</summary>
                <pre><code class="pg-snippet">{snippet}</code></pre>
            </details>
        </section>
    }
}

/// The chat request as the playground's fields say, validated: a streamed call asking for the
/// usage chunk.
fn request_body(model: &str, system: &str, prompt: &str, temperature: &str, max_tokens: &str) -> Result<String, String> {
    let t: f64 = temperature.trim().parse().ok().filter(|t| (0.0..=2.0).contains(t)).ok_or("temperature: a number from 0 to 2")?;
    let m: u32 =
        max_tokens.trim().parse().ok().filter(|m| (1..=1_000_000).contains(m)).ok_or("max tokens: a whole number from 1 to 1,000,000")?;
    if prompt.trim().is_empty() {
        return Err("write a prompt".into());
    }
    // Written by hand: serde_json's Value and its serializer cost the WASM bundle ~10 KB for
    // this one object.
    let system = if system.trim().is_empty() { String::new() } else { format!(r#"{{"role":"system","content":{}}},"#, json_str(system)) };
    Ok(format!(
        r#"{{"model":{},"messages":[{system}{{"role":"user","content":{}}}],"temperature":{t},"max_tokens":{m},"stream":true,"stream_options":{{"include_usage":true}}}}"#,
        json_str(model),
        json_str(prompt)
    ))
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn js_err(e: JsValue) -> String {
    e.as_string()
        .or_else(|| js_sys::Reflect::get(&e, &"message".into()).ok().and_then(|m| m.as_string()))
        .unwrap_or_else(|| "the call failed".into())
}

fn get(v: &JsValue, key: &str) -> Option<JsValue> {
    js_sys::Reflect::get(v, &key.into()).ok().filter(|x| !x.is_undefined() && !x.is_null())
}

/// One streamed call: `on_text` for each piece of the answer as it arrives, `on_usage` for the
/// final usage chunk (input, output, total tokens).
async fn stream(
    body: &str,
    secret: &str,
    ctrl: &web_sys::AbortController,
    on_text: impl Fn(&str),
    on_usage: impl Fn((u64, u64, u64)),
) -> Result<(), String> {
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    let headers = web_sys::Headers::new().map_err(js_err)?;
    headers.set("authorization", &format!("Bearer {secret}")).map_err(js_err)?;
    headers.set("content-type", "application/json").map_err(js_err)?;
    init.set_headers(&headers);
    init.set_body(&JsValue::from_str(body));
    init.set_signal(Some(&ctrl.signal()));
    let res: web_sys::Response = JsFuture::from(window().fetch_with_str_and_init("/v1/chat/completions", &init))
        .await
        .map_err(js_err)?
        .dyn_into()
        .map_err(js_err)?;
    if !res.ok() {
        let text = JsFuture::from(res.text().map_err(js_err)?).await.map_err(js_err)?.as_string().unwrap_or_default();
        // The gateway's errors are OpenAI-shaped: say what it said.
        let msg = js_sys::JSON::parse(&text).ok().and_then(|v| get(&get(&v, "error")?, "message")?.as_string()).unwrap_or(text);
        return Err(format!("{}: {msg}", res.status()));
    }
    let reader: web_sys::ReadableStreamDefaultReader =
        res.body().ok_or("no answer body")?.get_reader().dyn_into().map_err(|_| "the answer cannot be read as a stream".to_string())?;
    let decoder = web_sys::TextDecoder::new().map_err(js_err)?;
    let opts = web_sys::TextDecodeOptions::new();
    opts.set_stream(true);
    let mut buf = String::new();
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(js_err)?;
        if get(&chunk, "done").and_then(|d| d.as_bool()).unwrap_or(true) {
            return Ok(());
        }
        let bytes: js_sys::Uint8Array = get(&chunk, "value").ok_or("an empty chunk")?.dyn_into().map_err(js_err)?;
        buf.push_str(&decoder.decode_with_js_u8_array_and_options(&bytes, &opts).map_err(js_err)?.replace("\r\n", "\n"));
        // Whole SSE events only; a partial one waits for the rest.
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            for data in event.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim) {
                if data == "[DONE]" {
                    return Ok(());
                }
                let Ok(v) = js_sys::JSON::parse(data) else { continue };
                let text = get(&v, "choices")
                    .and_then(|c| c.dyn_into::<js_sys::Array>().ok())
                    .and_then(|c| get(&get(&c.get(0), "delta")?, "content")?.as_string());
                if let Some(t) = text.filter(|t| !t.is_empty()) {
                    on_text(&t);
                }
                if let Some(u) = get(&v, "usage") {
                    let n = |k: &str| get(&u, k).and_then(|x| x.as_f64()).unwrap_or(0.0) as u64;
                    on_usage((n("prompt_tokens"), n("completion_tokens"), n("total_tokens")));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_request_body_is_the_json_it_says() {
        let b = super::request_body("m\"x", "be \\ terse\n", "hi\u{1}", "0.3", "64").unwrap();
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["model"], "m\"x");
        assert_eq!(v["messages"][0]["content"], "be \\ terse\n");
        assert_eq!(v["messages"][1]["content"], "hi\u{1}");
        assert_eq!((v["temperature"].as_f64(), v["max_tokens"].as_u64(), v["stream"].as_bool()), (Some(0.3), Some(64), Some(true)));
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert!(super::request_body("m", "", "", "0.3", "64").is_err());
        assert!(super::request_body("m", "", "hi", "3", "64").is_err());
        let plain: serde_json::Value = serde_json::from_str(&super::request_body("m", " ", "hi", "0", "1").unwrap()).unwrap();
        assert_eq!(plain["messages"].as_array().unwrap().len(), 1);
    }
}
