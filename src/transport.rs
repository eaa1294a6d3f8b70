//! Opening the connection: DNS, a non-blocking TCP connect, TLS and the HTTP upgrade, all
//! bounded by one deadline and abandoned at once when the caller closes or frees the client.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::events::lock;
use crate::handshake::{Handshake, Outcome};
use crate::http_extras::{self, Response};
use crate::log::{wsc_log, Level};
use crate::outbox::Outbox;
use crate::protocol::Session;
use crate::proxy;
use crate::target::Target;
use crate::*;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const WAKER: Token = Token(0);
pub const SOCKET: Token = Token(1);

/// The connected socket: TCP, or a unix domain socket (`wsc_config_set_unix_socket`).
pub enum Sock {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(mio::net::UnixStream),
}

impl Sock {
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.shutdown(how),
            #[cfg(unix)]
            Sock::Unix(s) => s.shutdown(how),
        }
    }
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.read(buf),
            #[cfg(unix)]
            Sock::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.write(buf),
            #[cfg(unix)]
            Sock::Unix(s) => s.write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.write_vectored(bufs),
            #[cfg(unix)]
            Sock::Unix(s) => s.write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.flush(),
            #[cfg(unix)]
            Sock::Unix(s) => s.flush(),
        }
    }
}

/// The socket under the WebSocket: plain, or TLS over it. Records whether any bytes
/// arrived, which the heartbeat counts as a sign of life.
pub struct Stream {
    inner: Inner,
    pub got_bytes: bool,
}

/// Lets a read that came back short stand for the WouldBlock the next read would give,
/// saving that system call per batch of messages (per message, one at a time). Safe only
/// once the worker's poller has reported an edge for this socket (edges consumed by another
/// poller, during the handshake, say nothing), and never once the peer closed or the socket
/// failed: those are states, not data, that a short read does not rule out.
#[derive(Default)]
struct Edges {
    seen: bool,
    drained: bool,
    closed: bool,
}

impl Edges {
    /// One read of the socket, or the WouldBlock that a short read before stands for.
    fn read(&mut self, sock: &mut Sock, buf: &mut [u8]) -> io::Result<usize> {
        // A stream socket's short read took all the data it had. Data that arrives later
        // raises a new edge (epoll reports every arrival; mio elsewhere needs the WouldBlock
        // to re-arm), which clears `drained` (`readable_edge`).
        if cfg!(any(target_os = "linux", target_os = "android"))
            && self.drained
            && self.seen
            && !self.closed
        {
            self.drained = false;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = sock.read(buf)?;
        self.drained = n > 0 && n < buf.len();
        Ok(n)
    }
}

/// The socket and what the poller's edges tell about it.
struct Watched {
    sock: Sock,
    edges: Edges,
}

/// Under TLS: reads the socket in chunks of the read buffer size and serves the TLS
/// library's small reads (a record's header, then its body, then a header that is not there
/// yet) from them, so that a batch of records costs one system call instead of two each
/// and a WouldBlock.
struct ReadAhead {
    socket: Watched,
    /// `buf[start..end]` is read and not yet served; `buf` is allocated at the first read.
    buf: Vec<u8>,
    size: usize,
    start: usize,
    end: usize,
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.start == self.end {
            // A read as large as the buffer gains nothing from it.
            if out.len() >= self.size {
                return self.socket.edges.read(&mut self.socket.sock, out);
            }
            if self.buf.is_empty() {
                self.buf = vec![0; self.size];
            }
            self.end = self
                .socket
                .edges
                .read(&mut self.socket.sock, &mut self.buf)?;
            self.start = 0;
        }
        let n = out.len().min(self.end - self.start);
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

impl Write for ReadAhead {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.socket.sock.write(buf)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.socket.sock.write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.socket.sock.flush()
    }
}

enum Inner {
    Plain(Watched),
    Tls(Box<native_tls::TlsStream<ReadAhead>>),
}

impl Stream {
    fn plain(sock: Sock) -> Stream {
        Stream {
            inner: Inner::Plain(Watched {
                sock,
                edges: Edges::default(),
            }),
            got_bytes: false,
        }
    }

    /// Shuts down the socket (TCP or unix) under the stream, TLS or not.
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        match &self.inner {
            Inner::Plain(s) => s.sock.shutdown(how),
            Inner::Tls(s) => s.get_ref().socket.sock.shutdown(how),
        }
    }

