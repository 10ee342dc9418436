//! The HTTP server around the console and the gateway: the accept loop, the bound on open
//! connections, the client timeouts, and the drain on shutdown. What one hostile client can
//! hold of the process is bounded here, below every route:
//!
//! - a connection that sends nothing (new, or idle between requests) is closed after the idle
//!   timeout; one whose request head does not arrive in full within the header timeout of its
//!   first byte, or whose body arrives slower than the minimum rate once its grace is over, is
//!   dropped;
//! - a request being answered is never cut: the timeouts are about what the client sends, not
//!   about how long the upstream takes (a stream may pause for minutes between tokens);
//! - past the connection bound the oldest idle connection is closed to make room, and with none
//!   idle the newcomer gets an immediate 503, never a hang; either is logged once per episode.
//!
//! Cost on the request path: two clock reads and a few relaxed atomics on the connection's own
//! state; each connection's watchdog is a task of its own, woken by a coarse tick, never by
//! the connection's traffic.
use axum::body::{Body, Bytes};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};

/// What a client may hold of the server. Defaults are in docs/configuration.md.
#[derive(Clone, Debug)]
pub struct ClientLimits {
    /// From the first byte of a request until its complete head (request line and headers).
    pub header_timeout: Duration,
    /// A connection with no request under way and no byte received for this long is closed.
    pub idle_timeout: Duration,
    /// Grace before the body's minimum rate applies (a body of any size may take this long).
    pub body_timeout: Duration,
    /// Past the grace, a request body must average at least this many bytes per second.
    pub body_min_rate: u64,
    /// Open connections (all serving threads together); clipped to what the open-file limit
    /// allows, see [`ClientLimits::effective_max_connections`].
    pub max_connections: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(10),
            body_min_rate: 4096,
            max_connections: 10_000,
        }
    }
}

impl ClientLimits {
    /// The connection bound the open-file limit can carry: each client connection may hold an
    /// upstream connection too, and the database, the logs and the upstream pool need some.
    pub fn effective_max_connections(&self, open_files: u64) -> usize {
        let budget = (open_files.saturating_sub(256) / 2).max(16);
        self.max_connections.min(usize::try_from(budget).unwrap_or(usize::MAX)).max(1)
    }

    /// How often each connection's watchdog looks: a quarter of the shortest timeout (a
    /// deadline is enforced at most that late), between 50 ms and 1 s.
    fn tick(&self) -> Duration {
        let shortest = self.header_timeout.min(self.idle_timeout).min(self.body_timeout);
        (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

/// Raises the soft open-file limit to the hard one (the usual soft 1,024 is what a few hundred
/// idle connections exhaust). Returns the soft limit now in force.
pub fn raise_open_file_limit() -> u64 {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return 1024;
            }
            if lim.rlim_cur < lim.rlim_max {
                let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    lim.rlim_cur = lim.rlim_max;
                }
            }
        }
        lim.rlim_cur
    }
    #[cfg(not(unix))]
    1024
}

/// The process's connections, shared by every serving thread: the bound and who to evict.
pub struct Server {
    limits: ClientLimits,
    max: usize,
    conns: Mutex<FxHashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    open: AtomicUsize,
    /// Set while the process is at its bound (or out of file descriptors): logged once.
    saturated: AtomicBool,
    /// The server is draining: answers close their connections.
    stopping: AtomicBool,
    epoch: Instant,
}

impl Server {
    /// `open_files`: the soft open-file limit (see [`raise_open_file_limit`]).
    pub fn new(limits: ClientLimits, open_files: u64) -> Arc<Self> {
        let max = limits.effective_max_connections(open_files);
        Arc::new(Server {
            limits,
            max,
            conns: Mutex::new(FxHashMap::default()),
            next_id: AtomicU64::new(1),
            open: AtomicUsize::new(0),
            saturated: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            epoch: Instant::now(),
        })
    }

    pub fn max_connections(&self) -> usize {
        self.max
    }

    pub fn open_connections(&self) -> usize {
        self.open.load(Relaxed)
    }

