//! The edit page's table of endpoint health, rendered on the server (escaped as any view is):
//! the page places the HTML, so the bundle carries no view of its own for a read-only table.
use crate::types::EndpointHealth;
use leptos::prelude::*;

pub fn render(health: Vec<EndpointHealth>) -> String {
    let state = |e: &EndpointHealth| match e.healthy {
        None => "not probed".to_string(),
        Some(true) => "healthy".to_string(),
        Some(false) => format!("unhealthy: {}", e.reason),
    };
    view! {
        <div class="table-scroll"><table id="endpoint-health">
            <thead><tr><th>"Endpoint"</th><th>"Health"</th><th>"Since"</th><th>"Transitions (newest first)"</th></tr></thead>
            <tbody>
                {health.into_iter().map(|e| view! {
                    <tr data-endpoint=e.endpoint_id>
                        <td>{e.url.clone()}</td>
                        <td class="health">{state(&e)}</td>
                        <td>{(e.since > 0).then(|| crate::days::format_rfc3339(e.since))}</td>
                        <td><ul class="transitions">
                            {e.events.into_iter().map(|ev| view! {
                                <li>{crate::days::format_rfc3339(ev.at)} " " {if ev.healthy { "healthy" } else { "unhealthy" }} ": " {ev.reason}</li>
                            }).collect_view()}
                        </ul></td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table></div>
    }
    .to_html()
}