    /// The worker's poller reported the socket readable (`closed`: the peer closed, or an
    /// error): the next read asks the socket again.
    pub fn readable_edge(&mut self, closed: bool) {
        let edges = &mut self.socket().edges;
        edges.seen = true;
        edges.drained = false;
        edges.closed |= closed;
    }

    /// The socket moves to another poller: forget its edges.
    pub fn new_poller(&mut self) {
        let edges = &mut self.socket().edges;
        edges.seen = false;
        edges.drained = false;
    }

    fn is_tls(&self) -> bool {
        matches!(self.inner, Inner::Tls(_))
    }

    fn socket(&mut self) -> &mut Watched {
        match &mut self.inner {
            Inner::Plain(s) => s,
            Inner::Tls(s) => &mut s.get_mut().socket,
        }
    }

    fn sock(&mut self) -> &mut Sock {
        &mut self.socket().sock
    }

    /// Takes the socket off a poller (before it is dropped, or moves to another).
    pub(crate) fn deregister(&mut self, registry: &mio::Registry) {
        let _ = match self.sock() {
            Sock::Tcp(s) => registry.deregister(s),
            #[cfg(unix)]
            Sock::Unix(s) => registry.deregister(s),
        };
    }

    /// Puts the socket on a shared worker's poller.
    pub(crate) fn register(&mut self, registry: &mio::Registry, token: Token) -> io::Result<()> {
        self.new_poller();
        let interest = Interest::READABLE | Interest::WRITABLE;
        match self.sock() {
            Sock::Tcp(s) => registry.register(s, token, interest),
            #[cfg(unix)]
            Sock::Unix(s) => registry.register(s, token, interest),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match &mut self.inner {
            Inner::Plain(s) => s.edges.read(&mut s.sock, buf)?,
            Inner::Tls(s) => s.read(buf)?,
        };
        self.got_bytes |= n > 0;
        Ok(n)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(s) => s.sock.write(buf),
            Inner::Tls(s) => s.write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(s) => s.sock.write_vectored(bufs),
            Inner::Tls(s) => s.write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Plain(s) => s.sock.flush(),
            Inner::Tls(s) => s.flush(),
        }
    }
}

/// The worker's poller while connecting.
pub struct Io<'a> {
    pub poll: &'a mut Poll,
    pub events: &'a mut Events,
    pub outbox: &'a Outbox,
    pub deadline: Instant,
    /// How long a wait looks for the next step of the handshake before it sleeps: each
    /// answer is expected within a round trip, and a wake-up would cost as much.
    pub busy_poll: Duration,
    /// The last handshake answer received (of the last hop), whatever its status.
    pub response: Option<Response>,
}

impl Io<'_> {
    /// Waits for the next socket event, failing on the deadline or a close/free request.
    pub(crate) fn wait(&mut self, what: &str) -> Result<()> {
        while !self.wait_any(what)? {}
        Ok(())
    }

    /// Waits for any event; true if the socket's.
    fn wait_any(&mut self, what: &str) -> Result<bool> {
        self.check_cancelled()?;
        let now = Instant::now();
        if now >= self.deadline {
            return Err(Error::new(WSC_ERR_TIMEOUT, format!("timed out {what}")));
        }
        let timeout = Some(self.deadline - now);
        match crate::worker::wait(self.poll, self.events, timeout, self.busy_poll, 0, None) {
            Ok(()) => Ok(self.events.iter().any(|e| e.token() == SOCKET)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
            Err(e) => Err(Error::new(WSC_ERR_INTERNAL, format!("poll failed: {e}"))),
        }
    }

    fn check_cancelled(&self) -> Result<()> {
        let control = lock(&self.outbox.control);
        if control.shutdown || control.close.is_some() {
            return Err(Error::new(
                WSC_ERR_NOT_CONNECTED,
                "closed before the connection opened",
            ));
        }
        Ok(())
    }
}

/// What a successful open gives the worker.
pub struct Opened {
    pub session: Session,
    pub subprotocol: String,
}

/// Connects to `target`, following redirects: every hop gets a new TCP (and TLS)
/// connection, all within the one connect deadline.
pub fn open(io: &mut Io, target: &Target, config: &Config) -> Result<Opened> {
    let mut hop = target.clone();
    let mut redirects = 0;
    loop {
        let result = open_hop(io, target, &hop, config);
        match result {
            Ok(Hop::Opened(opened)) => return Ok(*opened),
            Ok(Hop::Redirect { status, location }) => {
                hop = http_extras::follow(
                    &hop,
                    status,
                    &location,
                    redirects,
                    config.http.max_redirects,
                )
                // A redirect not followed is a refusal with that status (reconnect stops).
                .map_err(|e| Error {
                    http_status: status,
                    ..e
                })?;
                redirects += 1;
            }
            Err(mut e) if redirects > 0 => {
                e.message = format!(
                    "{} (after {redirects} redirect(s), at {})",
                    e.message, hop.url
                );
                return Err(e);
            }
            Err(e) => return Err(e),
        }
    }
}

