//! The marketplace user view: what an API user can call, and how.
use crate::api::catalog::Offerings;
use crate::components::RequireRole;
use crate::load::load;
use crate::types::Offering;
use leptos::prelude::*;

#[component]
pub fn MarketplacePage() -> impl IntoView {
    view! { <RequireRole><Marketplace/></RequireRole> }
}

/// Copy-ready snippets. Every value from the database is quoted for its language (a shell
/// word, a Python or JavaScript string literal), so that an address an operator typed can never
/// become code in a user's shell or program, whatever the validation let through in the past.
pub(crate) fn snippets(o: &Offering) -> Vec<(&'static str, String)> {
    let body = serde_json::json!({"model": o.name, "messages": [{"role": "user", "content": "Hello"}]}).to_string();
    let (url_sh, body_sh) = (shell_quote(&format!("{}/chat/completions", o.base_url)), shell_quote(&body));
    // A JSON string is a valid Python and JavaScript string literal.
    let (url, model) = (serde_json::Value::from(o.base_url.as_str()).to_string(), serde_json::Value::from(o.name.as_str()).to_string());
    let mut out = vec![
        ("curl", format!(
            "curl {url_sh} \\\n  -H \"Authorization: Bearer $MAAS_API_KEY\" \\\n  -H \"Content-Type: application/json\" \\\n  -d {body_sh}"
        )),
        ("Python", format!(
            "import os\nfrom openai import OpenAI\n\nclient = OpenAI(base_url={url}, api_key=os.environ[\"MAAS_API_KEY\"])\nresp = client.chat.completions.create(\n    model={model},\n    messages=[{{\"role\": \"user\", \"content\": \"Hello\"}}],\n)\nprint(resp.choices[0].message.content)"
        )),
        ("JavaScript", format!(
            "import OpenAI from \"openai\";\n\nconst client = new OpenAI({{ baseURL: {url}, apiKey: process.env.MAAS_API_KEY }});\nconst resp = await client.chat.completions.create({{\n  model: {model},\n  messages: [{{ role: \"user\", content: \"Hello\" }}],\n}});\nconsole.log(resp.choices[0].message.content);"
        )),
    ];
    if o.apis.contains(&crate::types::Api::Messages) {
        // Anthropic's clients take the origin: they add `/v1/messages` themselves.
        let origin = o.base_url.strip_suffix("/v1").unwrap_or(&o.base_url);
        let origin_py = serde_json::Value::from(origin).to_string();
        out.push(("Anthropic (Python)", format!(
            "import os\nfrom anthropic import Anthropic\n\nclient = Anthropic(base_url={origin_py}, api_key=os.environ[\"MAAS_API_KEY\"])\nmsg = client.messages.create(\n    model={model},\n    max_tokens=1024,\n    messages=[{{\"role\": \"user\", \"content\": \"Hello\"}}],\n)\nprint(msg.content[0].text)"
        )));
        out.push((
            "Claude Code",
            format!(
                "ANTHROPIC_BASE_URL={} ANTHROPIC_API_KEY=\"$MAAS_API_KEY\" claude --model {}",
                shell_quote(origin),
                shell_quote(&o.name)
            ),
        ));
    }
    out
}

