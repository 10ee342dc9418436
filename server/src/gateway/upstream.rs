//! The client side of the proxy: pooled keep-alive connections to the endpoints (http, or https
//! with rustls and Mozilla's roots, HTTP/2 where a TLS upstream offers it).
//!
//! One pool per thread: the server runs one single-threaded runtime per core, and a hyper
//! connection is driven by a task on the runtime that opened it. A shared pool would hand a
//! connection opened on core A to a request on core B, and every read would then cross cores.
use axum::body::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;
use thread_local::ThreadLocal;

type Pool = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

pub struct Upstream {
    connect_timeout: Duration,
    tls: rustls::ClientConfig,
    pools: ThreadLocal<Pool>,
}

/// Why an endpoint gave no response.
#[derive(Debug)]
pub enum SendError {
    /// Connecting took longer than the connect timeout.
    ConnectTimeout,
    /// Refused, reset, DNS failure, TLS failure…: the next endpoint may do better.
    Unreachable(hyper_util::client::legacy::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::ConnectTimeout => f.write_str("connect timeout"),
            SendError::Unreachable(e) => {
                // hyper-util's Display is terse ("client error (Connect)"); the cause says more.
                write!(f, "{e}")?;
                let mut src = std::error::Error::source(e);
                while let Some(s) = src {
                    write!(f, ": {s}")?;
                    src = s.source();
                }
                Ok(())
            }
        }
    }
}

impl Upstream {
    pub fn new(connect_timeout: Duration) -> Self {
        let tls = rustls::ClientConfig::builder_with_provider(rustls::crypto::ring::default_provider().into())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() })
            .with_no_client_auth();
        Upstream { connect_timeout, tls, pools: ThreadLocal::new() }
    }

    fn pool(&self) -> &Pool {
        self.pools.get_or(|| {
            let mut http = HttpConnector::new();
            http.enforce_http(false);
            http.set_nodelay(true);
            http.set_connect_timeout(Some(self.connect_timeout));
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(self.tls.clone())
                .https_or_http()
                .enable_http1()
                .enable_http2()
                .wrap_connector(http);
            Client::builder(TokioExecutor::new()).pool_timer(TokioTimer::new()).pool_idle_timeout(Duration::from_secs(90)).build(https)
        })
    }

    /// POSTs `body` (JSON) to `uri` with the endpoint's credentials; resolves when the response
    /// headers arrive, the body streams after.
    pub async fn post(&self, uri: Uri, auth: Option<&HeaderValue>, accept: Option<&HeaderValue>, body: Bytes) -> Result<http::Response<Incoming>, SendError> {
        let mut req = Request::builder().method(Method::POST).uri(uri).header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(a) = accept {
            req = req.header(ACCEPT, a);
        }
        if let Some(a) = auth {
            req = req.header(AUTHORIZATION, a);
        }
        let req = req.body(Full::new(body)).expect("method, URI and headers are already valid");
        self.pool().request(req).await.map_err(|e| if timed_out(&e) { SendError::ConnectTimeout } else { SendError::Unreachable(e) })
    }
}

fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut) {
            return true;
        }
        cur = err.source();
    }
    false
}