enum Hop {
    Opened(Box<Opened>),
    Redirect { status: u16, location: String },
}

fn open_hop(io: &mut Io, original: &Target, hop: &Target, config: &Config) -> Result<Hop> {
    let sock = connect(io, hop, config)?;
    let stream = if hop.tls {
        // The server name override is for the URL's host, not for another one redirected to.
        let name = config
            .tls
            .server_name
            .as_deref()
            .filter(|_| http_extras::same_host(original, hop));
        start_tls(io, hop, name, config, sock)?
    } else {
        Stream::plain(sock)
    };
    let extras = http_extras::request_extras(config, original, hop);
    let mut handshake = Handshake::new(hop, config, &extras)?;
    let outcome = upgrade(io, &mut handshake, config, stream);
    if let Some(answer) = handshake.answer.take() {
        io.response = Some(answer);
    }
    outcome
}

/// The socket to speak WebSocket (or TLS) over: a unix socket when one is configured, else
/// a tunnel through the configured (or environment's) proxy, else TCP to the server.
fn connect(io: &mut Io, target: &Target, config: &Config) -> Result<Sock> {
    if let Some(path) = &config.unix_socket {
        return connect_unix(io, path);
    }
    let proxy = match &config.proxy {
        Some(p) => Some(p.clone()),
        None if config.proxy_from_env => proxy::from_env(
            |name| std::env::var(name).ok(),
            target.tls,
            &target.host,
            target.port,
        )?,
        None => None,
    };
    let Some(proxy) = proxy else {
        return Ok(Sock::Tcp(connect_tcp(io, &target.host, target.port)?));
    };
    wsc_log!(
        Level::Info,
        "connecting to {} through proxy {}",
        proxy::authority(&target.host, target.port),
        proxy.redacted()
    );
    let tcp = connect_tcp(io, &proxy.host, proxy.port).map_err(|e| {
        let status = match e.status {
            WSC_ERR_CONNECT => WSC_ERR_PROXY,
            other => other,
        };
        let msg = format!(
            "cannot connect to proxy {}: {}",
            proxy.redacted(),
            e.message
        );
        Error::new(status, msg)
    })?;
    let mut sock = Sock::Tcp(tcp);
    proxy::tunnel(io, &mut sock, &proxy, &target.host, target.port)?;
    Ok(sock)
}

#[cfg(unix)]
fn connect_unix(io: &mut Io, path: &std::path::Path) -> Result<Sock> {
    let failed = |e: &dyn std::fmt::Display| {
        Error::new(
            WSC_ERR_CONNECT,
            format!("cannot connect to unix socket {path:?}: {e}"),
        )
    };
    // sockaddr_un holds a path of at most 107 bytes on Linux (103 on the BSDs).
    let max =
        std::mem::size_of::<libc::sockaddr_un>() - std::mem::size_of::<libc::sa_family_t>() - 1;
    let len = path.as_os_str().len();
    if len > max {
        return Err(failed(&format!(
            "the path is {len} bytes, too long for a socket address (at most {max})"
        )));
    }
    let mut sock = mio::net::UnixStream::connect(path).map_err(|e| failed(&e))?;
    io.poll
        .registry()
        .register(&mut sock, SOCKET, Interest::READABLE | Interest::WRITABLE)
        .map_err(|e| Error::new(WSC_ERR_INTERNAL, format!("cannot register socket: {e}")))?;
    loop {
        if let Ok(Some(e)) | Err(e) = sock.take_error() {
            let _ = io.poll.registry().deregister(&mut sock);
            return Err(failed(&e));
        }
        match sock.peer_addr() {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
            Err(e) => {
                let _ = io.poll.registry().deregister(&mut sock);
                return Err(failed(&e));
            }
        }
        if let Err(e) = io.wait(&format!("connecting to unix socket {path:?}")) {
            let _ = io.poll.registry().deregister(&mut sock);
            return Err(e);
        }
    }
    wsc_log!(Level::Debug, "connected to unix socket {path:?}");
    Ok(Sock::Unix(sock))
}

