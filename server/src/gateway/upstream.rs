//! The client side of the proxy: keep-alive connections to the endpoints.
//!
//! Plain `http://` endpoints (self-hosted models: vLLM, TGI, Ollama… on the cluster's network,
//! the bulk of a MaaS platform's traffic) use our own HTTP/1.1 pool over hyper's connection API;
//! `https://` endpoints use hyper-util's pooled client with rustls and Mozilla's roots (HTTP/2
//! where the upstream offers it), through the egress proxy the environment names
//! (`HTTPS_PROXY`, `NO_PROXY`) when there is one.
//!
//! Why our own pool for http: hyper-util's general-purpose pool cost ~6k instructions per
//! request (hashing its pool key, boxing and moving its futures, a spawned task per response to
//! wait for the connection to become idle), a tenth of everything the gateway does per request.
//! Ours is a vector of idle connections per upstream host per thread: checkout pops the most
//! recently used one, and the response body hands its connection back when it ends.
//!
//! One pool per thread: the server runs one single-threaded runtime per core, and a hyper
//! connection is driven by a task on the runtime that opened it. A shared pool would hand a
//! connection opened on core A to a request on core B, and every read would then cross cores.
use axum::body::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustc_hash::FxHashMap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::cell::RefCell;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use thread_local::ThreadLocal;

use super::upload::UploadBody;

type TlsClient = Client<HttpsConnector<Egress>, OutBody>;
type Sender = http1::SendRequest<OutBody>;

/// A request body as it goes upstream: JSON whole, or an upload read from its spool.
type OutBody = http_body_util::Either<Full<Bytes>, UploadBody>;

/// What a call sends an endpoint.
pub enum Payload {
    /// A JSON body.
    Json(Bytes),
    /// A multipart form (`upload.rs`), with its own Content-Type.
    Form(UploadBody),
}

/// An idle connection is closed after this long unused (upstream servers usually close theirs
/// sooner; this bounds what we hold for endpoints that stopped getting traffic).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How often a thread's idle connections to every host are checked for `IDLE_TIMEOUT`.
const SWEEP_EVERY: Duration = Duration::from_secs(15);
/// Idle connections kept per host and thread; more are closed when their response ends.
const MAX_IDLE_PER_HOST: usize = 256;

/// Where to send one operation of one endpoint, parsed once per snapshot.
pub struct Target {
    /// Absolute: what the TLS client takes, and what logs show.
    uri: Uri,
    /// `Some` for `http://`: the pool's key, request line and Host header.
    plain: Option<PlainTarget>,
}

struct PlainTarget {
    /// `host:port`, also the pool's key.
    addr: Arc<str>,
    host: String,
    port: u16,
    /// Origin-form (`/path?query`), what HTTP/1.1 puts on the request line to an origin server.
    origin: Uri,
    host_header: HeaderValue,
}

impl Target {
    /// `None` unless `url` is an absolute http or https URL.
    pub fn parse(url: &str) -> Option<Target> {
        let uri: Uri = url.parse().ok()?;
        let authority = uri.authority()?.clone();
        let plain = match uri.scheme_str()? {
            "https" => None,
            "http" => {
                let port = authority.port_u16().unwrap_or(80);
                // `Uri::host` keeps an IPv6 literal's brackets; a socket address wants it bare.
                let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
                // The Host header is the authority without any userinfo (RFC 9110 §7.2).
                let host_header = HeaderValue::from_str(authority.as_str().rsplit('@').next()?).ok()?;
                let origin = uri.path_and_query().map_or("/", |p| p.as_str()).parse().ok()?;
                Some(PlainTarget { addr: format!("{}:{port}", authority.host()).into(), host, port, origin, host_header })
            }
            _ => return None,
        };
        Some(Target { uri, plain })
    }

    pub fn uri(&self) -> &Uri {
        &self.uri
    }
}

pub struct Upstream {
    connect_timeout: Duration,
    tls: rustls::ClientConfig,
    proxies: Arc<Proxies>,
    tls_clients: ThreadLocal<TlsClient>,
    /// Shared with the response bodies, which hand their connection back when they end.
    idle: Arc<ThreadLocal<RefCell<IdleConns>>>,
}

/// One thread's idle HTTP/1 connections, by `host:port`.
struct IdleConns {
    hosts: FxHashMap<Arc<str>, Vec<Parked>>,
    swept: Instant,
}