    fn now_ms(&self) -> u64 {
        // +1: 0 means "not set" in the connections' stamps.
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// A slot for a new connection: under the bound, or by evicting the connection idle the
    /// longest. `None`: every connection is answering a request, refuse the newcomer.
    fn admit(&self) -> Option<Arc<Conn>> {
        if self.open.load(Relaxed) >= self.max && !self.evict_oldest_idle() {
            self.log_saturated("connection limit reached and every connection is busy: refusing new connections with 503");
            return None;
        }
        let conn = Arc::new(Conn::new(self.next_id.fetch_add(1, Relaxed), self.now_ms()));
        self.conns.lock().insert(conn.id, conn.clone());
        self.open.fetch_add(1, Relaxed);
        Some(conn)
    }

    fn release(&self, conn: &Conn) {
        self.conns.lock().remove(&conn.id);
        let open = self.open.fetch_sub(1, Relaxed) - 1;
        if open < self.max * 9 / 10 && self.saturated.swap(false, Relaxed) {
            tracing::info!(open, max = self.max, "below the connection limit again");
        }
    }

    /// Tells the connection idle the longest (no request under way, the oldest last activity)
    /// to close. False when there is none.
    fn evict_oldest_idle(&self) -> bool {
        self.log_saturated("connection limit reached: closing the connections idle the longest to admit new ones");
        let conns = self.conns.lock();
        let victim = conns.values().filter(|c| !c.evicted.load(Relaxed) && c.is_idle()).min_by_key(|c| c.last_activity());
        match victim {
            Some(c) => {
                c.evicted.store(true, Relaxed);
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }

    fn log_saturated(&self, what: &str) {
        if !self.saturated.swap(true, Relaxed) {
            tracing::warn!(max = self.max, "{what} (MAAS_MAX_CONNECTIONS; logged once until the load falls)");
        }
    }
}

/// One connection's state, written by its own serving thread (the connection's task, its
/// request bodies and response bodies) and read by another thread only to pick an eviction.
struct Conn {
    id: u64,
    /// Requests whose response has not ended yet.
    in_flight: AtomicU32,
    /// When the connection last became idle (accepted, or a response ended), ms of `epoch`.
    idle_since: AtomicU64,
    /// When the first byte of the next request arrived while idle; 0: none yet.
    head_since: AtomicU64,
    /// Request bodies still being received, since when, and how much of them arrived.
    open_bodies: AtomicU32,
    body_since: AtomicU64,
    body_bytes: AtomicU64,
    evicted: AtomicBool,
    /// A request body was dropped before its end (refused before it was read): hyper will close
    /// the connection after the answer, so the answer says `Connection: close` (a pooled client
    /// would otherwise send its next request on a connection about to close).
    body_unread: AtomicBool,
    evict: Notify,
    /// Set, under this lock, once the socket is closed (see [`ClientIo`]).
    socket_closed: Mutex<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    Idle,
    Header,
    Body,
    /// Idle while evicted or while the server drains.
    Leaving,
}

impl Conn {
    /// A connection accepted at `now`: idle, nothing received yet.
    fn new(id: u64, now: u64) -> Self {
        Conn {
            id,
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(now),
            head_since: AtomicU64::new(0),
            open_bodies: AtomicU32::new(0),
            body_since: AtomicU64::new(0),
            body_bytes: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            body_unread: AtomicBool::new(false),
            evict: Notify::new(),
            socket_closed: Mutex::new(false),
        }
    }

    /// Shuts the socket down (the connection then ends on its next read or write), unless it
    /// is closed already: its descriptor may belong to another connection by now.
    fn shut(&self, fd: std::os::fd::RawFd) {
        let closed = self.socket_closed.lock();
        if !*closed {
            // SAFETY: `fd` is this connection's socket, still open (checked under the lock
            // that closing it takes).
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
    }

    fn is_idle(&self) -> bool {
        self.in_flight.load(Relaxed) == 0 && self.open_bodies.load(Relaxed) == 0
    }

    fn last_activity(&self) -> u64 {
        match self.head_since.load(Relaxed) {
            0 => self.idle_since.load(Relaxed),
            head => head,
        }
    }

    /// Which deadline, if any, the client has missed at `now`.
    fn expired(&self, now: u64, l: &ClientLimits) -> Option<Expired> {
        let ms = |d: Duration| d.as_millis() as u64;
        if self.open_bodies.load(Relaxed) > 0 {
            let elapsed = now.saturating_sub(self.body_since.load(Relaxed));
            let earned = self.body_bytes.load(Relaxed).saturating_mul(1000) / l.body_min_rate.max(1);
            return (elapsed > ms(l.body_timeout).saturating_add(earned)).then_some(Expired::Body);
        }
        if self.in_flight.load(Relaxed) > 0 {
            return None; // an answer under way: never cut, however long it takes
        }
        match self.head_since.load(Relaxed) {
            0 => (now.saturating_sub(self.idle_since.load(Relaxed)) > ms(l.idle_timeout)).then_some(Expired::Idle),
            head => (now.saturating_sub(head) > ms(l.header_timeout)).then_some(Expired::Header),
        }
    }
}

/// Serves `service` on `listener` until `stop` turns true, then stops accepting (the socket is
/// closed once every serving thread let go of it) and waits for the connections to finish what
/// they are answering. One call per serving thread, all sharing `server`.
pub async fn serve<S>(listener: tokio::net::TcpListener, service: S, server: Arc<Server>, mut stop: watch::Receiver<bool>) -> io::Result<()>
where
    S: tower::Service<axum::extract::Request, Response = axum::response::Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    // No hyper timer: the watchdog below enforces every client deadline, so hyper's own (a
    // boxed timer per request) would only add cost.
    let builder = Arc::new(hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => {
                server.stopping.store(true, Relaxed);
                break;
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) => {
                // Out of descriptors despite the bound (other files, upstream connections):
                // make room rather than spin on accept.
                server.log_saturated("out of file descriptors: closing the connections idle the longest");
                server.evict_oldest_idle();
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            // The peer gave up between SYN and accept (ECONNABORTED, ECONNRESET…).
            Err(_) => continue,
        };
        let Some(conn) = server.admit() else {
            refuse(tcp);
            continue;
        };
        let (server, builder, service, stop) = (server.clone(), builder.clone(), service.clone(), stop.clone());
        tasks.spawn(async move {
            connection(tcp, peer, &conn, service, &builder, &server, stop).await;
            server.release(&conn);
        });
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// At the bound with every connection busy: an immediate 503, then close. The request the
/// client already sent is read and dropped (for a second at most) before closing: closing with
/// it unread would reset the connection, and the client might lose the answer.
fn refuse(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const BODY: &str = r#"{"error":{"message":"The server has reached its connection limit; retry shortly.","type":"server_error","param":null,"code":"too_many_connections"}}"#;
    tokio::spawn(async move {
        let resp = format!("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{BODY}", BODY.len());
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            tcp.write_all(resp.as_bytes()).await?;
            tcp.shutdown().await?;
            let mut sink = [0u8; 4096];
            for _ in 0..16 {
                if tcp.read(&mut sink).await? == 0 {
                    break;
                }
            }
            Ok::<_, io::Error>(())
        })
        .await;
    });
}

async fn connection<S>(
    tcp: TcpStream,
    peer: SocketAddr,
    conn: &Arc<Conn>,
    service: S,
    builder: &hyper_util::server::conn::auto::Builder<TokioExecutor>,
    server: &Arc<Server>,
    stop: watch::Receiver<bool>,
) where
    S: tower::Service<axum::extract::Request, Response = axum::response::Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    // Stream chunks leave as they are written, not after the previous one is acked.
    let _ = tcp.set_nodelay(true);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
    // The watchdog is a task of its own: the connection's polls (several per request) do not
    // poll its timer too. (Polled together in one select!, timer, eviction and stop signal
    // cost ~1,500 instructions per proxied request, callgrind.)
    tokio::spawn(watchdog(conn.clone(), server.clone(), fd, stop, peer));
    let io = TokioIo::new(ClientIo { tcp: std::mem::ManuallyDrop::new(tcp), conn: conn.clone(), server: server.clone() });
    let svc = ConnService { inner: service, conn: conn.clone(), server: server.clone(), peer };
    let _ = builder.serve_connection(io, svc).await;
}

/// Looks at one connection every tick (and at once when it is chosen for eviction or the
/// server stops) and closes its socket when the client missed a deadline, or when it is idle
/// and must go (evicted, or the server draining). A connection answering a request is never
/// closed by this: when evicted or draining, its response says `Connection: close` instead
/// (see [`Tracked`]), and it closes after that.
async fn watchdog(conn: Arc<Conn>, server: Arc<Server>, fd: std::os::fd::RawFd, mut stop: watch::Receiver<bool>, peer: SocketAddr) {
    let tick = server.limits.tick();
    let mut stop_open = true;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = conn.evict.notified() => {}
            r = stop.changed(), if stop_open => stop_open = r.is_ok(),
        }
        let leaving = *stop.borrow() || conn.evicted.load(Relaxed);
        let why = match conn.expired(server.now_ms(), &server.limits) {
            Some(why) => Some(why),
            None if leaving && conn.is_idle() && conn.head_since.load(Relaxed) == 0 => Some(Expired::Leaving),
            None => None,
        };
        if let Some(why) = why {
            tracing::debug!(%peer, ?why, "closing a client connection");
            conn.shut(fd);
            return;
        }
        if *conn.socket_closed.lock() {
            return;
        }
    }
}