#[cfg(not(unix))]
fn connect_unix(_io: &mut Io, _path: &std::path::Path) -> Result<Sock> {
    Err(Error::new(
        WSC_ERR_CONNECT,
        "unix domain sockets are not supported on this platform",
    ))
}

/// Resolves the host without holding up the worker past the deadline or a close: the
/// system resolver blocks, so it runs on a short-lived thread that wakes the worker when done.
fn resolve(io: &mut Io, host: &str, port: u16) -> Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    // Loopback by definition (RFC 6761 6.3), as browsers treat it: no resolver thread and
    // no getaddrinfo (nsswitch, /etc/hosts) on every connect to a local server.
    if host.eq_ignore_ascii_case("localhost") {
        use std::net::{Ipv4Addr, Ipv6Addr};
        return Ok(vec![
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port),
        ]);
    }
    wsc_log!(Level::Debug, "resolving {host:?}");
    let (tx, rx) = crossbeam_channel::bounded(1);
    let name = host.to_owned();
    let waker = io.outbox.waker();
    std::thread::Builder::new()
        .name("wsclient-dns".into())
        .spawn(move || {
            let _ = tx.send(
                (name.as_str(), port)
                    .to_socket_addrs()
                    .map(Iterator::collect::<Vec<_>>),
            );
            if let Some(w) = waker {
                w.wake();
            }
        })
        .map_err(|e| Error::new(WSC_ERR_INTERNAL, format!("cannot start the resolver: {e}")))?;
    let addrs: Vec<SocketAddr> = loop {
        if let Ok(result) = rx.try_recv() {
            break result.map_err(|e| {
                Error::new(WSC_ERR_CONNECT, format!("cannot resolve {host:?}: {e}"))
            })?;
        }
        io.wait_any(&format!("resolving {host:?}"))?;
    };
    if addrs.is_empty() {
        return Err(Error::new(
            WSC_ERR_CONNECT,
            format!("{host:?} has no address"),
        ));
    }
    wsc_log!(Level::Debug, "{host:?} resolved to {addrs:?}");
    Ok(addrs)
}

