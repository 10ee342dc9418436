//! Copy-ready snippets for the marketplace's user view, made on the server (sent with each
//! offering: the browser's bundle carries none of this formatting).
use crate::types::{Api, ModelKind, Offering};
use serde_json::json;

/// Copy-ready snippets for the model's kind: its API over curl first, then the official SDKs.
/// Every value from the database is quoted for its language (a shell word, a Python or
/// JavaScript string literal), so that an address an operator typed can never become code in a
/// user's shell or program, whatever the validation let through in the past.
pub fn snippets(o: &Offering) -> Vec<(&'static str, String)> {
    // A JSON string is a valid Python and JavaScript string literal.
    let (url, model) = (serde_json::Value::from(o.base_url.as_str()).to_string(), serde_json::Value::from(o.name.as_str()).to_string());
    let client = format!("import os\nfrom openai import OpenAI\n\nclient = OpenAI(base_url={url}, api_key=os.environ[\"MAAS_API_KEY\"])\n");
    let js_client =
        format!("import OpenAI from \"openai\";\n\nconst client = new OpenAI({{ baseURL: {url}, apiKey: process.env.MAAS_API_KEY }});\n");
    match o.kind {
        ModelKind::Chat => chat(o, &url, &model),
        ModelKind::Embedding => vec![
            ("curl", curl_json(o, "/embeddings", json!({"model": o.name, "input": "Hello"}))),
            ("Python", format!("{client}resp = client.embeddings.create(model={model}, input=\"Hello\")\nprint(len(resp.data[0].embedding))")),
            ("JavaScript", format!("{js_client}const resp = await client.embeddings.create({{ model: {model}, input: \"Hello\" }});\nconsole.log(resp.data[0].embedding.length);")),
        ],
        ModelKind::Rerank => vec![(
            "curl",
            curl_json(o, "/rerank", json!({"model": o.name, "query": "What is a panda?", "documents": ["The giant panda is a bear.", "Paris is in France."], "top_n": 1})),
        )],
        ModelKind::SpeechToText => vec![
            ("curl", format!(
                "curl {} \\\n  -H \"Authorization: Bearer $MAAS_API_KEY\" \\\n  -F file=@audio.wav \\\n  -F model={}",
                shell_quote(&format!("{}/audio/transcriptions", o.base_url)),
                shell_quote(&o.name)
            )),
            ("Python", format!("{client}with open(\"audio.wav\", \"rb\") as f:\n    text = client.audio.transcriptions.create(model={model}, file=f)\nprint(text.text)")),
        ],
        ModelKind::TextToSpeech => vec![
            ("curl", format!(
                "{} \\\n  --output speech.mp3",
                curl_json(o, "/audio/speech", json!({"model": o.name, "voice": "alloy", "input": "Hello"}))
            )),
            ("Python", format!("{client}with client.audio.speech.with_streaming_response.create(model={model}, voice=\"alloy\", input=\"Hello\") as r:\n    r.stream_to_file(\"speech.mp3\")")),
        ],
        ModelKind::Image => vec![
            ("curl", curl_json(o, "/images/generations", json!({"model": o.name, "prompt": "A red panda in the snow", "n": 1}))),
            ("Python", format!("{client}img = client.images.generate(model={model}, prompt=\"A red panda in the snow\", n=1)\nprint(img.data[0].url or \"(base64 image)\")")),
        ],
    }
}

/// `curl` POSTing `body` as JSON to the operation at `path`.
fn curl_json(o: &Offering, path: &str, body: serde_json::Value) -> String {
    let (url_sh, body_sh) = (shell_quote(&format!("{}{path}", o.base_url)), shell_quote(&body.to_string()));
    format!("curl {url_sh} \\\n  -H \"Authorization: Bearer $MAAS_API_KEY\" \\\n  -H \"Content-Type: application/json\" \\\n  -d {body_sh}")
}

/// A chat model's: chat completions, and Anthropic's SDK and Claude Code where it serves Messages.
fn chat(o: &Offering, url: &str, model: &str) -> Vec<(&'static str, String)> {
    let body = json!({"model": o.name, "messages": [{"role": "user", "content": "Hello"}]});
    let mut out = vec![
        ("curl", curl_json(o, "/chat/completions", body)),
        ("Python", format!(
            "import os\nfrom openai import OpenAI\n\nclient = OpenAI(base_url={url}, api_key=os.environ[\"MAAS_API_KEY\"])\nresp = client.chat.completions.create(\n    model={model},\n    messages=[{{\"role\": \"user\", \"content\": \"Hello\"}}],\n)\nprint(resp.choices[0].message.content)"
        )),
        ("JavaScript", format!(
            "import OpenAI from \"openai\";\n\nconst client = new OpenAI({{ baseURL: {url}, apiKey: process.env.MAAS_API_KEY }});\nconst resp = await client.chat.completions.create({{\n  model: {model},\n  messages: [{{ role: \"user\", content: \"Hello\" }}],\n}});\nconsole.log(resp.choices[0].message.content);"
        )),
    ];
    if o.apis.contains(&Api::Messages) {
        // Anthropic's clients take the origin: they add `/v1/messages` themselves.
        let origin = o.base_url.strip_suffix("/v1").unwrap_or(&o.base_url);
        let origin_py = serde_json::Value::from(origin).to_string();
        out.push(("Anthropic (Python)", format!(
            "import os\nfrom anthropic import Anthropic\n\nclient = Anthropic(base_url={origin_py}, api_key=os.environ[\"MAAS_API_KEY\"])\nmsg = client.messages.create(\n    model={model},\n    max_tokens=1024,\n    messages=[{{\"role\": \"user\", \"content\": \"Hello\"}}],\n)\nprint(msg.content[0].text)"
        )));
        out.push((
            "Claude Code",
            format!(
                "ANTHROPIC_BASE_URL={} ANTHROPIC_API_KEY=\"$MAAS_API_KEY\" claude --model {}",
                shell_quote(origin),
                shell_quote(&o.name)
            ),
        ));
    }
    out
}

