//! permessage-deflate (RFC 7692): the offers we send, the response we accept, and the
//! per-message compressor and decompressor (raw DEFLATE through flate2's zlib-rs backend,
//! which controls window sizes).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// One offer in `Sec-WebSocket-Extensions`, parameter by parameter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Offer {
    /// Ask the server to reset its compressor after each message.
    pub server_no_context_takeover: bool,
    /// Promise (hint) that we reset ours after each message.
    pub client_no_context_takeover: bool,
    /// Ask the server to use at most 2^N bytes of window.
    pub server_max_window_bits: Option<u8>,
    /// Allow the server to limit our window: `Some(None)` sends the parameter without a value.
    pub client_max_window_bits: Option<Option<u8>>,
}

impl Offer {
    /// What browsers send: `permessage-deflate; client_max_window_bits`.
    pub fn browser() -> Offer {
        Offer {
            client_max_window_bits: Some(None),
            ..Offer::default()
        }
    }

    /// Parses the parameter list of one offer, e.g. `client_max_window_bits; server_no_context_takeover`.
    pub fn parse(params: &str) -> Result<Offer, String> {
        let mut offer = Offer::default();
        let mut seen = Vec::new();
        for (name, value) in split_params(params)? {
            if seen.contains(&name) {
                return Err(format!("parameter {name} given twice"));
            }
            seen.push(name.clone());
            match (name.as_str(), value) {
                ("server_no_context_takeover", None) => offer.server_no_context_takeover = true,
                ("client_no_context_takeover", None) => offer.client_no_context_takeover = true,
                ("server_max_window_bits", Some(v)) => {
                    offer.server_max_window_bits = Some(window_bits(&v)?)
                }
                ("client_max_window_bits", None) => offer.client_max_window_bits = Some(None),
                ("client_max_window_bits", Some(v)) => {
                    offer.client_max_window_bits = Some(Some(window_bits(&v)?))
                }
                (n, v) => {
                    return Err(format!(
                        "unknown or malformed permessage-deflate parameter {n}{}",
                        v.map(|v| format!("={v}")).unwrap_or_default()
                    ))
                }
            }
        }
        Ok(offer)
    }

    fn header_value(&self) -> String {
        let mut s = String::from("permessage-deflate");
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if let Some(bits) = self.server_max_window_bits {
            s.push_str(&format!("; server_max_window_bits={bits}"));
        }
        match self.client_max_window_bits {
            Some(Some(bits)) => s.push_str(&format!("; client_max_window_bits={bits}")),
            Some(None) => s.push_str("; client_max_window_bits"),
            None => {}
        }
        s
    }
}

/// The `Sec-WebSocket-Extensions` value for our offers, most preferred first.
pub fn offer_header(offers: &[Offer]) -> String {
    offers
        .iter()
        .map(Offer::header_value)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the server accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    pub client_max_window_bits: u8,
}

/// Checks the server's `Sec-WebSocket-Extensions` answer against our offers. `Ok(None)`: no
/// extension in use. Anything we did not offer, or cannot honour, is refused.
pub fn accept_response(values: &[&str], offers: &[Offer]) -> Result<Option<Params>, String> {
    let extensions: Vec<&str> = values
        .iter()
        .flat_map(|v| split_list(v))
        .filter(|e| !e.trim().is_empty())
        .collect();
    match extensions.as_slice() {
        [] => return Ok(None),
        [_] if !offers.is_empty() => {}
        _ if offers.is_empty() => {
            return Err(format!(
                "server accepted an extension that was not offered: {:?}",
                values.join(", ")
            ))
        }
        _ => {
            return Err(format!(
                "server accepted more than one extension: {:?}",
                values.join(", ")
            ))
        }
    }
    let (name, params) = extensions[0].split_once(';').unwrap_or((extensions[0], ""));
    if !name.trim().eq_ignore_ascii_case("permessage-deflate") {
        return Err(format!(
            "server accepted an extension that was not offered: {:?}",
            name.trim()
        ));
    }
    let answer = Offer::parse(params).map_err(|e| format!("bad permessage-deflate answer: {e}"))?;
    let client_bits = match answer.client_max_window_bits {
        Some(Some(bits)) => {
            if !offers.iter().any(|o| o.client_max_window_bits.is_some()) {
                return Err("server set client_max_window_bits, which was not offered".into());
            }
            bits
        }
        Some(None) => return Err("server sent client_max_window_bits without a value".into()),
        None => 15,
    };
    if let Some(bits) = answer.server_max_window_bits {
        if offers
            .iter()
            .all(|o| o.server_max_window_bits.is_some_and(|max| bits > max))
        {
            return Err(format!(
                "server_max_window_bits={bits} exceeds what was offered"
            ));
        }
    }
    if offers.iter().all(|o| o.server_no_context_takeover) && !answer.server_no_context_takeover {
        return Err("server ignored server_no_context_takeover, which every offer required".into());
    }
    Ok(Some(Params {
        server_no_context_takeover: answer.server_no_context_takeover,
        client_no_context_takeover: answer.client_no_context_takeover,
        client_max_window_bits: client_bits,
    }))
}

