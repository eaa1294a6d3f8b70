#!/usr/bin/env node
// Interop echo server on Node's `ws` package.
//
//   NODE_PATH=<dir>/node_modules node server_node.js [--compression deflate|none] [--port 0]
//
// Prints the port it listens on as its first stdout line, then serves until killed.
//
// Paths (anything else is a plain echo):
//   /fragmented  sends a text message in fragments "hel", "lo ", "world"; a binary message in
//                2 fragments (01 02 03 | 04 05 06 07); a text message "h\u00e9llo \u20ac" whose
//                fragments split its UTF-8 characters; then echoes.
//   /close/CODE  closes with CODE and reason "bye".
//   /ping        sends a ping "hi", waits (5 s) for a pong carrying "hi", then sends the text
//                "pong ok" (or "pong timeout" / "pong mismatch: ..."), then echoes.
//   /extensions  sends one text message with this connection's negotiated
//                Sec-WebSocket-Extensions response header ("" if none), then echoes.
//   /random/N    sends N random bytes as one binary message, then the text
//                "len=N crc32=XXXXXXXX" (CRC-32 of those bytes, 8 lower-case hex digits), then
//                echoes.
//   /record/TAG  echoes, and remembers how many messages it received and the last one (for a
//                client that closes right after sending: was the message received before the
//                close?).
//   /recorded/TAG  sends the text "count=N last=MESSAGE" about /record/TAG ("count=0 last="
//                if none), then echoes.
// Echo: every text message comes back as text, every binary as binary, unchanged.
'use strict';

const crypto = require('crypto');
const { WebSocketServer } = require('ws');

const MAX_PAYLOAD = 16 * 1024 * 1024 + 1024 * 1024; // 16 MiB + margin

// /record/TAG -> { count, last }
const records = new Map();

// CRC-32 (IEEE), as zlib.crc32 computes it (not every Node version has zlib.crc32).
const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

function crc32(buf) {
  let c = -1;
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

function log(...args) {
  console.error('server_node:', ...args);
}

function parseArgs(argv) {
  const opts = { compression: 'deflate', host: '127.0.0.1', port: 0 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--compression') opts.compression = argv[++i];
    else if (a === '--host') opts.host = argv[++i];
    else if (a === '--port') opts.port = Number(argv[++i]);
    else throw new Error(`unknown argument ${a}`);
  }
  if (opts.compression !== 'deflate' && opts.compression !== 'none') {
    throw new Error(`--compression must be deflate or none, not ${opts.compression}`);
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

const wss = new WebSocketServer({
  host: opts.host,
  port: opts.port,
  perMessageDeflate: opts.compression === 'deflate',
  maxPayload: MAX_PAYLOAD,
});

// The response headers of each handshake, to report the negotiated extensions exactly as sent.
wss.on('headers', (headers, req) => {
  const line = headers.find((h) => /^sec-websocket-extensions:/i.test(h));
  req.negotiatedExtensions = line ? line.slice(line.indexOf(':') + 1).trim() : '';
});

function echo(ws) {
  ws.on('message', (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
}

wss.on('connection', (ws, req) => {
  const path = req.url;
  ws.on('error', (err) => log(`${path}: ${err.message}`));
  ws.on('close', (code) => {
    if (code === 1006) log(`${path}: connection closed abnormally`);
  });

  if (path === '/fragmented') {
    ws.send('hel', { binary: false, fin: false });
    ws.send('lo ', { binary: false, fin: false });
    ws.send('world', { binary: false, fin: true });
    ws.send(Buffer.from([1, 2, 3]), { binary: true, fin: false });
    ws.send(Buffer.from([4, 5, 6, 7]), { binary: true, fin: true });
    // "h\u00e9llo \u20ac" = 68 c3 a9 6c 6c 6f 20 e2 82 ac, split inside both characters.
    ws.send(Buffer.from([0x68, 0xc3]), { binary: false, fin: false });
    ws.send(Buffer.from([0xa9, 0x6c, 0x6c, 0x6f, 0x20, 0xe2]), { binary: false, fin: false });
    ws.send(Buffer.from([0x82, 0xac]), { binary: false, fin: true });
    echo(ws);
  } else if (path.startsWith('/close/')) {
    ws.close(Number(path.slice('/close/'.length)), 'bye');
  } else if (path === '/ping') {
    const timer = setTimeout(() => {
      log('no pong for the ping on /ping');
      ws.send('pong timeout');
    }, 5000);
    ws.once('pong', (data) => {
      clearTimeout(timer);
      if (data.toString('latin1') === 'hi') ws.send('pong ok');
      else ws.send(`pong mismatch: ${data.toString('hex')}`);
    });
    ws.ping('hi');
    echo(ws);
  } else if (path === '/extensions') {
    ws.send(req.negotiatedExtensions || '');
    echo(ws);
  } else if (path.startsWith('/random/')) {
    const data = crypto.randomBytes(Number(path.slice('/random/'.length)));
    ws.send(data, { binary: true });
    ws.send(`len=${data.length} crc32=${crc32(data).toString(16).padStart(8, '0')}`);
    echo(ws);
  } else if (path.startsWith('/record/')) {
    const tag = path.slice('/record/'.length);
    records.set(tag, { count: 0, last: '' });
    ws.on('message', (data, isBinary) => {
      const r = records.get(tag);
      r.count++;
      r.last = data.toString(isBinary ? 'latin1' : 'utf8');
      ws.send(data, { binary: isBinary });
    });
  } else if (path.startsWith('/recorded/')) {
    const r = records.get(path.slice('/recorded/'.length)) || { count: 0, last: '' };
    ws.send(`count=${r.count} last=${r.last}`);
    echo(ws);
  } else {
    echo(ws);
  }
});

wss.on('listening', () => {
  process.stdout.write(`${wss.address().port}\n`);
});

wss.on('error', (err) => {
  log(err.message);
  process.exit(1);
});

process.on('SIGTERM', () => process.exit(0));
