//! What a call reserves in token rules when it is admitted, before anyone knows its usage:
//! its prompt's size plus the output it may produce. Replaced by the real usage when the call
//! ends (see [`super::ticket::Ticket::end`]), so the estimate only decides how much room calls in
//! flight hold meanwhile.
use crate::gateway::body::RequestBody;
use crate::gateway::op::Op;

/// Output reserved for a call that does not say how much it may produce (no `max_tokens` or
/// `max_completion_tokens`) to a model that sets no reservation of its own.
pub const DEFAULT_OUTPUT_TOKENS: u64 = 1_024;

/// Bytes per token assumed for the prompt: about what tokenizers make of English (4 chars per
/// token) and of JSON-escaped CJK text (3 bytes a character, ~1.3 characters a token). No
/// tokenizer runs on the request path: the real count arrives with the answer.
const BYTES_PER_TOKEN: u64 = 4;

/// A request body's size in tokens: an upper bound of its prompt's.
pub fn prompt_tokens(body_len: usize) -> u64 {
    (body_len as u64).div_ceil(BYTES_PER_TOKEN)
}

/// The call's reservation: the request body's size in tokens (an upper bound of the prompt's,
/// as the body holds the prompt and a little JSON) plus its output bound, or the model's
/// `default_output` when it gives none.
pub fn estimate(op: Op, body_len: usize, req: &RequestBody<'_>, default_output: u64) -> u64 {
    let prompt = prompt_tokens(body_len);
    let output = match op {
        _ if !op.generates() => 0,
        _ => ["max_completion_tokens", "max_tokens"]
            .into_iter()
            .find_map(|m| req.member(m).and_then(|v| v.get().trim().parse::<u64>().ok()))
            .unwrap_or(default_output),
    };
    prompt.saturating_add(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_size_plus_the_output_bound_the_call_gives() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hello there"}],"max_tokens":100}"#;
        let req = RequestBody::parse(body).unwrap();
        assert_eq!(estimate(Op::Chat, body.len(), &req, DEFAULT_OUTPUT_TOKENS), (body.len() as u64).div_ceil(4) + 100);
        let body = br#"{"model":"m","prompt":"x","max_completion_tokens":7,"max_tokens":100}"#;
        let req = RequestBody::parse(body).unwrap();
        assert_eq!(
            estimate(Op::Completions, body.len(), &req, DEFAULT_OUTPUT_TOKENS),
            (body.len() as u64).div_ceil(4) + 7,
            "the newer field wins"
        );
        let body = br#"{"model":"m","messages":[]}"#;
        let req = RequestBody::parse(body).unwrap();
        assert_eq!(
            estimate(Op::Chat, body.len(), &req, DEFAULT_OUTPUT_TOKENS),
            (body.len() as u64).div_ceil(4) + DEFAULT_OUTPUT_TOKENS,
            "no bound given"
        );
        assert_eq!(estimate(Op::Chat, body.len(), &req, 300), (body.len() as u64).div_ceil(4) + 300, "the model's own reservation");
        let body = br#"{"model":"m","input":"abc","max_tokens":"lots"}"#;
        let req = RequestBody::parse(body).unwrap();
        assert_eq!(
            estimate(Op::Embeddings, body.len(), &req, DEFAULT_OUTPUT_TOKENS),
            (body.len() as u64).div_ceil(4),
            "embeddings produce no output tokens"
        );
    }
}
