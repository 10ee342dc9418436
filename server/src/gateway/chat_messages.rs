//! What translated chat requests share: the messages' shape every chat server takes.
use serde_json::{json, Value};

/// The system messages joined into one, first: many chat templates (Mistral's, Llama's, some of
/// vLLM's) refuse a system message anywhere but at the start, and some more than one, while
/// Messages callers put system prompts mid-conversation (Claude Code) and Responses callers give
/// `instructions` and `developer` items. Their texts keep their order.
pub fn system_first(messages: Vec<Value>) -> Vec<Value> {
    if messages.iter().filter(|m| m["role"] == "system").count() <= 1 && messages.iter().skip(1).all(|m| m["role"] != "system") {
        return messages;
    }
    let (system, rest): (Vec<Value>, Vec<Value>) = messages.into_iter().partition(|m| m["role"] == "system");
    let text = system.iter().filter_map(|m| m["content"].as_str()).collect::<Vec<_>>().join("\n\n");
    std::iter::once(json!({"role": "system", "content": text})).chain(rest).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_messages_become_one_at_the_start() {
        let m = vec![
            json!({"role": "system", "content": "A"}),
            json!({"role": "user", "content": "hi"}),
            json!({"role": "system", "content": "B"}),
            json!({"role": "assistant", "content": "yo"}),
        ];
        assert_eq!(
            system_first(m),
            vec![
                json!({"role": "system", "content": "A\n\nB"}),
                json!({"role": "user", "content": "hi"}),
                json!({"role": "assistant", "content": "yo"})
            ]
        );
        let plain = vec![json!({"role": "system", "content": "A"}), json!({"role": "user", "content": "hi"})];
        assert_eq!(system_first(plain.clone()), plain);
    }
}
