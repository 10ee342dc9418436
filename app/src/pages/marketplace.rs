//! The marketplace user view: what an API user can call, and how.
use crate::api::catalog::offerings;
use crate::components::RequireRole;
use crate::types::Offering;
use leptos::prelude::*;

#[component]
pub fn MarketplacePage() -> impl IntoView {
    view! { <RequireRole><Marketplace/></RequireRole> }
}

fn snippets(o: &Offering) -> [(&'static str, String); 3] {
    let (url, model) = (&o.base_url, &o.name);
    [
        ("curl", format!(
            "curl {url}/chat/completions \\\n  -H \"Authorization: Bearer $MAAS_API_KEY\" \\\n  -H \"Content-Type: application/json\" \\\n  -d '{{\"model\": \"{model}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello\"}}]}}'"
        )),
        ("Python", format!(
            "import os\nfrom openai import OpenAI\n\nclient = OpenAI(base_url=\"{url}\", api_key=os.environ[\"MAAS_API_KEY\"])\nresp = client.chat.completions.create(\n    model=\"{model}\",\n    messages=[{{\"role\": \"user\", \"content\": \"Hello\"}}],\n)\nprint(resp.choices[0].message.content)"
        )),
        ("JavaScript", format!(
            "import OpenAI from \"openai\";\n\nconst client = new OpenAI({{ baseURL: \"{url}\", apiKey: process.env.MAAS_API_KEY }});\nconst resp = await client.chat.completions.create({{\n  model: \"{model}\",\n  messages: [{{ role: \"user\", content: \"Hello\" }}],\n}});\nconsole.log(resp.choices[0].message.content);"
        )),
    ]
}

#[component]
fn Marketplace() -> impl IntoView {
    let list = Resource::new(|| (), |_| offerings());
    view! {
        <h1>"Marketplace"</h1>
        <p class="hint">"Models you can call with any OpenAI-compatible client. Create a key on the API keys page."</p>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match list.await {
                    Err(e) => view! { <p class="error-box">{e.to_string()}</p> }.into_any(),
                    Ok(items) if items.is_empty() => view! { <p class="empty">"No models are available yet."</p> }.into_any(),
                    Ok(items) => items.into_iter().map(|o| {
                        let snips = snippets(&o);
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
                                            <summary>{lang}
                                                <button class="small" on:click=move |ev| {
                                                    ev.prevent_default();
                                                    let _ = window().navigator().clipboard().write_text(&copy);
                                                }>"Copy"</button>
                                            </summary>
                                            <pre><code>{code}</code></pre>
                                        </details>
                                    }
                                }).collect_view()}
                            </article>
                        }
                    }).collect_view().into_any(),
                }
            })}
        </Suspense>
    }
}