/// The socket, noting when the first byte of a request arrives on an idle connection (the
/// start of its header deadline). It closes the socket under `Conn::socket_closed`'s lock, so
/// that the watchdog never shuts down a descriptor already reused by another connection.
struct ClientIo {
    tcp: std::mem::ManuallyDrop<TcpStream>,
    conn: Arc<Conn>,
    server: Arc<Server>,
}

impl Drop for ClientIo {
    fn drop(&mut self) {
        let mut closed = self.conn.socket_closed.lock();
        // SAFETY: dropped once, here, and never used again.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.tcp) };
        *closed = true;
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut *self.tcp).poll_read(cx, buf);
        if buf.filled().len() > before && self.conn.in_flight.load(Relaxed) == 0 && self.conn.head_since.load(Relaxed) == 0 {
            self.conn.head_since.store(self.server.now_ms(), Relaxed);
        }
        r
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.tcp).poll_write(cx, buf)
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.tcp).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.tcp).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.tcp).poll_shutdown(cx)
    }
}

/// Each request: counted in flight until its response body is dropped (sent, or the client
/// left), its body timed, and the peer's address in its extensions (`ConnectInfo`).
struct ConnService<S> {
    inner: S,
    conn: Arc<Conn>,
    server: Arc<Server>,
    peer: SocketAddr,
}

