//! What a call reserves in token rules when it is admitted, before anyone knows its usage:
//! its prompt's size plus the output it may produce; and in money budgets, what that would cost
//! at its model's prices. Replaced by the real usage and cost when the call ends (see
//! [`super::ticket::Ticket::end`]), so the estimate only decides how much room calls in flight
//! hold meanwhile.
use super::quota::QuotaCheck;
use crate::gateway::body::RequestBody;
use crate::gateway::op::Op;
use app::ssr::pricing::{Schedule, Used};

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

/// A call's reservation in its two parts, tokens (see [`Estimate::tokens`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Estimate {
    /// The request body's size in tokens (an upper bound of the prompt's).
    pub prompt: u64,
    /// The output bound it gives, or the model's reservation; 0 for operations that generate
    /// no tokens.
    pub output: u64,
}

impl Estimate {
    /// The request body's size in tokens (an upper bound of the prompt's, as the body holds
    /// the prompt and a little JSON) and its output bound, or the model's `default_output` when
    /// it gives none.
    pub fn of(op: Op, body_len: usize, req: &RequestBody<'_>, default_output: u64) -> Self {
        let output = match op {
            _ if !op.generates() => 0,
            _ => ["max_completion_tokens", "max_tokens"]
                .into_iter()
                .find_map(|m| req.member(m).and_then(|v| v.get().trim().parse::<u64>().ok()))
                .unwrap_or(default_output),
        };
        Estimate { prompt: prompt_tokens(body_len), output }
    }

    /// The call's reservation: both parts.
    pub fn tokens(&self) -> u64 {
        self.prompt.saturating_add(self.output)
    }

    /// What it costs at `prices` in force at Unix second `now`, nano-units: its prompt at the
    /// input rate, its output bound at the output rate, the `units` the call asks for and the
    /// price per call. Without a price in force: 0 when every money budget among `quotas` lets
    /// unpriced calls through, else [`Unpricable`].
    pub fn cost(&self, units: Option<u64>, prices: Option<&Schedule>, now: i64, quotas: &[&QuotaCheck]) -> Result<u64, Unpricable> {
        let Some(rates) = prices.and_then(|p| p.at(now)) else {
            return match quotas.iter().any(|q| q.refuses_unpriced()) {
                true => Err(Unpricable),
                false => Ok(0),
            };
        };
        let used = Used { input: self.prompt, output: self.output, units: units.unwrap_or(0), ..Default::default() };
        Ok(rates.cost_nanos(used).max(0) as u64)
    }
}

/// A call's reservation in money budgets could not be priced: its model has no price in force
/// and a budget of the caller refuses such calls.
#[derive(Debug)]
pub struct Unpricable;

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(op: Op, body_len: usize, req: &RequestBody<'_>, default_output: u64) -> u64 {
        Estimate::of(op, body_len, req, default_output).tokens()
    }

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
