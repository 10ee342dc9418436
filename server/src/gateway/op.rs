//! The operations the gateway serves: one entry each (its path, its name in usage rows).
/// The operations the gateway forwards, each to its own path under the endpoint's base.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Chat,
    Completions,
    Embeddings,
}

impl Op {
    /// The operation the gateway serves at `path` (`/v1/chat/completions` → `Chat`).
    pub fn at(path: &str) -> Option<Op> {
        let op_path = path.strip_prefix("/v1")?;
        Op::ALL.into_iter().find(|op| op.path() == op_path)
    }

    /// In declaration order, so `op as usize` is an operation's position here.
    pub const ALL: [Op; 3] = [Op::Chat, Op::Completions, Op::Embeddings];

    /// How usage rows name it.
    pub fn name(self) -> &'static str {
        match self {
            Op::Chat => "chat",
            Op::Completions => "completions",
            Op::Embeddings => "embeddings",
        }
    }

    /// The operation's path: under an endpoint's base upstream, and under `/v1` at the gateway.
    pub fn path(self) -> &'static str {
        match self {
            Op::Chat => "/chat/completions",
            Op::Completions => "/completions",
            Op::Embeddings => "/embeddings",
        }
    }
}
