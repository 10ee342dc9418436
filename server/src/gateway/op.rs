//! The operations the gateway serves, one declaration each: its path, its name in usage rows,
//! the operation it is sent upstream as (its own, or chat completions when it is translated),
//! and the dialect its errors speak. The request path reads these; adding an operation is an
//! entry here, not a branch there.

/// An operation the gateway serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Chat,
    Completions,
    Embeddings,
    /// Anthropic's Messages API, translated to chat completions (see `anthropic.rs`).
    Messages,
}

/// The shape of an operation's errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `{"error": {"message", "type", "param", "code"}}`.
    OpenAi,
    /// `{"type": "error", "error": {"type", "message"}}`.
    Anthropic,
}

/// How an operation's request and answer are translated for an upstream that speaks another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Translation {
    /// Messages over chat completions.
    MessagesOverChat,
}

impl Op {
    /// The operation the gateway serves at `path` (`/v1/chat/completions` → `Chat`).
    pub fn at(path: &str) -> Option<Op> {
        let op_path = path.strip_prefix("/v1")?;
        Op::ALL.into_iter().find(|op| op.path() == op_path)
    }

    /// Every operation, in declaration order.
    pub const ALL: [Op; 4] = [Op::Chat, Op::Completions, Op::Embeddings, Op::Messages];

    /// What endpoints are sent (each parsed once per snapshot), in declaration order, so
    /// `op as usize` is an upstream operation's position here.
    pub const UPSTREAM: [Op; 3] = [Op::Chat, Op::Completions, Op::Embeddings];

    /// How usage rows name it.
    pub fn name(self) -> &'static str {
        match self {
            Op::Chat => "chat",
            Op::Completions => "completions",
            Op::Embeddings => "embeddings",
            Op::Messages => "messages",
        }
    }

    /// The operation's path: under an endpoint's base upstream, and under `/v1` at the gateway.
    pub fn path(self) -> &'static str {
        match self {
            Op::Chat => "/chat/completions",
            Op::Completions => "/completions",
            Op::Embeddings => "/embeddings",
            Op::Messages => "/messages",
        }
    }

    /// What the upstream is sent.
    pub fn upstream(self) -> Op {
        match self {
            Op::Messages => Op::Chat,
            op => op,
        }
    }

    pub fn translation(self) -> Option<Translation> {
        match self {
            Op::Messages => Some(Translation::MessagesOverChat),
            _ => None,
        }
    }

    pub fn dialect(self) -> Dialect {
        match self {
            Op::Messages => Dialect::Anthropic,
            _ => Dialect::OpenAi,
        }
    }

    /// Whether it produces output tokens (what admission reserves for).
    pub fn generates(self) -> bool {
        self != Op::Embeddings
    }
}