impl Default for IdleConns {
    fn default() -> Self {
        IdleConns { hosts: FxHashMap::default(), swept: Instant::now() }
    }
}

struct Parked {
    tx: Sender,
    since: Instant,
}

impl IdleConns {
    /// The most recently used idle connection to `addr` that can take a request now (its
    /// socket is likeliest to be warm and open); closed or expired ones found on the way are
    /// dropped.
    fn checkout(&mut self, addr: &str, now: Instant) -> Option<Sender> {
        if now.duration_since(self.swept) > SWEEP_EVERY {
            self.swept = now;
            self.hosts.retain(|_, conns| {
                conns.retain(|c| !c.tx.is_closed() && now.duration_since(c.since) < IDLE_TIMEOUT);
                !conns.is_empty()
            });
        }
        let conns = self.hosts.get_mut(addr)?;
        while let Some(c) = conns.pop() {
            // Not ready means closing, or (rarely) not yet re-armed after its last response:
            // either way it cannot take this request, and a connection is cheap to reopen.
            if c.tx.is_ready() && now.duration_since(c.since) < IDLE_TIMEOUT {
                return Some(c.tx);
            }
        }
        None
    }

    fn park(&mut self, addr: Arc<str>, tx: Sender) {
        let conns = self.hosts.entry(addr).or_default();
        if conns.len() < MAX_IDLE_PER_HOST {
            conns.push(Parked { tx, since: Instant::now() });
        }
    }
}