impl<S> hyper::service::Service<hyper::Request<Incoming>> for ConnService<S>
where
    S: tower::Service<axum::extract::Request, Response = axum::response::Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = hyper::Response<TrackedBody>;
    type Error = Infallible;
    type Future = Tracked<S::Future>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let conn = &self.conn;
        conn.in_flight.fetch_add(1, Relaxed);
        let head = conn.head_since.swap(0, Relaxed);
        let (mut parts, incoming) = req.into_parts();
        let body = if hyper::body::Body::is_end_stream(&incoming) {
            Body::new(incoming)
        } else {
            if conn.open_bodies.fetch_add(1, Relaxed) == 0 {
                conn.body_since.store(if head == 0 { self.server.now_ms() } else { head }, Relaxed);
                conn.body_bytes.store(0, Relaxed);
            }
            // HTTP/2 streams end on their own, the connection stays: only HTTP/1 needs the close.
            let h2 = parts.version >= http::Version::HTTP_2;
            Body::new(TimedBody { inner: incoming, conn: conn.clone(), ended: h2 })
        };
        // The console reads the client's address (the login throttle); the gateway's routes know
        // callers by key, and are spared the extensions map this allocates.
        if !parts.uri.path().starts_with("/v1/") {
            parts.extensions.insert(axum::extract::ConnectInfo(self.peer));
        }
        // The routers are always ready (axum's Router, the gateway's Front).
        let fut = tower::Service::call(&mut self.inner.clone(), axum::extract::Request::from_parts(parts, body));
        Tracked { fut, end: Some(ResponseEnd { conn: conn.clone(), server: self.server.clone() }) }
    }
}

pin_project_lite::pin_project! {
    struct Tracked<F> {
        #[pin]
        fut: F,
        end: Option<ResponseEnd>,
    }
}

