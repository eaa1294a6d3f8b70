//! The bench server, run in a child process (`wsbench --server DIR`): plain tungstenite, one
//! thread per connection, routes by path:
//! - `/flood?size=N&count=M`: sends M binary messages of N bytes as fast as it can (frames are
//!   buffered and written in 128 KiB batches, flushed once at the end), then closes;
//! - `/sink`: reads and discards messages, counting them; a text `done` is answered with a text
//!   message holding the count (which then restarts from 0);
//! - anything else: echo (each text/binary message is sent back and flushed).
//!
//! It writes a self-signed certificate (rcgen) to DIR/cert.pem, listens on 127.0.0.1 for
//! ws:// and wss:// (native-tls), prints `READY <ws port> <wss port>` and serves until its
//! standard input closes (the parent died or finished).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use tungstenite::handshake::server::{Request, Response};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Bytes, Message};

/// Connection threads do little; keep their stacks small so 10,000 of them fit easily.
const CONN_STACK: usize = 256 * 1024;

pub fn run(dir: &Path) -> ! {
    // `--server-cpu N`: this process and every thread it starts run on CPU N only.
    if let Some(cpu) = std::env::var("WSBENCH_SERVER_CPU")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        crate::sys::pin_to_cpu(cpu);
    }
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("rcgen");
    let cert_pem = ck.cert.pem();
    let key_pem = ck.signing_key.serialize_pem();
    std::fs::write(dir.join("cert.pem"), &cert_pem).expect("write cert.pem");
    let identity = native_tls::Identity::from_pkcs8(cert_pem.as_bytes(), key_pem.as_bytes())
        .expect("identity");
    let acceptor = Arc::new(native_tls::TlsAcceptor::new(identity).expect("TLS acceptor"));

    crate::sys::raise_nofile(1 << 20);
    let ws = TcpListener::bind("127.0.0.1:0").expect("bind ws");
    let wss = TcpListener::bind("127.0.0.1:0").expect("bind wss");
    // std listens with a backlog of 128: the idle rows open 200 connections at once, and a
    // SYN dropped from a full backlog costs its client a 1 s retransmit.
    for l in [&ws, &wss] {
        // SAFETY: a listening socket's own descriptor; listen again only resizes the backlog.
        unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(l), 4096) };
    }
    println!(
        "READY {} {}",
        ws.local_addr().unwrap().port(),
        wss.local_addr().unwrap().port()
    );
    std::io::stdout().flush().ok();

    std::thread::spawn(move || accept_loop(ws, None));
    std::thread::spawn(move || accept_loop(wss, Some(acceptor)));

    // Serve until the parent closes our stdin.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    std::process::exit(0);
}

fn accept_loop(listener: TcpListener, tls: Option<Arc<native_tls::TlsAcceptor>>) {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                eprintln!("server: accept: {e}");
                std::thread::sleep(std::time::Duration::from_millis(5));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        let spawned = std::thread::Builder::new()
            .stack_size(CONN_STACK)
            .spawn(move || match tls {
                Some(acceptor) => match acceptor.accept(stream) {
                    Ok(s) => serve(s),
                    Err(e) => eprintln!("server: TLS accept: {e}"),
                },
                None => serve(stream),
            });
        if let Err(e) = spawned {
            eprintln!("server: cannot spawn a connection thread: {e}");
        }
    }
}

#[allow(clippy::result_large_err)] // tungstenite's callback signature
fn serve<S: Read + Write>(stream: S) {
    let mut path = String::new();
    let callback = |req: &Request, resp: Response| {
        path = req.uri().to_string();
        Ok(resp)
    };
    let config = WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    let mut ws = match tungstenite::accept_hdr_with_config(stream, callback, Some(config)) {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("server: handshake: {e}");
            return;
        }
    };
    let (route, query) = path.split_once('?').unwrap_or((path.as_str(), ""));
    let param = |name: &str| -> usize {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    };
    match route {
        "/flood" => {
            let payload = Bytes::from(vec![0xA5u8; param("size")]);
            for _ in 0..param("count") {
                // Buffers; writes (without flushing) whenever 128 KiB are queued.
                if ws.write(Message::Binary(payload.clone())).is_err() {
                    return;
                }
            }
            if ws.flush().is_err() {
                return;
            }
            let _ = ws.close(None);
            while ws.read().is_ok() {}
        }
        "/sink" => {
            let mut count: u64 = 0;
            loop {
                match ws.read() {
                    Ok(Message::Text(t)) if t.as_str() == "done" => {
                        if ws.send(Message::text(count.to_string())).is_err() {
                            return;
                        }
                        count = 0;
                    }
                    Ok(Message::Text(_)) | Ok(Message::Binary(_)) => count += 1,
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        }
        _ => loop {
            match ws.read() {
                Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                    if ws.send(m).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        },
    }
}

/// Starts the server child; returns it with the ws and wss ports.
pub struct Child {
    pub proc: std::process::Child,
    pub ws_port: u16,
    pub wss_port: u16,
    pub cert: std::path::PathBuf,
    pub dir: std::path::PathBuf,
}

pub fn spawn() -> Child {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = std::env::temp_dir().join(format!("wsbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let exe = std::env::current_exe().expect("current exe");
    let mut proc = Command::new(exe)
        .arg("--server")
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the server");
    let mut out = std::io::BufReader::new(proc.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).expect("server READY line");
    let mut it = line.split_whitespace();
    assert_eq!(it.next(), Some("READY"), "server said {line:?}");
    let ws_port = it.next().unwrap().parse().unwrap();
    let wss_port = it.next().unwrap().parse().unwrap();
    Child {
        proc,
        ws_port,
        wss_port,
        cert: dir.join("cert.pem"),
        dir,
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        drop(self.proc.stdin.take()); // the server exits on EOF
        let _ = self.proc.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