/// One shell word: single quotes, each `'` inside written as `'\''`. Nothing in it expands.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "http://host/\"><svg/onload=alert(1)>$(touch /tmp/pwned)'`id`";

    fn offering() -> Offering {
        Offering {
            name: "m'\"x".into(),
            provider: String::new(),
            description: String::new(),
            tags: vec![],
            base_url: format!("{HOSTILE}/v1"),
            apis: vec![Api::Chat, Api::Messages],
            snippets: vec![],
            kind: ModelKind::Chat,
        }
    }

    /// The curl line, run by a real shell with `curl` replaced by a function that prints its
    /// arguments: the address and the body come out as the literal words, nothing is executed.
    #[test]
    fn the_curl_line_is_one_word_per_value_in_a_real_shell() {
        let snips = snippets(&offering());
        let [(_, curl), ..] = &snips[..] else { panic!("no snippets") };
        let script = format!("curl() {{ printf '%s\\n' \"$@\"; }}\nMAAS_API_KEY=k\n{curl}\n");
        let out = std::process::Command::new("bash").arg("-c").arg(&script).output().expect("bash");
        let out = String::from_utf8(out.stdout).unwrap();
        let args: Vec<&str> = out.lines().collect();
        assert_eq!(args[0], format!("{HOSTILE}/v1/chat/completions"));
        assert_eq!(args[2], "Authorization: Bearer k");
        let body: serde_json::Value = serde_json::from_str(args[6]).unwrap();
        assert_eq!(body["model"], "m'\"x");
    }

    /// Every kind's curl line calls its own operation, with the model as one word: in the JSON
    /// body, or as a form field for an upload.
    #[test]
    fn each_kinds_curl_line_calls_its_operation() {
        for (kind, path) in [
            (ModelKind::Chat, "/chat/completions"),
            (ModelKind::Embedding, "/embeddings"),
            (ModelKind::Rerank, "/rerank"),
            (ModelKind::SpeechToText, "/audio/transcriptions"),
            (ModelKind::TextToSpeech, "/audio/speech"),
            (ModelKind::Image, "/images/generations"),
        ] {
            let o = Offering { kind, ..offering() };
            let snips = snippets(&o);
            let [(_, curl), ..] = &snips[..] else { panic!("no snippets") };
            let script = format!("curl() {{ printf '%s\\n' \"$@\"; }}\nMAAS_API_KEY=k\n{curl}\n");
            let out = std::process::Command::new("bash").arg("-c").arg(&script).output().expect("bash");
            let out = String::from_utf8(out.stdout).unwrap();
            let args: Vec<&str> = out.lines().collect();
            assert_eq!(args[0], format!("{HOSTILE}/v1{path}"), "{kind:?}");
            match kind {
                ModelKind::SpeechToText => assert_eq!(args[3..], ["-F", "file=@audio.wav", "-F", "model=m'\"x"]),
                _ => assert_eq!(serde_json::from_str::<serde_json::Value>(args[6]).unwrap()["model"], "m'\"x", "{kind:?}"),
            }
        }
    }

    #[test]
    fn the_python_and_javascript_snippets_hold_the_values_as_string_literals() {
        let snips = snippets(&offering());
        let [_, (_, py), (_, js), (_, anthropic), (_, claude)] = &snips[..] else { panic!("{snips:?}") };
        // Claude Code's line: the origin and the model as single shell words.
        let script = format!("claude() {{ printf '%s\\n' \"$ANTHROPIC_BASE_URL\" \"$@\"; }}\nMAAS_API_KEY=k\n{claude}\n");
        let out = std::process::Command::new("bash").arg("-c").arg(&script).output().expect("bash");
        let out = String::from_utf8(out.stdout).unwrap();
        assert_eq!(out.lines().collect::<Vec<_>>(), [HOSTILE, "--model", "m'\"x"]);
        assert!(anthropic.contains(&format!("base_url={}", serde_json::Value::from(HOSTILE))), "{anthropic}");
        // Python's own parser: base_url and model are string constants equal to the values.
        let check = "import ast,json,sys\nkw=[n for n in ast.walk(ast.parse(sys.stdin.read())) if isinstance(n, ast.keyword) and n.arg in ('base_url','model')]\nprint(json.dumps(sorted([k.arg, ast.literal_eval(k.value)] for k in kw)))";
        let mut child = std::process::Command::new("python3")
            .arg("-c")
            .arg(check)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(py.as_bytes()).unwrap();
        let out = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
        let found: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(found, serde_json::json!([["base_url", format!("{HOSTILE}/v1")], ["model", "m'\"x"]]));
        // JavaScript: the same literals, as JSON strings, are what the snippet holds.
        assert!(js.contains(&format!("baseURL: {}", serde_json::Value::from(format!("{HOSTILE}/v1")))), "{js}");
    }
}
