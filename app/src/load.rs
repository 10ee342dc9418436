//! Page data: a resource loaded by the server with the page, serialised into it and read back
//! when the page hydrates ([`load`]), in postcard, the encoding the server functions answer in
//! (`api`): one deserializer per type in the bundle, whichever way the data came.
use leptos::prelude::*;
use leptos::server::codee::binary::PostcardCodec;
use serde::{de::DeserializeOwned, Serialize};

/// Page data in postcard (base64 in the page's HTML).
pub type Loaded<T> = Resource<T, PostcardCodec>;

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
