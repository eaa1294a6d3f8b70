//! Entry points for the cargo-fuzz targets in `fuzz/` (feature `fuzzing`, off by default):
//! each feeds arbitrary input to one parser the crate owns and must return without panicking,
//! hanging or allocating past the configured limits. Not part of the API.

use crate::deflate::{self, Offer, Params};
use crate::handshake::{Handshake, Outcome};
use crate::http_extras::request_extras;
use crate::protocol::{Incoming, ReadError, Session};
use crate::target::Target;
use crate::Config;
use std::io::{self, Read, Write};

/// An in-memory socket: reads hand out `input` in chunks of `chunk` bytes (so parsers see
/// partial data), then `WouldBlock`, or end of stream once `eof` is set; writes are counted
/// and dropped.
struct Mem<'a> {
    input: &'a [u8],
    chunk: usize,
    eof: bool,
    written: usize,
}

impl Read for Mem<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return if self.eof {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(self.chunk).min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
}

impl Write for Mem<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The first byte picks the read chunk size (1..=256), the rest is the data.
fn split(data: &[u8]) -> (usize, &[u8]) {
    match data.split_first() {
        Some((&b, rest)) => (b as usize + 1, rest),
        None => (1, data),
    }
}

/// `Target::parse` on any string.
pub fn url(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(t) = Target::parse(s) {
            assert!(t.port != 0 && !t.host.is_empty());
        }
    }
}

/// The handshake response parser: `Handshake::advance` reading `data` as the server's answer.
/// `{ACCEPT}` in the input is replaced by the correct `Sec-WebSocket-Accept` value, so the
/// fuzzer gets past that check to the subprotocol and extension checks.
pub fn handshake(data: &[u8]) {
    let (chunk, data) = split(data);
    let target = Target::parse("ws://fuzz.test/").expect("fixed URL");
    let config = Config {
        subprotocols: vec!["chat".into(), "superchat".into()],
        ..Config::default()
    };
    let mut hs = Handshake::new(&target, &config, &request_extras(&config, &target, &target))
        .expect("fixed request");
    let input = replace(data, b"{ACCEPT}", hs.accept_key().as_bytes());
    let mut mem = Mem {
        input: &input,
        chunk,
        eof: true,
        written: 0,
    };
    // Each call consumes at least one chunk or ends; the loop is bounded by the input.
    for _ in 0..=input.len() + 1 {
        match hs.advance(&mut mem) {
            Ok(Some(Outcome::Accepted(accepted))) => {
                assert!(
                    accepted.subprotocol.is_empty()
                        || config.subprotocols.contains(&accepted.subprotocol)
                );
                return;
            }
            Ok(Some(Outcome::Redirect { status, location })) => {
                assert!((300..400).contains(&status) && !location.is_empty());
                return;
            }
            Ok(None) => {}
            Err(_) => return,
        }
    }
    panic!("the handshake made no progress on a finished input");
}