/// Tries each resolved address in turn until one accepts.
fn connect_tcp(io: &mut Io, host: &str, port: u16) -> Result<TcpStream> {
    let mut last = None;
    for addr in resolve(io, host, port)? {
        io.check_cancelled()?;
        match connect_addr(io, addr) {
            Ok(s) => return Ok(s),
            Err(e) if e.status == WSC_ERR_CONNECT => {
                wsc_log!(Level::Debug, "{}", e.message);
                last = Some(e)
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("resolve returns at least one address"))
}

fn connect_addr(io: &mut Io, addr: SocketAddr) -> Result<TcpStream> {
    let refused =
        |e: io::Error| Error::new(WSC_ERR_CONNECT, format!("cannot connect to {addr}: {e}"));
    let mut sock = TcpStream::connect(addr).map_err(refused)?;
    io.poll
        .registry()
        .register(&mut sock, SOCKET, Interest::READABLE | Interest::WRITABLE)
        .map_err(|e| Error::new(WSC_ERR_INTERNAL, format!("cannot register socket: {e}")))?;
    loop {
        if let Err(e) = io.wait(&format!("connecting to {addr}")) {
            let _ = io.poll.registry().deregister(&mut sock);
            return Err(e);
        }
        // Per mio: the connect finished once the socket reports an error or has a peer.
        if let Ok(Some(e)) | Err(e) = sock.take_error() {
            let _ = io.poll.registry().deregister(&mut sock);
            return Err(refused(e));
        }
        match sock.peer_addr() {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => continue,
            Err(e) => {
                let _ = io.poll.registry().deregister(&mut sock);
                return Err(refused(e));
            }
        }
    }
    let _ = sock.set_nodelay(true);
    wsc_log!(Level::Debug, "TCP connected to {addr}");
    Ok(sock)
}

/// A TLS connector for these settings. Building one loads the system's CA bundle (tens of ms
/// with OpenSSL 3), so the last few are kept and shared: a connector is immutable and cheap
/// to clone.
pub(crate) fn tls_connector(config: &Config) -> Result<native_tls::TlsConnector> {
    /// Extra roots, verify, host name check, the client identity's id (never its key).
    type Key = (Vec<Vec<u8>>, bool, bool, Option<u64>);
    static CACHE: Mutex<Vec<(Key, native_tls::TlsConnector)>> = Mutex::new(Vec::new());
    let key = (
        config.extra_roots.clone(),
        config.tls_verify,
        config.tls.skip_hostname_check,
        config.tls.identity.as_ref().map(|i| i.id),
    );
    if let Some((_, c)) = lock(&CACHE).iter().find(|(k, _)| *k == key) {
        return Ok(c.clone());
    }
    let connector = build_tls_connector(config)?;
    let mut cache = lock(&CACHE);
    if cache.len() >= 8 {
        cache.remove(0);
    }
    cache.push((key, connector.clone()));
    Ok(connector)
}

fn build_tls_connector(config: &Config) -> Result<native_tls::TlsConnector> {
    let mut b = native_tls::TlsConnector::builder();
    for der in &config.extra_roots {
        let cert = native_tls::Certificate::from_der(der)
            .map_err(|e| Error::new(WSC_ERR_TLS, format!("TLS: {e}")))?;
        b.add_root_certificate(cert);
    }
    if !config.tls_verify {
        b.danger_accept_invalid_certs(true)
            .danger_accept_invalid_hostnames(true);
    } else if config.tls.skip_hostname_check {
        b.danger_accept_invalid_hostnames(true);
    }
    if let Some(id) = &config.tls.identity {
        b.identity(id.identity.clone());
    }
    b.build()
        .map_err(|e| Error::new(WSC_ERR_TLS, format!("TLS: cannot set up: {e}")))
}

/// `server_name`: sent as SNI and verified instead of the target's host.
fn start_tls(
    io: &mut Io,
    target: &Target,
    server_name: Option<&str>,
    config: &Config,
    sock: Sock,
) -> Result<Stream> {
    let name = server_name.unwrap_or(&target.host);
    let tls_err = |e: &dyn std::fmt::Display| {
        let shown = match server_name {
            Some(n) => format!("server name {n}, host {}", target.host),
            None => format!("host {}", target.host),
        };
        Error::new(WSC_ERR_TLS, format!("TLS: {e} ({shown})"))
    };
    let socket = ReadAhead {
        socket: Watched {
            sock,
            edges: Edges::default(),
        },
        buf: Vec::new(),
        size: config.read_buffer_size,
        start: 0,
        end: 0,
    };
    let mut attempt = tls_connector(config)?.connect(name, socket);
    loop {
        match attempt {
            Ok(s) => {
                wsc_log!(Level::Debug, "TLS handshake with {} done", target.host);
                return Ok(Stream {
                    inner: Inner::Tls(Box::new(s)),
                    got_bytes: false,
                });
            }
            Err(native_tls::HandshakeError::Failure(e)) => return Err(tls_err(&e)),
            Err(native_tls::HandshakeError::WouldBlock(mid)) => {
                io.wait("during the TLS handshake")?;
                attempt = mid.handshake();
            }
        }
    }
}

/// A server that ends the connection right after the TLS handshake, before a byte of its
/// HTTP answer: with TLS 1.3 this is how a missing or untrusted client certificate is
/// refused (the server checks it after the client's side of the handshake is done, and its
/// alert is often lost to the TCP reset).
fn refused_after_tls(e: Error, config: &Config) -> Error {
    if e.status != WSC_ERR_HANDSHAKE && e.status != WSC_ERR_IO {
        return e;
    }
    let hint = if config.tls.identity.is_some() {
        "it may have refused the client certificate sent (wsc_config_set_client_cert)"
    } else {
        "it may require a client certificate (wsc_config_set_client_cert)"
    };
    Error::new(
        WSC_ERR_TLS,
        format!(
            "TLS: the server ended the connection after the TLS handshake without answering \
             ({}); {hint}",
            e.message
        ),
    )
}

fn upgrade(
    io: &mut Io,
    handshake: &mut Handshake,
    config: &Config,
    mut stream: Stream,
) -> Result<Hop> {
    loop {
        let step = handshake.advance(&mut stream);
        let step = match step {
            Err(e) if stream.is_tls() && !handshake.answer_started() => {
                return Err(refused_after_tls(e, config))
            }
            other => other?,
        };
        match step {
            Some(Outcome::Accepted(accepted)) => {
                let session =
                    Session::new(stream, accepted.tail, accepted.deflate.as_ref(), config);
                return Ok(Hop::Opened(Box::new(Opened {
                    session,
                    subprotocol: accepted.subprotocol,
                })));
            }
            Some(Outcome::Redirect { status, location }) => {
                stream.deregister(io.poll.registry());
                return Ok(Hop::Redirect { status, location });
            }
            None => io.wait("waiting for the handshake response")?,
        }
    }
}
