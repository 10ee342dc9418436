//! Page data: a resource loaded by the server with the page, serialised into it and read back
//! when the page hydrates ([`load`]), in the JSON the server functions speak ([`Json`]).
use leptos::prelude::*;
use leptos::server::codee::{Decoder, Encoder};
use serde::{de::DeserializeOwned, Serialize};

/// codee's JSON, read with `serde_json::from_slice` instead of `from_str`. A server function's
/// answer is read with `from_slice`, and serde compiles each type's deserializer once per input
/// reader: with Leptos's default codec the bundle carried two copies of the deserializer of
/// every type a page loads, one for the page's first data and one for its reloads.
pub struct Json;

impl<T: Serialize> Encoder<T> for Json {
    type Error = serde_json::Error;
    type Encoded = String;

    fn encode(val: &T) -> Result<String, serde_json::Error> {
        serde_json::to_string(val)
    }
}

impl<T: DeserializeOwned> Decoder<T> for Json {
    type Error = serde_json::Error;
    type Encoded = str;

    fn decode(val: &str) -> Result<T, serde_json::Error> {
        serde_json::from_slice(val.as_bytes())
    }
}

/// Page data in [`Json`]: `Resource::new` with the console's codec.
pub type Loaded<T> = Resource<T, Json>;

/// A resource of `fetcher(source())`, refetched when `source` changes, as `Resource::new`.
#[track_caller]
pub fn load<T, S, Fut>(source: impl Fn() -> S + Send + Sync + 'static, fetcher: impl Fn(S) -> Fut + Send + Sync + 'static) -> Loaded<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    S: PartialEq + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    Resource::new_with_options(source, fetcher, false)
}