fn replace(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

/// Extension negotiation: the first line is our offer's parameters (`Offer::parse`), the
/// other lines are the server's `Sec-WebSocket-Extensions` values (`deflate::accept_response`).
pub fn extensions(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = s.split('\n');
    let offer = match lines.next().map(Offer::parse) {
        Some(Ok(o)) => o,
        _ => Offer::browser(),
    };
    let values: Vec<&str> = lines.collect();
    if let Ok(Some(p)) = deflate::accept_response(&values, std::slice::from_ref(&offer)) {
        assert!((8..=15).contains(&p.client_max_window_bits));
        let _ = deflate::offer_header(&[offer]);
    }
}

/// The frame and message layer: a `Session` reading `data` as what the server sent after the
/// handshake, with or without permessage-deflate (first byte, bit 0), streaming (bit 5) and a
/// 256-byte read buffer (bit 6),
/// under a 64 KiB message limit; every message and chunk read must respect its limit.
pub fn session(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (chunk, input) = split(rest);
    let config = Config {
        max_message_size: 64 * 1024,
        max_frame_size: (flags & 2 != 0).then_some(4096),
        stream_chunk_size: if flags & 32 != 0 { 1000 } else { 0 },
        max_streamed_message_size: 1 << 20,
        read_buffer_size: if flags & 64 != 0 { 256 } else { 16 << 10 },
        ..Config::default()
    };
    let params = (flags & 1 != 0).then_some(Params {
        server_no_context_takeover: flags & 4 != 0,
        client_no_context_takeover: flags & 8 != 0,
        client_max_window_bits: 15,
    });
    let mem = Mem {
        input,
        chunk,
        eof: flags & 16 != 0,
        written: 0,
    };
    let mut session = Session::new(mem, Vec::new(), params.as_ref(), &config);
    for _ in 0..=input.len() + 1 {
        match session.read() {
            Ok(Incoming::Message(msg)) => {
                assert!(
                    msg.len() <= config.max_message_size,
                    "message over the limit"
                );
                if msg.is_close() {
                    let _ = session.flush();
                }
            }
            Ok(Incoming::Chunk(chunk)) => {
                assert!(
                    chunk.data.len() <= config.stream_chunk_size,
                    "chunk over its size"
                );
            }
            Err(ReadError::WouldBlock) | Err(ReadError::Closed) | Err(ReadError::Lost(_)) => return,
            Err(ReadError::Fault(_, code)) => {
                assert!(matches!(code, 1002 | 1007 | 1009), "close code {code}");
                session.close(None);
                let _ = session.flush();
                return;
            }
        }
    }
    panic!("the session made no progress on a finished input");
}

/// The config setters on arbitrary strings: NUL-separated header name, header value,
/// subprotocol, origin, deflate offer. A value a setter accepts must be one the handshake
/// request can carry.
pub fn config(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = s.split('\0');
    let mut next = || parts.next().unwrap_or("");
    let mut config = Config::default();
    let (name, value) = (next(), next());
    let _ = config.add_header(name, value);
    let _ = config.add_subprotocol(next());
    let _ = config.set_origin(next());
    if let Ok(offer) = Offer::parse(next()) {
        config.deflate_offers.push(offer);
    }
    let target = Target::parse("ws://fuzz.test/").expect("fixed URL");
    if let Err(e) = Handshake::new(&target, &config, &request_extras(&config, &target, &target)) {
        panic!("accepted settings the request cannot carry: {e:?}");
    }
}

/// The proxy code's parsers: the first byte picks one. 0-4: the CONNECT reply and the SOCKS5
/// method, auth and connect replies, which must ask for more bytes or consume no more than
/// they were given; else a proxy URL (then NUL, a `no_proxy` list and a host), whose
/// redacted form must not depend on the password.
pub fn proxy(data: &[u8]) {
    use crate::proxy::{self, Parse, ProxyUrl};
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let parsed = match which % 6 {
        0 => proxy::parse_connect_reply(rest),
        1 => proxy::parse_socks5_method(rest, false),
        2 => proxy::parse_socks5_method(rest, true),
        3 => proxy::parse_socks5_auth(rest),
        4 => proxy::parse_socks5_connect(rest),
        _ => {
            let Ok(s) = std::str::from_utf8(rest) else {
                return;
            };
            let mut parts = s.split('\0');
            let url = parts.next().unwrap_or("");
            // The redacted form must not depend on the password: the same URL with another
            // password must show the same.
            if let (Ok(p), Some(other)) = (ProxyUrl::parse(url), with_other_password(url)) {
                if let Ok(other) = ProxyUrl::parse(&other) {
                    assert_eq!(p.redacted(), other.redacted(), "the password shows");
                }
            }
            let list = parts.next().unwrap_or("");
            let host = parts.next().unwrap_or("");
            let _ = proxy::no_proxy_matches(list, host, 443);
            return;
        }
    };
    if let Ok(Parse::Done(n)) = parsed {
        assert!(n <= rest.len(), "consumed {n} of {} bytes", rest.len());
    }
}

/// `url` with the password of its authority's userinfo replaced by `x`; None without a
/// non-empty one.
fn with_other_password(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, host) = authority.rsplit_once('@')?;
    let (user, password) = userinfo.split_once(':')?;
    // An empty password may mean no credentials at all, which the redacted form does show.
    if password.is_empty() {
        return None;
    }
    Some(format!("{scheme}://{user}:x@{host}{tail}"))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Replays the seed corpus and every input a fuzzer ever found a fault with
    /// (`fuzz/regressions/<target>/`), so `cargo test` keeps them fixed.
    #[test]
    fn seeds_and_regressions_replay_cleanly() {
        type Target = (&'static str, fn(&[u8]));
        let targets: [Target; 6] = [
            ("url", super::url),
            ("handshake", super::handshake),
            ("extensions", super::extensions),
            ("session", super::session),
            ("config", super::config),
            ("proxy", super::proxy),
        ];
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut replayed = 0;
        for (name, run) in targets {
            for dir in ["seeds", "regressions"] {
                let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                    continue;
                };
                for entry in entries {
                    let path = entry.unwrap().path();
                    if path.file_name().is_some_and(|n| n == ".keep") {
                        continue;
                    }
                    run(&std::fs::read(&path).unwrap());
                    replayed += 1;
                }
            }
        }
        assert!(
            replayed >= 20,
            "only {replayed} inputs found under {root:?}"
        );
    }

    /// A valid answer split at every position, and dripped in chunks of 1 to 7 bytes, is
    /// accepted (the handshake parses only when the head may be complete).
    #[test]
    fn a_valid_answer_is_accepted_however_it_is_split() {
        use super::*;
        let target = Target::parse("ws://fuzz.test/").unwrap();
        let config = Config::default();
        let answer = |hs: &Handshake| {
            format!(
                "\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                hs.accept_key()
            )
            .into_bytes()
            .into_iter()
            .chain(*b"\x81\x02hi")
            .collect::<Vec<u8>>()
        };
        let run = |chunks: &mut dyn Iterator<Item = usize>, label: &str| {
            let mut hs =
                Handshake::new(&target, &config, &request_extras(&config, &target, &target))
                    .unwrap();
            let input = answer(&hs);
            let mut fed = 0;
            let mut mem = Mem {
                input: &[],
                chunk: usize::MAX,
                eof: false,
                written: 0,
            };
            loop {
                match hs.advance(&mut mem) {
                    Ok(Some(Outcome::Accepted(a))) => {
                        // What followed the head in the bytes read so far is kept.
                        let after_head = &input[input.len() - 4..fed.max(input.len() - 4)];
                        assert_eq!(a.tail, after_head, "{label}");
                        return;
                    }
                    Ok(Some(Outcome::Redirect { .. })) => panic!("{label}: a redirect"),
                    Ok(None) => {}
                    Err(e) => panic!("{label}: {e:?}"),
                }
                assert!(fed < input.len(), "{label}: not accepted after all input");
                let n = chunks.next().unwrap().min(input.len() - fed);
                mem.input = &input[fed..fed + n];
                fed += n;
            }
        };
        for cut in 1..120 {
            run(
                &mut [cut, usize::MAX].into_iter().cycle(),
                &format!("cut at {cut}"),
            );
        }
        for size in 1..8 {
            run(&mut std::iter::repeat(size), &format!("chunks of {size}"));
        }
    }

    /// A 64 KiB head dripped a byte at a time costs linear work, not quadratic (fuzzing ran at
    /// a few hundred inputs a second before).
    #[test]
    fn a_dripped_head_is_not_re_parsed_per_byte() {
        let mut d = vec![0u8]; // chunk size 1
        d.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nX: ");
        d.resize(70_000, b'a');
        let t = std::time::Instant::now();
        super::handshake(&d);
        // Quadratic parsing took 1.5 s in release and minutes in debug builds; linear takes
        // milliseconds. A generous bound: this is a complexity check, not a benchmark.
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn non_ascii_values_the_setters_accept_can_be_sent() {
        // The setters allow obs-text (bytes >= 0x80); the request builder must carry them.
        super::config("X-Name\0caf\u{e9}\0chat\0o\0".as_bytes());
        super::config("X\0v\0p\0\u{e9}\0".as_bytes());
    }
}
