//! A small WebSocket echo server for the demo and the C tests.
//!
//! Usage: `echo_server [--host 127.0.0.1] [--port 0] [--tls-cert cert.pem --tls-key key.pem]`
//!
//! The first line on stdout is `listening on ws://HOST:PORT` (or `wss://`), so a script that
//! asked for port 0 can learn the port the OS chose. One thread serves each connection; a
//! failing connection logs one line to stderr and never affects the others.
//!
//! What a connection does depends on the request path:
//! - `/close/<code>`: the server closes at once with `<code>` and reason "bye".
//! - `/ping`: the server sends a ping "hello" at once, then echoes.
//! - `/silent`: the server completes the handshake, then ignores the peer (at most 120 s).
//! - anything else: echo text and binary messages; pings and close are answered.
//!
//! On every path the first subprotocol the client offers is selected.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use std::{env, fs, process, thread};

use native_tls::{Identity, TlsAcceptor, TlsStream};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::http::{HeaderValue, StatusCode};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Error, HandshakeError, Message, WebSocket};

/// Large enough that a 16 MiB message (and more) round-trips in one frame.
const MAX_SIZE: usize = 64 << 20;
/// A peer that stalls the TLS or HTTP handshake must not hold a thread forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `/close/<code>` waits for the client's answering close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound on how long `/silent` keeps a connection open.
const SILENT_LIMIT: Duration = Duration::from_secs(120);

struct Options {
    host: String,
    port: u16,
    tls: Option<(String, String)>,
}

fn usage() -> ! {
    eprintln!(
        "usage: echo_server [--host 127.0.0.1] [--port N] [--tls-cert cert.pem --tls-key key.pem]"
    );
    process::exit(2);
}

fn parse_args() -> Options {
    let mut host = "127.0.0.1".to_string();
    let mut port = 0u16;
    let (mut cert, mut key) = (None, None);
    let mut args = env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--host" => host = value(),
            "--port" => port = value().parse().unwrap_or_else(|_| usage()),
            "--tls-cert" => cert = Some(value()),
            "--tls-key" => key = Some(value()),
            _ => usage(),
        }
    }
    let tls = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => usage(), // one without the other is a mistake, not "plain ws"
    };
    Options { host, port, tls }
}

fn load_acceptor(cert_path: &str, key_path: &str) -> Result<TlsAcceptor, String> {
    let cert = fs::read(cert_path).map_err(|e| format!("{cert_path}: {e}"))?;
    let key = fs::read(key_path).map_err(|e| format!("{key_path}: {e}"))?;
    let identity = Identity::from_pkcs8(&cert, &key).map_err(|e| format!("TLS identity: {e}"))?;
    TlsAcceptor::new(identity).map_err(|e| format!("TLS acceptor: {e}"))
}