fn window_bits(v: &str) -> Result<u8, String> {
    match v.parse::<u8>() {
        Ok(b @ 8..=15) if v.bytes().all(|c| c.is_ascii_digit()) => Ok(b),
        _ => Err(format!("window bits {v:?} not in 8..15")),
    }
}

/// Splits a comma-separated header list, leaving commas inside quoted strings alone.
fn split_list(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

/// `a; b=1; c="2"` -> [(a, None), (b, Some(1)), (c, Some(2))], names lower-cased.
fn split_params(params: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    for p in params.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                (n.trim(), Some(v.to_owned()))
            }
            None => (p, None),
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(format!("malformed parameter {p:?}"));
        }
        out.push((name.to_ascii_lowercase(), value));
    }
    Ok(out)
}

/// The trailer RFC 7692 strips from every compressed message.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// zlib level 1 uses static Huffman codes only, which grow incompressible data by up to 1/8;
/// level 3 is about as fast, adapts its codes and stores what does not compress.
const LEVEL: u32 = 3;

/// Compresses outgoing messages.
pub struct Deflater {
    /// None when the server limited our window to 8 bits, which zlib cannot produce for raw
    /// DEFLATE: then messages go out uncompressed, which RFC 7692 allows.
    c: Option<Compress>,
    reset_each: bool,
}

impl Deflater {
    pub fn new(params: &Params) -> Deflater {
        let c = (params.client_max_window_bits >= 9).then(|| {
            Compress::new_with_window_bits(
                Compression::new(LEVEL),
                false,
                params.client_max_window_bits,
            )
        });
        Deflater {
            c,
            reset_each: params.client_no_context_takeover,
        }
    }

    /// A whole message: `compress_piece(input, true)` (the unit tests' shorthand).
    #[cfg(test)]
    pub fn compress(&mut self, input: &[u8]) -> Option<Vec<u8>> {
        self.compress_piece(input, true)
    }

    /// Compresses one piece of a message sent in pieces (or a whole message when `fin`):
    /// every piece is sync-flushed, so the server can decompress what arrived, but only the
    /// final one loses the trailer and ends the message (RFC 7692 7.2.1).
    ///
    /// None: send it uncompressed, the same for every piece of a connection (when the window
    /// is unusable). Incompressible data is not sent uncompressed otherwise: at level 3 zlib
    /// falls back to stored blocks (+5 bytes per 64 KiB), and some peers (the Autobahn
    /// fuzzing server among them) mishandle uncompressed messages in a compressed session.
    pub fn compress_piece(&mut self, input: &[u8], fin: bool) -> Option<Vec<u8>> {
        let c = self.c.as_mut()?;
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        let start = c.total_in();
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(1024));
            }
            let done = (c.total_in() - start) as usize;
            // Sync-flushing raw DEFLATE into a Vec cannot fail.
            c.compress_vec(&input[done..], &mut out, FlushCompress::Sync)
                .ok()?;
            if (c.total_in() - start) as usize == input.len() && out.len() < out.capacity() {
                break;
            }
        }
        if !fin {
            return Some(out);
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if out.is_empty() {
            // Nothing was pending: send an empty stored block's header, as RFC 7692 7.2.3.6 does.
            out.push(0x00);
        }
        if self.reset_each {
            c.reset();
        }
        Some(out)
    }
}

/// Decompresses incoming messages frame by frame, never past the message size limit.
pub struct Inflater {
    d: Decompress,
    reset_each: bool,
    /// The server ended its DEFLATE stream (BFINAL): the next message starts a new one.
    ended: bool,
    /// The current message had compressed bytes (some peers send none for an empty message).
    fed: bool,
    /// Streaming (`fill`): bytes of the stripped trailer fed so far for the current message.
    tail_used: usize,
}

pub enum InflateError {
    TooBig,
    BadData(String),
}

