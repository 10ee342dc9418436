//! The caller's JSON body, split into its top-level members without building a DOM: the
//! gateway only needs `model`, and forwards every other member byte for byte with `model`
//! replaced by the endpoint's Model ID. (Parsing into a `serde_json::Map` and serializing it
//! again allocated per key and value and showed in profiles.)
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// The body length a request declares (`Content-Length`), if any: what is refused at once when
/// over a limit, before a byte is read.
pub fn declared_length(headers: &axum::http::HeaderMap) -> Option<usize> {
    headers.get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok())
}

pub struct RequestBody<'a> {
    members: Vec<(Cow<'a, str>, &'a RawValue)>,
    model: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Not JSON, or not an object.
    Malformed(String),
    /// No `model`, or not a non-empty string.
    NoModel,
}

impl<'a> RequestBody<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BodyError> {
        let Members(members) = serde_json::from_slice(bytes).map_err(|e| BodyError::Malformed(e.to_string()))?;
        // The last `model` wins, as with any JSON object parser.
        let model = members.iter().rev().find(|(k, _)| k == "model").and_then(|(_, v)| serde_json::from_str::<String>(v.get()).ok());
        match model {
            Some(model) if !model.is_empty() => Ok(RequestBody { members, model }),
            _ => Err(BodyError::NoModel),
        }
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// The last member named `name`, as the caller wrote it.
    pub fn member(&self, name: &str) -> Option<&RawValue> {
        self.members.iter().rev().find(|(k, _)| k == name).map(|(_, v)| *v)
    }

    /// Whether the caller asked for a stream (`"stream": true`).
    pub fn streams(&self) -> bool {
        self.member("stream").is_some_and(|v| v.get() == "true")
    }

    /// The body to send upstream; `model_json` is the endpoint's Model ID as a JSON string.
    pub fn with_model(&self, model_json: &str) -> Vec<u8> {
        self.rewritten(model_json, None)
    }

    /// The body to send upstream with `model` replaced and, when given, `stream_options`
    /// replaced (or added) too.
    pub fn rewritten(&self, model_json: &str, stream_options: Option<&str>) -> Vec<u8> {
        let size: usize = self.members.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum();
        let mut out = Vec::with_capacity(size + model_json.len() + stream_options.map_or(0, |o| o.len() + 20) + 2);
        out.push(b'{');
        for (i, (k, v)) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match k {
                // Borrowed means the key had no escapes: its text is the key itself.
                Cow::Borrowed(k) => {
                    out.push(b'"');
                    out.extend_from_slice(k.as_bytes());
                    out.push(b'"');
                }
                Cow::Owned(k) => serde_json::to_writer(&mut out, k).expect("a string serializes"),
            }
            out.push(b':');
            let value = match (k.as_ref(), stream_options) {
                ("model", _) => model_json,
                ("stream_options", Some(o)) => o,
                _ => v.get(),
            };
            out.extend_from_slice(value.as_bytes());
        }
        if let Some(o) = stream_options.filter(|_| self.member("stream_options").is_none()) {
            if !self.members.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(b"\"stream_options\":");
            out.extend_from_slice(o.as_bytes());
        }
        out.push(b'}');
        out
    }
}

struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(8);
                while let Some(Key(k)) = map.next_key()? {
                    members.push((k, map.next_value::<&'de RawValue>()?));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(V)
    }
}

/// An object key, borrowed from the input unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn rewrite(input: &str, model_id: &str) -> Value {
        let b = RequestBody::parse(input.as_bytes()).unwrap();
        let out = b.with_model(&serde_json::to_string(model_id).unwrap());
        serde_json::from_slice(&out).expect("the rewritten body is JSON")
    }

    #[test]
    fn model_is_replaced_and_everything_else_kept() {
        let input = r#"{"model":"public","messages":[{"role":"user","content":"hé \"quoted\" \u00e9"}],"stream":true,"stream_options":{"include_usage":true},"n":1.5e3}"#;
        let mut want: Value = serde_json::from_str(input).unwrap();
        want["model"] = json!("up/\"private\"");
        assert_eq!(rewrite(input, "up/\"private\""), want);
    }

    #[test]
    fn stream_options_are_replaced_or_added() {
        let b = RequestBody::parse(br#"{"model":"m","stream":true,"stream_options":{"x":1}}"#).unwrap();
        assert!(b.streams());
        let out: Value = serde_json::from_slice(&b.rewritten("\"u\"", Some(r#"{"x":1,"include_usage":true}"#))).unwrap();
        assert_eq!(out, json!({"model": "u", "stream": true, "stream_options": {"x": 1, "include_usage": true}}));
        let b = RequestBody::parse(br#"{"model":"m","stream":true}"#).unwrap();
        let out: Value = serde_json::from_slice(&b.rewritten("\"u\"", Some(r#"{"include_usage":true}"#))).unwrap();
        assert_eq!(out, json!({"model": "u", "stream": true, "stream_options": {"include_usage": true}}));
        assert!(!RequestBody::parse(br#"{"model":"m","stream":false}"#).unwrap().streams());
    }

    #[test]
    fn escaped_keys_and_whitespace_survive() {
        let input = "{ \"mo\\u0064el\" : \"x\" ,\n \"a\\\"b\" : [ 1 , 2 ] }";
        let b = RequestBody::parse(input.as_bytes()).unwrap();
        assert_eq!(b.model(), "x", "an escaped key is still `model`");
        let out: Value = serde_json::from_slice(&b.with_model("\"y\"")).unwrap();
        assert_eq!(out, json!({"model": "y", "a\"b": [1, 2]}));
    }

    #[test]
    fn bad_bodies_are_refused() {
        for bad in ["", "[]", "{\"model\":\"x\"", "{\"model\":\"x\",}", "nonsense"] {
            assert!(matches!(RequestBody::parse(bad.as_bytes()), Err(BodyError::Malformed(_))), "{bad:?}");
        }
        for no_model in ["{}", r#"{"model":""}"#, r#"{"model":5}"#, r#"{"model":null}"#, r#"{"messages":[]}"#] {
            assert_eq!(RequestBody::parse(no_model.as_bytes()).err(), Some(BodyError::NoModel), "{no_model:?}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
                "\\PC{0,20}".prop_map(Value::from),
            ];
            leaf.prop_recursive(6, 200, 8, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                    proptest::collection::btree_map("\\PC{0,10}", inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            /// Any JSON object with a `model`: forwarded with every other member as it was and
            /// `model` replaced, however the caller spelled the rest (escapes, nesting, sizes).
            #[test]
            fn every_member_but_model_passes_through(
                members in proptest::collection::btree_map("\\PC{0,12}", json_value(), 0..12),
                model in "\\PC{1,40}",
                upstream in "\\PC{1,40}",
                pretty in any::<bool>(),
            ) {
                let mut obj: serde_json::Map<String, Value> = members.into_iter().filter(|(k, _)| k != "model").collect();
                obj.insert("model".into(), Value::from(model.clone()));
                let input = Value::Object(obj);
                let text = if pretty { serde_json::to_string_pretty(&input).unwrap() } else { input.to_string() };
                let b = RequestBody::parse(text.as_bytes()).unwrap();
                prop_assert_eq!(b.model(), model.as_str());
                // The members' bytes are forwarded as they came: compared as read back by the
                // same parser (serde_json's float parsing is not exact both ways).
                let mut want: Value = serde_json::from_str(&text).unwrap();
                want["model"] = Value::from(upstream.clone());
                let out: Value = serde_json::from_slice(&b.with_model(&serde_json::to_string(&upstream).unwrap())).unwrap();
                prop_assert_eq!(out, want);
            }

            /// Whatever bytes arrive: a clear refusal or a body, never a panic; and a body only
            /// for a JSON object with a non-empty string `model`.
            #[test]
            fn any_bytes_are_refused_or_parsed_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
                if let Ok(b) = RequestBody::parse(&bytes) {
                    let v: Value = serde_json::from_slice(&bytes).unwrap();
                    prop_assert!(v.is_object());
                    prop_assert!(!b.model().is_empty());
                }
            }

            /// Deeply nested input (a 10 MiB body can nest five million arrays) never overflows the
            /// stack: members are skipped, not recursed into, and forwarded as they came.
            #[test]
            fn deep_nesting_never_overflows_the_stack(depth in 100usize..500_000) {
                let body = format!("{{\"model\":\"m\",\"x\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
                let b = RequestBody::parse(body.as_bytes()).unwrap();
                prop_assert_eq!(b.with_model("\"u\"").len(), body.len());
            }
        }
    }
}
