#!/usr/bin/env python3
"""Interop echo server on Python's `websockets` (asyncio implementation).

    server_python.py [--compression deflate|none] [--host 127.0.0.1] [--port 0]

Prints the port it listens on as its first stdout line, then serves until killed.

Paths (anything else is a plain echo):
  /fragmented  sends a text message in fragments "hel", "lo ", "world"; a binary message in
               2 fragments (01 02 03 | 04 05 06 07); a text message "h\u00e9llo \u20ac" whose
               fragments split its UTF-8 characters; then echoes.
  /close/CODE  closes with CODE and reason "bye".
  /ping        sends a ping "hi", waits (5 s) for its pong, then sends the text "pong ok"
               (or "pong timeout"), then echoes.
  /extensions  sends one text message with this connection's negotiated
               Sec-WebSocket-Extensions response header ("" if none), then echoes.
  /random/N    sends N random bytes as one binary message, then the text
               "len=N crc32=XXXXXXXX" (CRC-32 of those bytes, 8 lower-case hex digits), then
               echoes.
  /record/TAG  echoes, and remembers how many messages it received and the last one (for a
               client that closes right after sending: was the message received before the
               close?).
  /recorded/TAG  sends the text "count=N last=MESSAGE" about /record/TAG ("count=0 last="
               if none), then echoes.
Echo: every text message comes back as text, every binary as binary, unchanged.
"""

import argparse
import asyncio
import os
import sys
import zlib

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

MAX_SIZE = 16 * 1024 * 1024 + 1024 * 1024  # 16 MiB + margin


# /record/TAG -> (messages received, the last one)
records = {}


def log(*args):
    print("server_python:", *args, file=sys.stderr, flush=True)


async def echo(ws):
    async for message in ws:
        # str for text frames, bytes for binary frames: send() keeps the type.
        await ws.send(message)


async def handler(ws):
    path = ws.request.path
    try:
        if path == "/fragmented":
            await ws.send(["hel", "lo ", "world"])
            await ws.send([b"\x01\x02\x03", b"\x04\x05\x06\x07"])
            # "h\u00e9llo \u20ac" = 68 c3 a9 6c 6c 6f 20 e2 82 ac, split inside both characters.
            await ws.send([b"h\xc3", b"\xa9llo \xe2", b"\x82\xac"], text=True)
            await echo(ws)
        elif path.startswith("/close/"):
            code = int(path[len("/close/"):])
            await ws.close(code, "bye")
        elif path == "/ping":
            waiter = await ws.ping(b"hi")
            try:
                await asyncio.wait_for(waiter, timeout=5)
                await ws.send("pong ok")
            except asyncio.TimeoutError:
                log("no pong for the ping on /ping")
                await ws.send("pong timeout")
            await echo(ws)
        elif path == "/extensions":
            value = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
            await ws.send(value)
            await echo(ws)
        elif path.startswith("/random/"):
            data = os.urandom(int(path[len("/random/"):]))
            await ws.send(data)
            await ws.send(f"len={len(data)} crc32={zlib.crc32(data):08x}")
            await echo(ws)
        elif path.startswith("/record/"):
            tag = path[len("/record/"):]
            records[tag] = (0, "")
            async for message in ws:
                text = message if isinstance(message, str) else message.decode("latin-1")
                records[tag] = (records[tag][0] + 1, text)
                await ws.send(message)
        elif path.startswith("/recorded/"):
            count, last = records.get(path[len("/recorded/"):], (0, ""))
            await ws.send(f"count={count} last={last}")
            await echo(ws)
        else:
            await echo(ws)
    except ConnectionClosed as exc:
        # A client that closes in the middle of an exchange is not a server failure, but an
        # abnormal end is worth seeing in the log.
        if exc.rcvd is None:
            log(f"{path}: connection closed abnormally: {exc}")
    except Exception as exc:  # e.g. a send racing with a connection the client tore down
        log(f"{path}: {type(exc).__name__}: {exc}")


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--compression", choices=["deflate", "none"], default="deflate")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    async with serve(
        handler,
        args.host,
        args.port,
        compression="deflate" if args.compression == "deflate" else None,
        max_size=MAX_SIZE,
        ping_interval=None,  # no keepalive pings: the client sees only the pings a test asks for
        close_timeout=5,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        await asyncio.get_running_loop().create_future()  # serve until killed


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
