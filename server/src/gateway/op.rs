//! The operations the gateway serves, one declaration each: its path, its name in usage rows,
//! the API an endpoint must speak to take it natively, how it is translated for an endpoint
//! that speaks only chat completions, and the dialect its errors speak. The request path reads
//! these; adding an operation is an entry here, not a branch there.
pub use app::types::{Api, ModelKind, Unit};

/// An operation the gateway serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Chat,
    Completions,
    Embeddings,
    /// Anthropic's Messages API: native, or translated to chat completions (`anthropic.rs`).
    Messages,
    /// OpenAI's Responses API: native, or translated to chat completions (`responses.rs`).
    Responses,
    /// Reranking documents against a query (`/v1/rerank`, the Cohere / Jina / vLLM shape).
    Rerank,
    /// Text to speech (`/v1/audio/speech`): the audio answer streamed back as it arrives.
    Speech,
    /// Image generation (`/v1/images/generations`).
    Images,
    /// Speech to text (`/v1/audio/transcriptions`): a multipart upload of the audio.
    Transcriptions,
    /// Speech to English text (`/v1/audio/translations`): a multipart upload of the audio.
    Translations,
    /// Image edits (`/v1/images/edits`): a multipart upload of the images, or JSON.
    ImageEdits,
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
    /// Responses over chat completions.
    ResponsesOverChat,
}

impl Translation {
    /// What the upstream is sent instead.
    pub fn upstream(self) -> Op {
        match self {
            Translation::MessagesOverChat | Translation::ResponsesOverChat => Op::Chat,
        }
    }
}

impl Op {
    /// The operation the gateway serves at `path` (`/v1/chat/completions` → `Chat`).
    pub fn at(path: &str) -> Option<Op> {
        let op_path = path.strip_prefix("/v1")?;
        Op::ALL.into_iter().find(|op| op.path() == op_path)
    }

    /// Every operation, in declaration order (`op as usize` is its position here: where an
    /// endpoint's target for it is).
    pub const ALL: [Op; 11] = [
        Op::Chat,
        Op::Completions,
        Op::Embeddings,
        Op::Messages,
        Op::Responses,
        Op::Rerank,
        Op::Speech,
        Op::Images,
        Op::Transcriptions,
        Op::Translations,
        Op::ImageEdits,
    ];

    /// How usage rows name it.
    pub fn name(self) -> &'static str {
        match self {
            Op::Chat => "chat",
            Op::Completions => "completions",
            Op::Embeddings => "embeddings",
            Op::Messages => "messages",
            Op::Responses => "responses",
            Op::Rerank => "rerank",
            Op::Speech => "speech",
            Op::Images => "images",
            Op::Transcriptions => "transcriptions",
            Op::Translations => "translations",
            Op::ImageEdits => "image_edits",
        }
    }

    /// The operation's path: under an endpoint's base upstream, and under `/v1` at the gateway.
    pub fn path(self) -> &'static str {
        match self {
            Op::Chat => "/chat/completions",
            Op::Completions => "/completions",
            Op::Embeddings => "/embeddings",
            Op::Messages => "/messages",
            Op::Responses => "/responses",
            Op::Rerank => "/rerank",
            Op::Speech => "/audio/speech",
            Op::Images => "/images/generations",
            Op::Transcriptions => "/audio/transcriptions",
            Op::Translations => "/audio/translations",
            Op::ImageEdits => "/images/edits",
        }
    }

    /// Its name in OpenTelemetry's `gen_ai.operation.name` (what `/metrics` labels it with).
    pub fn gen_ai_name(self) -> &'static str {
        match self {
            Op::Chat | Op::Messages | Op::Responses => "chat",
            Op::Completions => "text_completion",
            Op::Embeddings => "embeddings",
            Op::Rerank => "rerank",
            Op::Speech => "text_to_speech",
            Op::Images => "image_generation",
            Op::Transcriptions => "speech_to_text",
            Op::Translations => "speech_translation",
            Op::ImageEdits => "image_edit",
        }
    }

    /// The kind of model that serves it.
    pub fn kind(self) -> ModelKind {
        match self {
            Op::Chat | Op::Completions | Op::Messages | Op::Responses => ModelKind::Chat,
            Op::Embeddings => ModelKind::Embedding,
            Op::Rerank => ModelKind::Rerank,
            Op::Transcriptions | Op::Translations => ModelKind::SpeechToText,
            Op::Speech => ModelKind::TextToSpeech,
            Op::Images | Op::ImageEdits => ModelKind::Image,
        }
    }

    /// The API an endpoint must speak to be sent this operation as it is.
    pub fn api(self) -> Api {
        match self {
            // Chat stands for OpenAI's API family (an OpenAI-compatible server).
            Op::Chat
            | Op::Completions
            | Op::Embeddings
            | Op::Rerank
            | Op::Speech
            | Op::Images
            | Op::Transcriptions
            | Op::Translations
            | Op::ImageEdits => Api::Chat,
            Op::Messages => Api::Messages,
            Op::Responses => Api::Responses,
        }
    }

    /// How it is sent to an endpoint that does not speak its API but speaks chat completions
    /// (`None`: such an endpoint cannot take it).
    pub fn translation(self) -> Option<Translation> {
        match self {
            Op::Messages => Some(Translation::MessagesOverChat),
            Op::Responses => Some(Translation::ResponsesOverChat),
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
        matches!(self, Op::Chat | Op::Completions | Op::Messages | Op::Responses)
    }

    /// Whether its upstreams report tokens: only then do token rules and quotas count it (speech
    /// is counted by request rules alone).
    pub fn counts_tokens(self) -> bool {
        self.kind().counts_tokens()
    }

    /// Its unit besides tokens, if any: its model kind's.
    pub fn unit(self) -> Option<Unit> {
        self.kind().unit()
    }

    /// Whether it takes a multipart upload (`upload.rs`).
    pub fn takes_form(self) -> bool {
        matches!(self, Op::Transcriptions | Op::Translations | Op::ImageEdits)
    }

    /// Whether it takes a JSON body (image edits take either).
    pub fn takes_json(self) -> bool {
        !matches!(self, Op::Transcriptions | Op::Translations)
    }

    /// How many of its unit the request asks for: the documents to rerank, the characters to
    /// speak, the images to make (`n`, 1 when not given). Read from the request, which these
    /// APIs' answers do not restate. Seconds of audio are the answer's to report (`None` here).
    pub fn units(self, req: &super::body::RequestBody<'_>) -> Option<u64> {
        let member = |name: &str| req.member(name).map(|v| v.get());
        match self.unit()? {
            Unit::Documents => {
                member("documents").and_then(|d| serde_json::from_str::<Vec<serde::de::IgnoredAny>>(d).ok()).map(|d| d.len() as u64)
            }
            Unit::Characters => member("input").and_then(|i| serde_json::from_str::<String>(i).ok()).map(|i| i.chars().count() as u64),
            // A number in JSON, a string in a form.
            Unit::Images => Some(member("n").and_then(|n| n.trim().trim_matches('"').trim().parse::<u64>().ok()).unwrap_or(1)),
            Unit::Seconds => None,
        }
    }
}