impl<F: Future<Output = Result<axum::response::Response, Infallible>>> Future for Tracked<F> {
    type Output = Result<hyper::Response<TrackedBody>, Infallible>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut resp) = std::task::ready!(this.fut.poll(cx));
        let end = this.end.take().expect("polled after completion");
        // Evicted or draining, or its request's body left unread: this answer is the
        // connection's last.
        if end.conn.evicted.load(Relaxed) || end.server.stopping.load(Relaxed) || end.conn.body_unread.swap(false, Relaxed) {
            resp.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(resp.map(|inner| TrackedBody { inner, _end: end })))
    }
}

/// Marks the response's end on the connection when dropped: hyper drops the body once it has
/// been sent, or when the client leaves. (A request whose handler future is dropped unfinished
/// drops this with it.)
struct ResponseEnd {
    conn: Arc<Conn>,
    server: Arc<Server>,
}

impl Drop for ResponseEnd {
    fn drop(&mut self) {
        self.conn.idle_since.store(self.server.now_ms(), Relaxed);
        self.conn.in_flight.fetch_sub(1, Relaxed);
    }
}

pub struct TrackedBody {
    inner: Body,
    _end: ResponseEnd,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body, counted towards its connection's minimum rate while it is being received.
struct TimedBody {
    inner: Incoming,
    conn: Arc<Conn>,
    /// Read to its end.
    ended: bool,
}

impl hyper::body::Body for TimedBody {
    type Data = Bytes;
    type Error = hyper::Error;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.conn.body_bytes.fetch_add(data.len() as u64, Relaxed);
                }
            }
            Poll::Ready(None) => self.ended = true,
            _ => {}
        }
        r
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TimedBody {
    // Read to its end or dropped unread (a refused request): no longer the client's to send.
    fn drop(&mut self) {
        self.conn.open_bodies.fetch_sub(1, Relaxed);
        if !self.ended && !hyper::body::Body::is_end_stream(&self.inner) {
            self.conn.body_unread.store(true, Relaxed);
        }
    }
}

/// `10s`, `500ms`, `2m`, `1h`, or a bare number of seconds: the durations' flag syntax.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, ""), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| format!("`{s}`: expected a duration such as 10s, 500ms or 2m"))?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86_400)),
        _ => return Err(format!("`{s}`: the unit must be ms, s, m, h or d")),
    };
    if d.is_zero() {
        return Err(format!("`{s}`: must be more than zero"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_by_phase() {
        let l = ClientLimits {
            header_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(3),
            body_min_rate: 1000,
            max_connections: 10,
        };
        let c = Conn::new(1, 1);
        assert_eq!(c.expired(5_001, &l), None);
        assert_eq!(c.expired(5_002, &l), Some(Expired::Idle));
        c.head_since.store(4_000, Relaxed);
        assert_eq!(c.expired(6_000, &l), None, "the header deadline runs from the first byte");
        assert_eq!(c.expired(6_001, &l), Some(Expired::Header));
        // A request under way: no deadline, however long its answer takes.
        c.head_since.store(0, Relaxed);
        c.in_flight.store(1, Relaxed);
        assert_eq!(c.expired(1_000_000, &l), None);
        // Its body: 3 s of grace, then 1 s more per 1,000 bytes received.
        c.open_bodies.store(1, Relaxed);
        c.body_since.store(10_000, Relaxed);
        assert_eq!(c.expired(13_000, &l), None);
        assert_eq!(c.expired(13_001, &l), Some(Expired::Body));
        c.body_bytes.store(5_000, Relaxed);
        assert_eq!(c.expired(18_000, &l), None);
        assert_eq!(c.expired(18_001, &l), Some(Expired::Body));
    }

    #[test]
    fn the_bound_fits_the_open_file_limit() {
        let l = ClientLimits::default();
        assert_eq!(l.effective_max_connections(1_048_576), 10_000);
        assert_eq!(l.effective_max_connections(1024), 384);
        assert_eq!(l.effective_max_connections(100), 16);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("8d"), Ok(Duration::from_secs(8 * 86_400)));
        assert!(parse_duration("5w").is_err());
    }

    #[test]
    fn raising_the_open_file_limit_reaches_the_hard_limit() {
        let soft = raise_open_file_limit();
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes the struct we pass.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(soft, lim.rlim_cur);
        assert_eq!(lim.rlim_cur, lim.rlim_max);
    }
}
