//! What a call consumed, as its end tells every hold it took at admission (each kind of counter
//! returns its own hold, which gives back what it took when it is ended or dropped, as
//! pingora-limits' `inflight` guard does).

/// How a call ended, for what it reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consumed {
    /// It never ran (another counter refused it): its request is given back, no tokens.
    Nothing,
    /// It ran, usage unknown: the estimate it reserved stands.
    Estimate,
    /// It ran and used this many tokens (input + output; 0 when no upstream answered), costing
    /// `nanos` (nano-units of the currency; `None` when its cost is unknown: then the money it
    /// reserved stands, as its estimate).
    Used { tokens: u64, nanos: Option<u64> },
}

impl Consumed {
    /// Used `tokens`, at no known cost (what a rule that counts no money reads).
    pub fn tokens_only(tokens: u64) -> Self {
        Consumed::Used { tokens, nanos: None }
    }

    /// Tokens to record for a call that reserved `reserved`; `None` when it never ran.
    pub fn tokens(self, reserved: u64) -> Option<u64> {
        match self {
            Consumed::Nothing => None,
            Consumed::Estimate => Some(reserved),
            Consumed::Used { tokens, .. } => Some(tokens),
        }
    }

    /// Money (nano-units) to record for a call that reserved `reserved`; `None` when it never
    /// ran.
    pub fn nanos(self, reserved: u64) -> Option<u64> {
        match self {
            Consumed::Nothing => None,
            Consumed::Estimate | Consumed::Used { nanos: None, .. } => Some(reserved),
            Consumed::Used { nanos: Some(n), .. } => Some(n),
        }
    }
}