impl Inflater {
    pub fn new(params: &Params) -> Inflater {
        // A 15-bit window decodes data made with any smaller one.
        Inflater {
            d: Decompress::new_with_window_bits(false, 15),
            reset_each: params.server_no_context_takeover,
            ended: false,
            fed: false,
            tail_used: 0,
        }
    }

    /// Appends the decompressed `input` to `out`, refusing to grow `out` past `max` bytes.
    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), InflateError> {
        self.fed |= !input.is_empty();
        let start = self.d.total_in();
        loop {
            let done = (self.d.total_in() - start) as usize;
            if done == input.len() && out.len() < out.capacity() {
                return Ok(());
            }
            if self.ended {
                return Err(InflateError::BadData(
                    "data after the end of the DEFLATE stream".into(),
                ));
            }
            if out.len() == out.capacity() {
                if out.len() > max {
                    return Err(InflateError::TooBig);
                }
                let room = (max + 1 - out.len()).min(out.capacity().max(4096));
                out.reserve_exact(room);
            }
            let status = self
                .d
                .decompress_vec(&input[done..], out, FlushDecompress::Sync)
                .map_err(|e| InflateError::BadData(format!("invalid compressed data: {e}")))?;
            if out.len() > max {
                return Err(InflateError::TooBig);
            }
            if status == Status::StreamEnd {
                self.ended = true;
            }
        }
    }

    /// Completes a message: feeds the stripped trailer and resets the context if agreed.
    pub fn finish(&mut self, out: &mut Vec<u8>, max: usize) -> Result<(), InflateError> {
        if !self.ended && self.fed {
            self.feed(&TAIL, out, max)?;
        }
        self.fed = false;
        if self.reset_each || self.ended {
            self.d.reset(false);
            self.ended = false;
        }
        Ok(())
    }
}

/// Streaming: decompression into bounded pieces, so that what one frame expands to never has
/// to be held at once.
impl Inflater {
    /// Decompresses `input` (then, if `fin`, the stripped trailer) into the spare capacity of
    /// `out`, never growing it. Returns the input bytes consumed and whether the frame is
    /// done: all input consumed and all output produced (and, with `fin`, the message ended).
    /// While not done, call again with the rest of the input and a fresh `out`.
    pub fn fill(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
    ) -> Result<(usize, bool), InflateError> {
        let used = self.fill_from(input, out)?;
        if out.len() == out.capacity() {
            return Ok((used, false));
        }
        if !fin {
            return Ok((used, true));
        }
        if !self.ended && self.fed {
            let tail = &TAIL[self.tail_used..];
            self.tail_used += self.fill_from(tail, out)?;
            if out.len() == out.capacity() {
                return Ok((used, false));
            }
        }
        self.fed = false;
        self.tail_used = 0;
        if self.reset_each || self.ended {
            self.d.reset(false);
            self.ended = false;
        }
        Ok((used, true))
    }