/// Why an endpoint gave no response.
#[derive(Debug)]
pub enum SendError {
    /// Connecting took longer than the connect timeout.
    ConnectTimeout,
    /// Refused, reset, DNS failure, TLS failure…: the next endpoint may do better.
    Unreachable(Box<dyn std::error::Error + Send + Sync>),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::ConnectTimeout => f.write_str("connect timeout"),
            SendError::Unreachable(e) => {
                // hyper's Display is terse ("client error (Connect)"); the causes say more.
                write!(f, "{e}")?;
                let mut src = e.source();
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
    /// `extra_roots`: CAs trusted besides Mozilla's, for endpoints behind a private CA;
    /// `proxies`: which https endpoints go through which egress proxy.
    pub fn new(connect_timeout: Duration, extra_roots: &[CertificateDer<'static>], proxies: Arc<Proxies>) -> Self {
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        // Checked when the configuration is read (`parse_ca_pem`): none is ignored here.
        roots.add_parsable_certificates(extra_roots.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(rustls::crypto::ring::default_provider().into())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Upstream { connect_timeout, tls, proxies, tls_clients: ThreadLocal::new(), idle: Arc::default() }
    }

    fn tls_client(&self) -> &TlsClient {
        self.tls_clients.get_or(|| {
            let mut http = HttpConnector::new();
            http.enforce_http(false);
            http.set_nodelay(true);
            http.set_connect_timeout(Some(self.connect_timeout));
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(self.tls.clone())
                .https_only()
                .enable_http1()
                .enable_http2()
                .wrap_connector(Egress { direct: http, proxies: self.proxies.clone() });
            Client::builder(TokioExecutor::new()).pool_timer(TokioTimer::new()).pool_idle_timeout(IDLE_TIMEOUT).build(https)
        })
    }

    /// POSTs `body` to `target` with the endpoint's credentials; resolves when the
    /// response headers arrive, the body streams after. Dropping the future or the body before
    /// it ends closes the connection, which the upstream sees as a cancel.
    pub async fn post(
        &self,
        target: &Target,
        auth: Option<&HeaderValue>,
        accept: Option<&HeaderValue>,
        extra: &[(http::HeaderName, HeaderValue)],
        body: Payload,
    ) -> Result<http::Response<UpstreamBody>, SendError> {
        let (content_type, body) = match body {
            Payload::Json(b) => (HeaderValue::from_static("application/json"), http_body_util::Either::Left(Full::new(b))),
            Payload::Form(f) => (f.content_type.clone(), http_body_util::Either::Right(f)),
        };
        let mut req = Request::new(body);
        *req.method_mut() = Method::POST;
        let headers = req.headers_mut();
        headers.insert(CONTENT_TYPE, content_type);
        if let Some(a) = accept {
            headers.insert(ACCEPT, a.clone());
        }
        if let Some(a) = auth {
            headers.insert(AUTHORIZATION, a.clone());
        }
        for (k, v) in extra {
            headers.insert(k.clone(), v.clone());
        }
        self.send(target, req).await
    }

    /// GETs `target` with the endpoint's credentials (a health probe).
    pub async fn get(&self, target: &Target, auth: Option<&HeaderValue>) -> Result<http::Response<UpstreamBody>, SendError> {
        let mut req = Request::new(http_body_util::Either::Left(Full::new(Bytes::new())));
        if let Some(a) = auth {
            req.headers_mut().insert(AUTHORIZATION, a.clone());
        }
        self.send(target, req).await
    }

    async fn send(&self, target: &Target, mut req: Request<OutBody>) -> Result<http::Response<UpstreamBody>, SendError> {
        match &target.plain {
            Some(plain) => self.post_plain(plain, req).await,
            None => {
                *req.uri_mut() = target.uri.clone();
                let resp = self.tls_client().request(req).await.map_err(|e| {
                    if timed_out(&e) {
                        SendError::ConnectTimeout
                    } else {
                        SendError::Unreachable(e.into())
                    }
                })?;
                Ok(resp.map(|inner| UpstreamBody { inner, back: None, ended: false }))
            }
        }
    }

    async fn post_plain(&self, to: &PlainTarget, mut req: Request<OutBody>) -> Result<http::Response<UpstreamBody>, SendError> {
        *req.uri_mut() = to.origin.clone();
        req.headers_mut().insert(HOST, to.host_header.clone());
        // Bounded: every retry spends one pooled connection, and a new connection is never retried.
        loop {
            let pooled = self.idle.get_or_default().borrow_mut().checkout(&to.addr, Instant::now());
            let reused = pooled.is_some();
            let mut tx = match pooled {
                Some(tx) => tx,
                None => self.connect(to).await?,
            };
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    let back = Some(Back { tx, addr: to.addr.clone(), idle: self.idle.clone() });
                    return Ok(resp.map(|inner| UpstreamBody { inner, back, ended: false }));
                }
                Err(mut e) => match e.take_message() {
                    // The connection closed (the upstream's keep-alive timeout, say) before the
                    // request was written: nothing reached the upstream, so send it on another
                    // connection rather than count a failure against the endpoint.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(SendError::Unreachable(e.into_error().into())),
                },
            }
        }
    }

    async fn connect(&self, to: &PlainTarget) -> Result<Sender, SendError> {
        let tcp = match tokio::time::timeout(self.connect_timeout, tokio::net::TcpStream::connect((to.host.as_str(), to.port))).await {
            Err(_) => return Err(SendError::ConnectTimeout),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => return Err(SendError::ConnectTimeout),
            Ok(Err(e)) => return Err(SendError::Unreachable(format!("connecting to {}: {e}", to.addr).into())),
            Ok(Ok(tcp)) => tcp,
        };
        // Requests and SSE chunks are small writes that must leave at once.
        let _ = tcp.set_nodelay(true);
        let (tx, conn) = http1::handshake(TokioIo::new(tcp)).await.map_err(|e| SendError::Unreachable(e.into()))?;
        // Drives the connection on this thread's runtime until it closes.
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(tx)
    }
}

/// Egress proxies for https endpoints: `HTTPS_PROXY` / `ALL_PROXY` (an `http://` proxy, which
/// gets a CONNECT per connection; credentials in its URL become Proxy-Authorization) except for
/// the hosts of `NO_PROXY`. TLS runs end to end through the tunnel: the proxy sees only the
/// endpoint's host and port.
pub type Proxies = hyper_util::client::proxy::matcher::Matcher;

/// No egress proxy: every endpoint is connected to directly.
pub fn no_proxies() -> Arc<Proxies> {
    Arc::new(Proxies::builder().build())
}

/// The scheme of the proxy `proxies` name for https endpoints when we cannot tunnel through it
/// (anything but `http://`), so start-up can say so once; None when there is none or it is fine.
pub fn unsupported_proxy_scheme(proxies: &Proxies) -> Option<String> {
    let p = proxies.intercept(&Uri::from_static("https://proxy-check.invalid/"))?;
    (!tunnels(&p)).then(|| p.uri().scheme_str().unwrap_or("").to_owned())
}

/// Whether we can reach endpoints through this proxy: an `http://` one, with CONNECT.
fn tunnels(proxy: &hyper_util::client::proxy::matcher::Intercept) -> bool {
    proxy.uri().scheme_str() == Some("http")
}

/// The TLS client's TCP connector: direct, or through a CONNECT tunnel when `proxies` says so.
#[derive(Clone)]
pub struct Egress {
    direct: HttpConnector,
    proxies: Arc<Proxies>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<Uri> for Egress {
    type Response = <HttpConnector as tower::Service<Uri>>::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let direct = self.direct.clone();
        match self.proxies.intercept(&dst) {
            Some(proxy) if tunnels(&proxy) => {
                let mut tunnel = hyper_util::client::legacy::connect::proxy::Tunnel::new(proxy.uri().clone(), direct);
                if let Some(auth) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                Box::pin(async move {
                    tower::Service::call(&mut tunnel, dst).await.map_err(|e| format!("through the egress proxy: {e}").into())
                })
            }
            Some(proxy) => {
                let scheme = proxy.uri().scheme_str().unwrap_or("").to_owned();
                Box::pin(async move {
                    Err(format!("egress proxy scheme `{scheme}` is not supported (only http:// proxies, with CONNECT)").into())
                })
            }
            None => {
                let mut direct = direct;
                Box::pin(async move { tower::Service::call(&mut direct, dst).await.map_err(Into::into) })
            }
        }
    }
}

/// Where a response body hands its connection back to.
struct Back {
    tx: Sender,
    addr: Arc<str>,
    idle: Arc<ThreadLocal<RefCell<IdleConns>>>,
}

/// An upstream response body. Read to its end, it parks its connection for the next request;
/// dropped before (the client went away), it drops the connection, and hyper closes it.
pub struct UpstreamBody {
    inner: Incoming,
    back: Option<Back>,
    ended: bool,
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        // A body with a length is over with its last byte: the server may not poll again.
        self.ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => self.inner.is_end_stream(),
            Poll::Ready(Some(Err(_))) | Poll::Pending => false,
        };
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // An empty body (`Content-Length: 0`) ends before it is ever polled.
        if !(self.ended || self.inner.is_end_stream()) {
            return;
        }
        if let Some(Back { tx, addr, idle }) = self.back.take() {
            if !tx.is_closed() {
                if let Ok(mut conns) = idle.get_or_default().try_borrow_mut() {
                    conns.park(addr, tx);
                }
            }
        }
    }
}

