//! The mock upstream's native Messages (`/v1/messages`, Anthropic's shape) and Responses
//! (`/v1/responses`, OpenAI's shape) modes: what an Anthropic-compatible provider, a newer vLLM
//! or OpenAI answer, with known usage (cached input tokens included) so tests can check what
//! the gateway records. Given tools and no tool result yet, each calls its first tool with
//! `{"q": "mock"}`.
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// Messages usage: 9 uncached input tokens, 3 read from the cache, 4 output.
pub const MESSAGES_USAGE: (u64, u64, u64) = (9, 3, 4);
/// Responses usage: 8 input tokens of which 2 cached, 3 output.
pub const RESPONSES_USAGE: (u64, u64, u64) = (8, 2, 3);

fn sse(events: Vec<(String, Value)>) -> Response {
    let body: String = events.into_iter().map(|(kind, data)| format!("event: {kind}\ndata: {data}\n\n")).collect();
    Response::builder().header("content-type", "text/event-stream").body(Body::from(body)).expect("static headers")
}

pub fn messages(req: &Value, model: &str, from: &str) -> Response {
    let (input, cached, output) = MESSAGES_USAGE;
    let last_is_result = req
        .pointer("/messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .is_some_and(|blocks| blocks.iter().any(|b| b.get("type") == Some(&json!("tool_result"))));
    let tool = req.pointer("/tools/0/name").and_then(Value::as_str).filter(|_| !last_is_result);
    let text = format!("Hello{from}!");
    let block = match tool {
        Some(name) => json!({"type": "tool_use", "id": "toolu_mock", "name": name, "input": {"q": "mock"}}),
        None => json!({"type": "text", "text": text}),
    };
    let stop = if tool.is_some() { "tool_use" } else { "end_turn" };
    let usage =
        json!({"input_tokens": input, "output_tokens": output, "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0});
    if req.get("stream").and_then(Value::as_bool) != Some(true) {
        return axum::Json(json!({"id": "msg_mock", "type": "message", "role": "assistant", "model": model, "content": [block],
            "stop_reason": stop, "stop_sequence": null, "usage": usage}))
        .into_response();
    }
    let start_usage =
        json!({"input_tokens": input, "output_tokens": 1, "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0});
    let mut events = vec![(
        "message_start".to_owned(),
        json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null, "usage": start_usage}}),
    )];
    let (start, deltas) = match tool {
        Some(name) => (
            json!({"type": "tool_use", "id": "toolu_mock", "name": name, "input": {}}),
            vec![
                json!({"type": "input_json_delta", "partial_json": "{\"q\": "}),
                json!({"type": "input_json_delta", "partial_json": "\"mock\"}"}),
            ],
        ),
        None => (
            json!({"type": "text", "text": ""}),
            vec![json!({"type": "text_delta", "text": "Hello"}), json!({"type": "text_delta", "text": format!("{from}!")})],
        ),
    };
    events.push(("content_block_start".into(), json!({"type": "content_block_start", "index": 0, "content_block": start})));
    for d in deltas {
        events.push(("content_block_delta".into(), json!({"type": "content_block_delta", "index": 0, "delta": d})));
    }
    events.push(("content_block_stop".into(), json!({"type": "content_block_stop", "index": 0})));
    events.push((
        "message_delta".into(),
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": output}}),
    ));
    events.push(("message_stop".into(), json!({"type": "message_stop"})));
    sse(events)
}

pub fn responses(req: &Value, model: &str, from: &str, created: i64) -> Response {
    let (input, cached, output) = RESPONSES_USAGE;
    let answered = req
        .get("input")
        .and_then(Value::as_array)
        .is_some_and(|items| items.iter().any(|i| i.get("type") == Some(&json!("function_call_output"))));
    let tool = req.pointer("/tools/0/name").and_then(Value::as_str).filter(|_| !answered);
    let usage = json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": cached}, "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": input + output});
    let item = match tool {
        Some(name) => {
            json!({"type": "function_call", "id": "fc_mock", "call_id": "call_mock", "name": name, "arguments": "{\"q\": \"mock\"}", "status": "completed"})
        }
        None => json!({"type": "message", "id": "msg_mock", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": format!("Hello{from}!"), "annotations": []}]}),
    };
    let response = |status: &str, output: Value, usage: Value| {
        json!({"id": "resp_mock", "object": "response", "created_at": created, "status": status, "model": model, "output": output,
            "usage": usage, "error": null, "incomplete_details": null, "instructions": null, "metadata": {}, "parallel_tool_calls": true,
            "tool_choice": "auto", "tools": [], "temperature": 1.0, "top_p": 1.0, "text": {"format": {"type": "text"}}})
    };
    if req.get("stream").and_then(Value::as_bool) != Some(true) {
        return axum::Json(response("completed", json!([item]), usage)).into_response();
    }
    let mut events: Vec<(String, Value)> = Vec::new();
    let mut push = |kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(events.len());
        events.push((kind.to_owned(), data));
    };
    push("response.created", json!({"response": response("in_progress", json!([]), Value::Null)}));
    match tool {
        Some(_) => {
            let mut added = item.clone();
            added["arguments"] = json!("");
            added["status"] = json!("in_progress");
            push("response.output_item.added", json!({"output_index": 0, "item": added}));
            for piece in ["{\"q\": ", "\"mock\"}"] {
                push("response.function_call_arguments.delta", json!({"item_id": "fc_mock", "output_index": 0, "delta": piece}));
            }
            push(
                "response.function_call_arguments.done",
                json!({"item_id": "fc_mock", "output_index": 0, "arguments": "{\"q\": \"mock\"}"}),
            );
        }
        None => {
            let mut added = item.clone();
            added["content"] = json!([]);
            added["status"] = json!("in_progress");
            push("response.output_item.added", json!({"output_index": 0, "item": added}));
            let empty = json!({"type": "output_text", "text": "", "annotations": []});
            push("response.content_part.added", json!({"item_id": "msg_mock", "output_index": 0, "content_index": 0, "part": empty}));
            for piece in ["Hello".to_owned(), format!("{from}!")] {
                push("response.output_text.delta", json!({"item_id": "msg_mock", "output_index": 0, "content_index": 0, "delta": piece}));
            }
            let text = format!("Hello{from}!");
            push("response.output_text.done", json!({"item_id": "msg_mock", "output_index": 0, "content_index": 0, "text": text}));
            let part = json!({"type": "output_text", "text": text, "annotations": []});
            push("response.content_part.done", json!({"item_id": "msg_mock", "output_index": 0, "content_index": 0, "part": part}));
        }
    }
    push("response.output_item.done", json!({"output_index": 0, "item": item.clone()}));
    push("response.completed", json!({"response": response("completed", json!([item]), usage)}));
    sse(events)
}