/// One shell word: single quotes, each `'` inside written as `'\''`. Nothing in it expands.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[component]
fn Marketplace() -> impl IntoView {
    let list = load(|| (), |_| Offerings {});
    // The playground's workspaces: the caller's own (an operator's: all).
    let spaces = load(|| (), |_| crate::api::workspaces::ListWorkspaces {});
    // The model whose playground is open (one at a time).
    let trying = RwSignal::new(None::<String>);
    view! {
        <h1>"Marketplace"</h1>
        <p class="hint">"Models you can call with any OpenAI-compatible client. Create a key on the API keys page."</p>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                let spaces: Vec<(i64, String)> = spaces.await.unwrap_or_default().into_iter().map(|w| (w.id, w.name)).collect();
                let spaces = StoredValue::new(spaces);
                match list.await {
                    Err(e) => view! { <p class="error-box">{e.to_string()}</p> }.into_any(),
                    Ok(items) if items.is_empty() => view! { <p class="empty">"No models are available yet."</p> }.into_any(),
                    Ok(items) => items.into_iter().map(|o| {
                        let snips = snippets(&o);
                        let name = StoredValue::new(o.name.clone());
                        let base_url = StoredValue::new(o.base_url.clone());
                        view! {
                            <article class="card offering" data-name=o.name.clone()>
                                <h2>{o.name.clone()} <small>{o.provider.clone()}</small></h2>
                                <p>{o.description.clone()}</p>
                                <p class="tags">{o.tags.iter().map(|t| view! { <span class="tag">{t.clone()}</span> }).collect_view()}</p>
                                <p>"Base URL: " <code class="access-path">{o.base_url.clone()}</code> " · model: " <code>{o.name.clone()}</code></p>
                                {snips.into_iter().map(|(lang, code)| {
                                    let copy = code.clone();
                                    view! {
                                        <details class="snippet">
                                            <summary>{lang}</summary>
                                            // Not inside the summary: a button there is a control inside a control.
                                            <button class="small" aria-label=format!("Copy the {lang} snippet") on:click=move |_| {
                                                let _ = window().navigator().clipboard().write_text(&copy);
                                            }>"Copy"</button>
                                            <pre><code>{code}</code></pre>
                                        </details>
                                    }
                                }).collect_view()}
                                <button type="button" class="small pg-open" aria-expanded=move || (trying.get().as_deref() == Some(name.get_value().as_str())).to_string()
                                    on:click=move |_| trying.update(|t| *t = if t.as_deref() == Some(name.get_value().as_str()) { None } else { Some(name.get_value()) })>
                                    "Try it in the playground"
                                </button>
                                <Show when=move || trying.get().as_deref() == Some(name.get_value().as_str())>
                                    {move || if spaces.with_value(Vec::is_empty) {
                                        view! { <p class="hint">"Join a workspace to try models: the calls count against one."</p> }.into_any()
                                    } else {
                                        view! { <crate::pages::playground::Playground model=name.get_value() base_url=base_url.get_value() workspaces=spaces.get_value()/> }.into_any()
                                    }}
                                </Show>
                            </article>
                        }
                    }).collect_view().into_any(),
                }
            })}
        </Suspense>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "http://host/\"><svg/onload=alert(1)>$(touch /tmp/pwned)'`id`";

    fn offering() -> Offering {
        Offering {
            name: "m'\"x".into(),
            provider: String::new(),
            description: String::new(),
            tags: vec![],
            base_url: format!("{HOSTILE}/v1"),
            apis: vec![crate::types::Api::Chat, crate::types::Api::Messages],
        }
    }

    /// The curl line, run by a real shell with `curl` replaced by a function that prints its
    /// arguments: the address and the body come out as the literal words, nothing is executed.
    #[test]
    fn the_curl_line_is_one_word_per_value_in_a_real_shell() {
        let snips = snippets(&offering());
        let [(_, curl), ..] = &snips[..] else { panic!("no snippets") };
        let script = format!("curl() {{ printf '%s\\n' \"$@\"; }}\nMAAS_API_KEY=k\n{curl}\n");
        let out = std::process::Command::new("bash").arg("-c").arg(&script).output().expect("bash");
        let out = String::from_utf8(out.stdout).unwrap();
        let args: Vec<&str> = out.lines().collect();
        assert_eq!(args[0], format!("{HOSTILE}/v1/chat/completions"));
        assert_eq!(args[2], "Authorization: Bearer k");
        let body: serde_json::Value = serde_json::from_str(args[6]).unwrap();
        assert_eq!(body["model"], "m'\"x");
    }

    #[test]
    fn the_python_and_javascript_snippets_hold_the_values_as_string_literals() {
        let snips = snippets(&offering());
        let [_, (_, py), (_, js), (_, anthropic), (_, claude)] = &snips[..] else { panic!("{snips:?}") };
        // Claude Code's line: the origin and the model as single shell words.
        let script = format!("claude() {{ printf '%s\\n' \"$ANTHROPIC_BASE_URL\" \"$@\"; }}\nMAAS_API_KEY=k\n{claude}\n");
        let out = std::process::Command::new("bash").arg("-c").arg(&script).output().expect("bash");
        let out = String::from_utf8(out.stdout).unwrap();
        assert_eq!(out.lines().collect::<Vec<_>>(), [HOSTILE, "--model", "m'\"x"]);
        assert!(anthropic.contains(&format!("base_url={}", serde_json::Value::from(HOSTILE))), "{anthropic}");
        // Python's own parser: base_url and model are string constants equal to the values.
        let check = "import ast,json,sys\nkw=[n for n in ast.walk(ast.parse(sys.stdin.read())) if isinstance(n, ast.keyword) and n.arg in ('base_url','model')]\nprint(json.dumps(sorted([k.arg, ast.literal_eval(k.value)] for k in kw)))";
        let mut child = std::process::Command::new("python3")
            .arg("-c")
            .arg(check)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(py.as_bytes()).unwrap();
        let out = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
        let found: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(found, serde_json::json!([["base_url", format!("{HOSTILE}/v1")], ["model", "m'\"x"]]));
        // JavaScript: the same literals, as JSON strings, are what the snippet holds.
        assert!(js.contains(&format!("baseURL: {}", serde_json::Value::from(format!("{HOSTILE}/v1")))), "{js}");
    }
}
