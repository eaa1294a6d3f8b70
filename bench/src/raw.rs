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

/// Reads until a text message arrives; returns it.
pub fn read_text(ws: &mut Ws) -> String {
    loop {
        match ws.read().expect("raw: read") {
            Message::Text(t) => return t.as_str().to_owned(),
            Message::Close(_) => panic!("raw: closed while waiting for text"),
            _ => {}
        }
    }
}