    /// Decompresses until `out` is full, or all of `input` is consumed and flushed.
    fn fill_from(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, InflateError> {
        self.fed |= !input.is_empty();
        let start = self.d.total_in();
        loop {
            let done = (self.d.total_in() - start) as usize;
            if self.ended && done < input.len() {
                return Err(InflateError::BadData(
                    "data after the end of the DEFLATE stream".into(),
                ));
            }
            let produced = out.len();
            let status = self
                .d
                .decompress_vec(&input[done..], out, FlushDecompress::Sync)
                .map_err(|e| InflateError::BadData(format!("invalid compressed data: {e}")))?;
            if status == Status::StreamEnd {
                self.ended = true;
            }
            let now = (self.d.total_in() - start) as usize;
            if out.len() == out.capacity() || now == input.len() {
                return Ok(now);
            }
            if now == done && out.len() == produced && !self.ended {
                return Err(InflateError::BadData(
                    "compressed data makes no progress".into(),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Streams `z` through `fill` in frames of `frame` bytes and pieces of `piece` bytes.
    fn fill_all(i: &mut Inflater, z: &[u8], frame: usize, piece: usize) -> Vec<u8> {
        let mut all = Vec::new();
        let frames: Vec<&[u8]> = if z.is_empty() {
            vec![&[]]
        } else {
            z.chunks(frame).collect()
        };
        for (n, f) in frames.iter().enumerate() {
            let fin = n + 1 == frames.len();
            let mut pos = 0;
            loop {
                let mut out = Vec::with_capacity(piece);
                let (used, done) = i.fill(&f[pos..], fin, &mut out).ok().unwrap();
                assert!(out.len() <= piece);
                pos += used;
                all.extend_from_slice(&out);
                if done {
                    assert_eq!(pos, f.len());
                    break;
                }
            }
        }
        all
    }

    #[test]
    fn fill_streams_in_bounded_pieces() {
        for reset in [false, true] {
            let p = params(15, reset);
            let (mut d, mut i) = (Deflater::new(&p), Inflater::new(&p));
            for (msg, frame, piece) in [
                (vec![7u8; 300_000], 100, 4096),
                (b"Hello".to_vec(), 1, 1),
                (Vec::new(), 10, 10),
                (
                    (0..200_000u32)
                        .map(|x| (x.wrapping_mul(x) >> 7) as u8)
                        .collect(),
                    5000,
                    777,
                ),
            ] {
                let z = d.compress(&msg).unwrap();
                assert_eq!(fill_all(&mut i, &z, frame, piece), msg);
            }
        }
    }

    #[test]
    fn pieces_compress_into_one_message() {
        let p = params(15, false);
        let (mut d, mut i) = (Deflater::new(&p), Inflater::new(&p));
        let mut z = d.compress_piece(b"Hello, ", false).unwrap();
        z.extend(d.compress_piece(b"", false).unwrap());
        z.extend(d.compress_piece(b"world", true).unwrap());
        let mut out = Vec::new();
        i.feed(&z, &mut out, 100).ok().unwrap();
        i.finish(&mut out, 100).ok().unwrap();
        assert_eq!(out, b"Hello, world");
    }

    fn params(client_bits: u8, reset: bool) -> Params {
        Params {
            server_no_context_takeover: reset,
            client_no_context_takeover: reset,
            client_max_window_bits: client_bits,
        }
    }

    #[test]
    fn roundtrip_with_and_without_context_takeover() {
        for reset in [false, true] {
            let p = params(15, reset);
            let (mut d, mut i) = (Deflater::new(&p), Inflater::new(&p));
            for msg in [
                &b"Hello"[..],
                b"",
                b"Hello Hello Hello Hello",
                &[7u8; 100_000],
            ] {
                let z = d.compress(msg).unwrap();
                let mut out = Vec::new();
                i.feed(&z, &mut out, 1 << 20).ok().unwrap();
                i.finish(&mut out, 1 << 20).ok().unwrap();
                assert_eq!(out, msg);
            }
        }
    }

    #[test]
    fn incompressible_data_barely_grows() {
        let p = params(15, false);
        let mut d = Deflater::new(&p);
        let mut x = 12345u32;
        let random: Vec<u8> = (0..1_000_000)
            .map(|_| {
                x = x.wrapping_mul(1103515245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        let z = d.compress(&random).unwrap();
        assert!(
            z.len() < random.len() + random.len() / 1000,
            "{} bytes",
            z.len()
        );
    }

    #[test]
    fn rfc7692_example_decodes() {
        // RFC 7692 7.2.3.1: "Hello" compressed.
        let mut i = Inflater::new(&params(15, false));
        let mut out = Vec::new();
        i.feed(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100)
            .ok()
            .unwrap();
        i.finish(&mut out, 100).ok().unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn bomb_is_refused_before_allocating() {
        let p = params(15, false);
        let z = Deflater::new(&p).compress(&vec![0u8; 10 << 20]).unwrap();
        let mut out = Vec::new();
        let r = Inflater::new(&p).feed(&z, &mut out, 1 << 20);
        assert!(matches!(r, Err(InflateError::TooBig)));
        assert!(out.capacity() <= (1 << 20) + 1 + 4096 * 2);
    }

    #[test]
    fn negotiation() {
        let offers = [Offer::browser()];
        let p = accept_response(&["permessage-deflate; client_max_window_bits=10"], &offers)
            .unwrap()
            .unwrap();
        assert_eq!(p.client_max_window_bits, 10);
        assert_eq!(accept_response(&[], &offers).unwrap(), None);
        assert!(accept_response(&["permessage-deflate; foo"], &offers).is_err());
        assert!(accept_response(&["x-webkit-deflate-frame"], &offers).is_err());
        assert!(accept_response(&["permessage-deflate, permessage-deflate"], &offers).is_err());
        assert!(
            accept_response(&["permessage-deflate; server_max_window_bits=7"], &offers).is_err()
        );
        assert!(accept_response(&["permessage-deflate"], &[]).is_err());
        assert!(accept_response(
            &["permessage-deflate; client_max_window_bits=9"],
            &[Offer::default()]
        )
        .is_err());
        assert_eq!(offer_header(&[Offer::browser(), Offer::parse("client_no_context_takeover").unwrap()]),
            "permessage-deflate; client_max_window_bits, permessage-deflate; client_no_context_takeover");
    }
}
