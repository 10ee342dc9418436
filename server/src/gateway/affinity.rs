//! The conversation key of a call under the cache-affinity policy: what the operator chose
//! (OpenAI's `prompt_cache_key` or `user`, Anthropic's `metadata.user_id`, or the caller's API
//! key), hashed for the balancer's rendezvous hashing. Read only for a model with that policy.
use super::body::RequestBody;
use super::snapshot::{Caller, Route};
use app::types::{AffinityKey, Policy};
use std::hash::{Hash, Hasher};

/// The call's key, hashed; `None` when the model routes otherwise or the call carries none
/// (it then goes to the least busy endpoint).
pub fn key_of(route: &Route, req: &RequestBody<'_>, caller: &Caller) -> Option<u64> {
    if route.policy != Policy::Affinity {
        return None;
    }
    let mut h = rustc_hash::FxHasher::default();
    match route.affinity_key {
        AffinityKey::ApiKey => caller.key_id.hash(&mut h),
        AffinityKey::PromptCacheKey => member_text(req, "prompt_cache_key")?.hash(&mut h),
        AffinityKey::User => member_text(req, "user")?.hash(&mut h),
        AffinityKey::MetadataUserId => {
            #[derive(serde::Deserialize)]
            struct Metadata<'a> {
                #[serde(borrow)]
                user_id: Option<std::borrow::Cow<'a, str>>,
            }
            let meta: Metadata = serde_json::from_str(req.member("metadata")?.get()).ok()?;
            meta.user_id?.hash(&mut h);
        }
    }
    Some(h.finish())
}

/// A member's JSON text (the same conversation sends the same text); `None` when absent or null.
fn member_text<'r>(req: &'r RequestBody<'_>, name: &str) -> Option<&'r str> {
    req.member(name).map(|v| v.get()).filter(|v| *v != "null")
}
