//! Unix domain sockets: ws and wss echo with a tungstenite server on a UnixListener (the URL
//! still gives Host and the path), and the failures: missing socket, path too long, NULL.
#![cfg(unix)]
// tungstenite's handshake callback fixes its large error type.
#![allow(clippy::result_large_err)]

mod common;

use common::*;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use wsclient::ffi::route::wsc_config_set_unix_socket;

/// An echo server on a fresh unix socket; records each handshake request (path, Host).
fn unix_echo(tls: bool) -> (PathBuf, std::sync::Arc<ServerLog>) {
    let path = temp_path("ws.sock");
    let listener = UnixListener::bind(&path).expect("bind unix socket");
    let log = std::sync::Arc::new(ServerLog::default());
    let log2 = std::sync::Arc::clone(&log);
    let acceptor = tls.then(|| localhost_tls().acceptor());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(30)));
            let (log, acceptor) = (std::sync::Arc::clone(&log2), acceptor.clone());
            std::thread::spawn(move || {
                let stream: Box<dyn Stream> = match &acceptor {
                    Some(a) => match a.accept(conn) {
                        Ok(s) => Box::new(s),
                        Err(e) => return log.update(|d| d.tls_errors.push(e.to_string())),
                    },
                    None => Box::new(conn),
                };
                let record =
                    |req: &tungstenite::handshake::server::Request,
                     resp: tungstenite::handshake::server::Response| {
                        let host = req
                            .headers()
                            .get("host")
                            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
                            .unwrap_or_default();
                        log.update(|d| {
                            d.notes.push(format!(
                                "{}?{} host={host}",
                                req.uri().path(),
                                req.uri().query().unwrap_or("")
                            ))
                        });
                        Ok(resp)
                    };
                if let Ok(ws) = tungstenite::accept_hdr(stream, record) {
                    echo_loop(ws, &log);
                }
            });
        }
    });
    (path, log)
}

fn unix_cfg(path: &Path) -> Cfg {
    let c = Cfg::new().localhost_ca();
    let p = cstr(path.to_str().unwrap());
    assert_ok(
        unsafe { wsc_config_set_unix_socket(c.raw(), p.as_ptr()) },
        "set_unix_socket",
    );
    c
}

fn echo_over_unix(tls: bool) {
    let (path, log) = unix_echo(tls);
    let scheme = if tls { "wss" } else { "ws" };
    // Port 1 and a name nothing resolves: only the unix socket can answer.
    let url = format!("{scheme}://localhost:1/chat/room?x=1");
    echo_once(&url, &unix_cfg(&path));
    let notes = log.snapshot().notes;
    assert_eq!(notes, vec!["/chat/room?x=1 host=localhost:1".to_string()]);
}

#[test]
fn ws_over_a_unix_socket() {
    echo_over_unix(false);
}

#[test]
fn wss_over_a_unix_socket() {
    echo_over_unix(true);
}

#[test]
fn a_unix_socket_takes_precedence_over_a_proxy() {
    let (path, _log) = unix_echo(false);
    let cfg = unix_cfg(&path).proxy(&format!("http://127.0.0.1:{}", refused_port()));
    echo_once("ws://localhost/", &cfg);
}

#[test]
fn a_missing_socket_fails_with_connect() {
    let path = temp_path("missing.sock");
    let (st, msg) = connect_failure("ws://localhost/", &unix_cfg(&path));
    assert_status(st, WSC_ERR_CONNECT, &msg);
    assert!(msg.contains("cannot connect to unix socket"), "{msg}");
    assert!(msg.contains("missing.sock"), "names the path: {msg}");
}

#[test]
fn a_socket_nobody_listens_on_fails_with_connect() {
    let path = temp_path("stale.sock");
    drop(UnixListener::bind(&path).unwrap()); // the file stays, nobody listens
    let (st, msg) = connect_failure("ws://localhost/", &unix_cfg(&path));
    assert_status(st, WSC_ERR_CONNECT, &msg);
    assert!(msg.contains("stale.sock"), "{msg}");
}

#[test]
fn a_path_too_long_fails_with_connect() {
    let path = PathBuf::from(format!("/tmp/{}.sock", "x".repeat(200)));
    let (st, msg) = connect_failure("ws://localhost/", &unix_cfg(&path));
    assert_status(st, WSC_ERR_CONNECT, &msg);
    assert!(msg.contains("cannot connect to unix socket"), "{msg}");
    assert!(msg.contains("too long"), "{msg}");
}

#[test]
fn the_setter_checks_its_arguments_and_empty_goes_back_to_tcp() {
    let c = Cfg::new();
    let p = cstr("/tmp/x.sock");
    assert_status(
        unsafe { wsc_config_set_unix_socket(std::ptr::null_mut(), p.as_ptr()) },
        WSC_ERR_INVALID_ARGUMENT,
        "NULL cfg",
    );
    assert_status(
        unsafe { wsc_config_set_unix_socket(c.raw(), std::ptr::null()) },
        WSC_ERR_INVALID_ARGUMENT,
        "NULL path",
    );
    let server = WsServer::echo();
    let cfg = unix_cfg(&temp_path("never.sock"));
    let empty = cstr("");
    assert_ok(
        unsafe { wsc_config_set_unix_socket(cfg.raw(), empty.as_ptr()) },
        "empty path",
    );
    echo_once(&server.url(), &cfg);
}