fn main() {
    let opts = parse_args();
    let acceptor = opts.tls.as_ref().map(|(cert, key)| {
        Arc::new(load_acceptor(cert, key).unwrap_or_else(|e| {
            eprintln!("echo_server: {e}");
            process::exit(1);
        }))
    });
    let listener = TcpListener::bind((opts.host.as_str(), opts.port)).unwrap_or_else(|e| {
        eprintln!(
            "echo_server: cannot listen on {}:{}: {e}",
            opts.host, opts.port
        );
        process::exit(1);
    });
    let addr = listener
        .local_addr()
        .expect("bound listener has an address");
    let scheme = if acceptor.is_some() { "wss" } else { "ws" };
    // Scripts block on this line to learn the port, so it must not sit in a buffer.
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "listening on {scheme}://{addr}");
    let _ = out.flush();
    drop(out);

    for conn in listener.incoming() {
        let tcp = match conn {
            Ok(tcp) => tcp,
            Err(e) => {
                // E.g. out of file descriptors: back off instead of spinning.
                eprintln!("echo_server: accept: {e}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let acceptor = acceptor.clone();
        thread::spawn(move || {
            let peer = tcp
                .peer_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string());
            if let Err(e) = serve(tcp, acceptor.as_deref()) {
                eprintln!("echo_server: {peer}: {e}");
            }
        });
    }
}

/// Plain TCP or TLS over TCP, so one code path serves both.
enum Stream {
    Plain(TcpStream),
    Tls(TlsStream<TcpStream>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }

    /// Ends the connection politely: TLS `close_notify` first, so TLS clients see a clean EOF.
    fn shutdown(&mut self) {
        if let Stream::Tls(s) = self {
            let _ = s.shutdown();
        }
        let _ = self.tcp().shutdown(Shutdown::Both);
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// What the request path asked for.
enum Mode {
    Echo,
    Ping,
    Silent,
    Close(u16),
}

fn mode_for(path: &str) -> Result<Mode, String> {
    Ok(match path {
        "/ping" => Mode::Ping,
        "/silent" => Mode::Silent,
        _ => match path.strip_prefix("/close/") {
            // Any u16 is allowed on purpose, so tests can send codes a client must reject.
            Some(code) => Mode::Close(
                code.parse()
                    .map_err(|_| format!("bad close code {code:?}"))?,
            ),
            None => Mode::Echo,
        },
    })
}

fn serve(tcp: TcpStream, acceptor: Option<&TlsAcceptor>) -> Result<(), String> {
    tcp.set_nodelay(true).ok(); // echo latency matters more than packet count
    tcp.set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let stream = match acceptor {
        Some(acceptor) => Stream::Tls(acceptor.accept(tcp).map_err(|e| match e {
            // A blocking socket only "would block" once HANDSHAKE_TIMEOUT has passed.
            native_tls::HandshakeError::WouldBlock(_) => "TLS handshake timed out".to_string(),
            native_tls::HandshakeError::Failure(e) => format!("TLS handshake: {e}"),
        })?),
        None => Stream::Plain(tcp),
    };

    let mut mode = Mode::Echo;
    #[allow(clippy::result_large_err)] // the signature tungstenite's `Callback` requires
    let on_request = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        mode = mode_for(req.uri().path()).map_err(|msg| {
            let mut err = ErrorResponse::new(Some(msg));
            *err.status_mut() = StatusCode::BAD_REQUEST;
            err
        })?;
        if let Some(proto) = first_subprotocol(req) {
            resp.headers_mut().insert("Sec-WebSocket-Protocol", proto);
        }
        Ok(resp)
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_SIZE))
        .max_frame_size(Some(MAX_SIZE));
    let mut ws = tungstenite::accept_hdr_with_config(stream, on_request, Some(config)).map_err(
        |e| match e {
            HandshakeError::Interrupted(_) => "WebSocket handshake timed out".to_string(),
            HandshakeError::Failure(e) => format!("WebSocket handshake: {e}"),
        },
    )?;
    ws.get_ref()
        .tcp()
        .set_read_timeout(None)
        .map_err(|e| e.to_string())?;

    let result = match mode {
        Mode::Echo => echo(&mut ws),
        Mode::Ping => ws
            .send(Message::Ping("hello".into()))
            .and_then(|()| echo(&mut ws)),
        Mode::Close(code) => close_with(&mut ws, code),
        Mode::Silent => {
            silent(ws.get_ref().tcp());
            Ok(())
        }
    };
    ws.get_mut().shutdown();
    match result {
        // The normal ends of a connection: the close handshake completed.
        Ok(()) | Err(Error::ConnectionClosed) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// The first name in the first `Sec-WebSocket-Protocol` header, if the client offered any.
fn first_subprotocol(req: &Request) -> Option<HeaderValue> {
    let offered = req.headers().get_all("Sec-WebSocket-Protocol").iter();
    let names = offered
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    names
        .map(str::trim)
        .find(|n| !n.is_empty())
        .and_then(|n| HeaderValue::from_str(n).ok())
}

/// Echoes data messages until the peer closes. Pings and the close reply are queued by
/// tungstenite itself and flushed on the next `read`, which then reports `ConnectionClosed`.
fn echo(ws: &mut WebSocket<Stream>) -> tungstenite::Result<()> {
    loop {
        match ws.read()? {
            msg @ (Message::Text(_) | Message::Binary(_)) => ws.send(msg)?,
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => {}
        }
    }
}

/// Starts the close handshake with `code`, then reads until the client's close frame arrives
/// (the read then fails with `ConnectionClosed`), bounded so a mute client cannot hang us.
fn close_with(ws: &mut WebSocket<Stream>, code: u16) -> tungstenite::Result<()> {
    ws.close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: "bye".into(),
    }))?;
    ws.get_ref().tcp().set_read_timeout(Some(CLOSE_TIMEOUT))?;
    loop {
        ws.read()?; // data the client sent before it saw our close is dropped
    }
}

/// Never answers anything; returns when the peer goes away or after `SILENT_LIMIT`.
/// Raw bytes are read and thrown away only to notice the peer's EOF.
fn silent(tcp: &TcpStream) {
    let deadline = Instant::now() + SILENT_LIMIT;
    let mut sink = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || tcp.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match (&*tcp).read(&mut sink) {
            Ok(0) | Err(_) => return, // EOF, reset, or the deadline passed
            Ok(_) => {}
        }
    }
}