/// The certificates of a PEM file of CAs, each one usable as a trust anchor.
pub fn parse_ca_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| format!("not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in it".into());
    }
    for (i, c) in certs.iter().enumerate() {
        rustls::RootCertStore::empty().add(c.clone()).map_err(|e| format!("certificate {} is not a usable CA: {e}", i + 1))?;
    }
    Ok(certs)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ca_files_are_refused_with_the_reason() {
        assert_eq!(parse_ca_pem(b"").unwrap_err(), "no certificate in it");
        assert_eq!(parse_ca_pem(b"just some text\n").unwrap_err(), "no certificate in it");
        let garbage = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
        assert!(parse_ca_pem(garbage).unwrap_err().starts_with("certificate 1 is not a usable CA"), "{:?}", parse_ca_pem(garbage));
    }

    #[test]
    fn targets_split_http_urls_into_pool_key_request_line_and_host() {
        let t = Target::parse("http://user:pw@10.0.0.5:8000/openai/v1/chat/completions?x=1").unwrap();
        let p = t.plain.as_ref().unwrap();
        assert_eq!((&*p.addr, p.host.as_str(), p.port), ("10.0.0.5:8000", "10.0.0.5", 8000));
        assert_eq!(p.origin, "/openai/v1/chat/completions?x=1");
        assert_eq!(p.host_header, "10.0.0.5:8000", "no userinfo in Host");
        let v6 = Target::parse("http://[::1]/v1/embeddings").unwrap();
        let p = v6.plain.as_ref().unwrap();
        assert_eq!((&*p.addr, p.host.as_str(), p.port), ("[::1]:80", "::1", 80));
        assert!(Target::parse("https://api.example.com/v1/chat/completions").unwrap().plain.is_none(), "https goes to the TLS client");
        for bad in ["ftp://x/y", "/relative", "http://"] {
            assert!(Target::parse(bad).is_none(), "{bad}");
        }
    }
}
