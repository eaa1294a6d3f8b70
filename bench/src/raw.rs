//! The baseline: a plain blocking tungstenite client on the calling thread (no worker thread,
//! no FFI), TCP_NODELAY like libwsclient.

use std::io::Read;
use std::net::TcpStream;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Connector, Message, WebSocket};

pub type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// Connects to `url` (ws:// or wss:// on 127.0.0.1:`port`). For wss, `tls` is a connector
/// built once (trusting the bench CA), as a careful tungstenite user would keep one.
pub fn connect(url: &str, port: u16, tls: Option<&native_tls::TlsConnector>) -> Ws {
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("raw: connect");
    tcp.set_nodelay(true).expect("nodelay");
    let connector = match tls {
        Some(c) => Connector::NativeTls(c.clone()),
        None => Connector::Plain,
    };
    let (ws, _) = tungstenite::client_tls_with_config(url, tcp, None, Some(connector))
        .unwrap_or_else(|e| panic!("raw: handshake with {url}: {e}"));
    ws
}

/// Closes like libwsclient does: close frame, wait for the server's, then for its TCP FIN.
pub fn close(mut ws: Ws) {
    let _ = ws.close(None);
    drain(&mut ws);
}

/// Reads (answering a server close) until the WebSocket is closed, then waits for TCP EOF.
pub fn drain(ws: &mut Ws) {
    while ws.read().is_ok() {}
    let mut buf = [0u8; 256];
    loop {
        match ws.get_mut().read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// Reads until a text message arrives; returns it. On a non-blocking socket it retries on
/// WouldBlock, yielding the core in between (as libwsclient's worker does while it
/// busy-polls).
pub fn read_text(ws: &mut Ws) -> String {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => return t.as_str().to_owned(),
            Ok(Message::Close(_)) => panic!("raw: closed while waiting for text"),
            Ok(_) => {}
            Err(e) if would_block(&e) => std::thread::yield_now(),
            Err(e) => panic!("raw: read: {e}"),
        }
    }
}

/// Makes the socket non-blocking or blocking again: non-blocking, `read_text` polls it as an
/// event-loop client would, without sleeping until data arrives.
pub fn set_nonblocking(ws: &mut Ws, on: bool) {
    tcp(ws).set_nonblocking(on).expect("raw: set_nonblocking");
}

fn tcp(ws: &mut Ws) -> &TcpStream {
    match ws.get_mut() {
        MaybeTlsStream::Plain(s) => s,
        MaybeTlsStream::NativeTls(s) => s.get_ref(),
        _ => unreachable!("raw: only plain and native-tls streams"),
    }
}

fn would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// `send` on a non-blocking socket: flushes until the message is out, yielding in between.
pub fn send_spinning(ws: &mut Ws, msg: Message) {
    match ws.send(msg) {
        Ok(()) => return,
        Err(e) if would_block(&e) => {}
        Err(e) => panic!("raw: send: {e}"),
    }
    loop {
        match ws.flush() {
            Ok(()) => return,
            Err(e) if would_block(&e) => std::thread::yield_now(),
            Err(e) => panic!("raw: flush: {e}"),
        }
    }
}
