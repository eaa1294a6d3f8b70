//! Opening the connection: DNS, a non-blocking TCP connect, TLS and the HTTP upgrade, all
//! bounded by one deadline and abandoned at once when the caller closes or frees the client.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::events::lock;
use crate::handshake::{Handshake, Outcome};
use crate::http_extras::{self, Response};
use crate::outbox::Outbox;
use crate::protocol::Session;
use crate::target::Target;
use crate::*;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Mutex;
use std::time::Instant;

pub const WAKER: Token = Token(0);
pub const SOCKET: Token = Token(1);

/// The socket under the WebSocket: plain TCP or TLS over it. Records whether any bytes
/// arrived, which the heartbeat counts as a sign of life.
pub struct Stream {
    inner: Inner,
    pub got_bytes: bool,
}

enum Inner {
    Plain(TcpStream),
    Tls(Box<native_tls::TlsStream<TcpStream>>),
}

impl Stream {
    pub fn tcp(&self) -> &TcpStream {
        match &self.inner {
            Inner::Plain(s) => s,
            Inner::Tls(s) => s.get_ref(),
        }
    }

    fn is_tls(&self) -> bool {
        matches!(self.inner, Inner::Tls(_))
    }

    fn tcp_mut(&mut self) -> &mut TcpStream {
        match &mut self.inner {
            Inner::Plain(s) => s,
            Inner::Tls(s) => s.get_mut(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match &mut self.inner {
            Inner::Plain(s) => s.read(buf)?,
            Inner::Tls(s) => s.read(buf)?,
        };
        self.got_bytes |= n > 0;
        Ok(n)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(s) => s.write(buf),
            Inner::Tls(s) => s.write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(s) => s.write_vectored(bufs),
            Inner::Tls(s) => s.write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Plain(s) => s.flush(),
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
    /// The last handshake answer received (of the last hop), whatever its status.
    pub response: Option<Response>,
}

impl Io<'_> {
    /// Waits for the next socket event, failing on the deadline or a close/free request.
    fn wait(&mut self, what: &str) -> Result<()> {
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
        match self.poll.poll(self.events, Some(self.deadline - now)) {
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
                )?;
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
    let tcp = connect_tcp(io, hop)?;
    let stream = if hop.tls {
        // The server name override is for the URL's host, not for another one redirected to.
        let name = config
            .tls
            .server_name
            .as_deref()
            .filter(|_| http_extras::same_host(original, hop));
        start_tls(io, hop, name, config, tcp)?
    } else {
        Stream {
            inner: Inner::Plain(tcp),
            got_bytes: false,
        }
    };
    let extras = http_extras::request_extras(config, original, hop);
    let mut handshake = Handshake::new(hop, config, &extras)?;
    let outcome = upgrade(io, &mut handshake, config, stream);
    if let Some(answer) = handshake.answer.take() {
        io.response = Some(answer);
    }
    outcome
}

/// Resolves the host without holding up the worker past the deadline or a close: the
/// system resolver blocks, so it runs on a short-lived thread that wakes the worker when done.
fn resolve(io: &mut Io, target: &Target) -> Result<Vec<SocketAddr>> {
    if let Ok(ip) = target.host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, target.port)]);
    }
    let (tx, rx) = crossbeam_channel::bounded(1);
    let (host, port) = (target.host.clone(), target.port);
    let waker = io.outbox.waker();
    std::thread::Builder::new()
        .name("wsclient-dns".into())
        .spawn(move || {
            let _ = tx.send(
                (host.as_str(), port)
                    .to_socket_addrs()
                    .map(Iterator::collect::<Vec<_>>),
            );
            if let Some(w) = waker {
                let _ = w.wake();
            }
        })
        .map_err(|e| Error::new(WSC_ERR_INTERNAL, format!("cannot start the resolver: {e}")))?;
    let addrs: Vec<SocketAddr> = loop {
        if let Ok(result) = rx.try_recv() {
            break result.map_err(|e| {
                Error::new(
                    WSC_ERR_CONNECT,
                    format!("cannot resolve {:?}: {e}", target.host),
                )
            })?;
        }
        io.wait_any(&format!("resolving {:?}", target.host))?;
    };
    if addrs.is_empty() {
        return Err(Error::new(
            WSC_ERR_CONNECT,
            format!("{:?} has no address", target.host),
        ));
    }
    Ok(addrs)
}

/// Tries each resolved address in turn until one accepts.
fn connect_tcp(io: &mut Io, target: &Target) -> Result<TcpStream> {
    let mut last = None;
    for addr in resolve(io, target)? {
        io.check_cancelled()?;
        match connect_addr(io, addr) {
            Ok(s) => return Ok(s),
            Err(e) if e.status == WSC_ERR_CONNECT => last = Some(e),
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
    tcp: TcpStream,
) -> Result<Stream> {
    let name = server_name.unwrap_or(&target.host);
    let tls_err = |e: &dyn std::fmt::Display| {
        let shown = match server_name {
            Some(n) => format!("server name {n}, host {}", target.host),
            None => format!("host {}", target.host),
        };
        Error::new(WSC_ERR_TLS, format!("TLS: {e} ({shown})"))
    };
    let mut attempt = tls_connector(config)?.connect(name, tcp);
    loop {
        match attempt {
            Ok(s) => {
                return Ok(Stream {
                    inner: Inner::Tls(Box::new(s)),
                    got_bytes: false,
                })
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
                let _ = io.poll.registry().deregister(stream.tcp_mut());
                return Ok(Hop::Redirect { status, location });
            }
            None => io.wait("waiting for the handshake response")?,
        }
    }
}
