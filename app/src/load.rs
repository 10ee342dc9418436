//! Page data: a server function's answer, loaded by the server with the page, written into it
//! and read back when the page hydrates ([`load`]); reloaded from the browser when its source
//! changes.
//!
//! A Leptos `Resource<T>` compiles its async machinery (the derived signal, its abortable
//! future, the server function's client) once per page datum. A [`Loaded<T>`] is one
//! `Resource<Answer>` whatever `T` is: the server function's answer as it comes over the wire
//! (status and postcard body), decoded to `T` only when the page reads it, as a `Call`'s is (`call`).
#[cfg(not(feature = "ssr"))]
use crate::call::{post, FORM};
use crate::call::{read, Answer};
use crate::error::AppError;
use leptos::prelude::*;
use leptos::server::codee::binary::PostcardCodec;
use serde::{de::DeserializeOwned, Serialize};
use server_fn::ServerFn;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;

/// A page datum: the answer of a server function, `T` or an [`AppError`].
pub struct Loaded<T> {
    raw: Resource<Answer, PostcardCodec>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Loaded<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Loaded<T> {}

/// Which call a datum is: the server function and its arguments, form-encoded (what the browser
/// posts to reload it), and how many times the source changed (a list reloads after a save
/// because its source holds the save's version, which the arguments do not carry).
#[derive(Clone)]
struct Fetch {
    path: &'static str,
    body: Result<String, String>,
    generation: u64,
    /// On the server the function runs in place, with the page's request as its context.
    #[cfg(feature = "ssr")]
    run: std::sync::Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Answer> + Send>> + Send + Sync>,
}

impl PartialEq for Fetch {
    fn eq(&self, other: &Self) -> bool {
        (self.path, &self.body, self.generation) == (other.path, &other.body, other.generation)
    }
}

/// The answer of the server function `call(source())` returns the arguments of, refetched when
/// `source` changes (as `Resource::new`).
#[track_caller]
pub fn load<S, A>(source: impl Fn() -> A + Send + Sync + 'static, call: impl Fn(A) -> S + Send + Sync + 'static) -> Loaded<S::Output>
where
    S: ServerFn<Error = AppError> + Serialize + Clone + Sync + 'static,
    S::Output: Serialize + DeserializeOwned + 'static,
{
    let generation = std::sync::atomic::AtomicU64::new(0);
    let source = Signal::derive(move || {
        let args = call(source());
        Fetch {
            path: S::PATH,
            body: serde_qs::to_string(&args).map_err(|e| e.to_string()),
            generation: generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            #[cfg(feature = "ssr")]
            run: std::sync::Arc::new(move || {
                let args = args.clone();
                Box::pin(async move { encode(args.run_body().await) })
            }),
        }
    });
    Loaded { raw: resource(source), _t: PhantomData }
}

/// The resource itself, out of the generic `load`: its machinery is compiled once.
#[track_caller]
fn resource(source: Signal<Fetch>) -> Resource<Answer, PostcardCodec> {
    Resource::new_with_options(move || source.get(), fetch, false)
}

/// One fetcher for every datum: in the browser a POST, on the server the function itself.
fn fetch(f: Fetch) -> impl Future<Output = Answer> + Send + 'static {
    #[cfg(feature = "ssr")]
    {
        (f.run)()
    }
    #[cfg(not(feature = "ssr"))]
    {
        // A browser future is not `Send`; it only ever runs on the page's one thread.
        send_wrapper::SendWrapper::new(post(f.path, FORM, f.body))
    }
}

/// An answer as the server function's HTTP response would carry it.
#[cfg(feature = "ssr")]
fn encode<T: Serialize>(answer: Result<T, AppError>) -> Answer {
    use server_fn::error::FromServerFnError;
    match answer {
        Ok(v) => match postcard::to_allocvec(&v) {
            Ok(body) => Answer::Http(200, body),
            Err(e) => Answer::Failed(e.to_string()),
        },
        Err(e) => Answer::Http(e.status(), e.ser().body.to_vec()),
    }
}

impl<T: DeserializeOwned + 'static> IntoFuture for Loaded<T> {
    type Output = Result<T, AppError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<T, AppError>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        let raw = self.raw;
        Box::pin(async move { read::<T>(&raw.await) })
    }
}
