//! Concurrency stress (issue 6): 32 threads sending while another thread closes the client
//! and then frees it, over several rounds in both event modes. Every send the library
//! accepted must be accounted for: echoed back by the server, or returned as SEND_FAILED.
//! Also run under ThreadSanitizer by tests/tsan.sh.

mod common;

use common::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SENDERS: usize = 32;
/// Per thread and round; the close comes after about a third of them were accepted.
const PER_THREAD: usize = 300;

fn tag(thread: usize, seq: usize) -> Vec<u8> {
    let mut m = ((thread as u64) << 32 | seq as u64).to_be_bytes().to_vec();
    m.extend_from_slice(&[thread as u8; 24]);
    m
}

fn round(server: &WsServer, callback: bool) {
    let c = TestClient::start(&server.url(), None, callback);
    // Accepted sends: id -> payload.
    let accepted: Mutex<HashMap<u64, Vec<u8>>> = Mutex::new(HashMap::new());
    let count = AtomicUsize::new(0);
    let senders_done = AtomicUsize::new(0);
    let closed = AtomicBool::new(false);
    let events: Mutex<Vec<OwnedEvent>> = Mutex::new(Vec::new());
    let threshold = SENDERS * PER_THREAD / 3;
    let client = &c;
    std::thread::scope(|s| {
        for t in 0..SENDERS {
            let (c, accepted, count, senders_done) = (client, &accepted, &count, &senders_done);
            s.spawn(move || {
                for seq in 0..PER_THREAD {
                    let m = tag(t, seq);
                    let ty = if seq % 2 == 0 {
                        WSC_EVENT_BINARY
                    } else {
                        WSC_EVENT_TEXT
                    };
                    // Text payloads must be UTF-8: send the tag hex-encoded.
                    let m = if ty == WSC_EVENT_TEXT {
                        m.iter()
                            .map(|b| format!("{b:02x}"))
                            .collect::<String>()
                            .into_bytes()
                    } else {
                        m
                    };
                    let (st, id) = c.send(ty, &m);
                    match st {
                        WSC_OK => {
                            accepted.lock().unwrap().insert(id, m);
                            count.fetch_add(1, SeqCst);
                        }
                        WSC_ERR_NOT_CONNECTED => break, // closing or closed
                        WSC_ERR_QUEUE_FULL => std::thread::yield_now(),
                        other => panic!("send: {}", status_name(other)),
                    }
                    let _ = c.state();
                    let _ = c.buffered();
                }
                senders_done.fetch_add(1, SeqCst);
            });
        }
        // The closer: closes once enough was accepted (or the senders finished).
        let (c, count, senders_done, closed) = (client, &count, &senders_done, &closed);
        s.spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while count.load(SeqCst) < threshold
                && senders_done.load(SeqCst) < SENDERS
                && Instant::now() < deadline
            {
                std::thread::yield_now();
            }
            let st = c.close(1000, Some("stress"));
            assert!(
                st == WSC_OK || st == WSC_ERR_NOT_CONNECTED,
                "close: {}",
                status_name(st)
            );
            closed.store(true, SeqCst);
        });
        // The event reader: takes everything up to the final CLOSE.
        let (c, events) = (client, &events);
        s.spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let ev = c
                    .next_event(left)
                    .expect("no CLOSE within 90 s of a stress round");
                let done = ev.ty == WSC_EVENT_CLOSE;
                events.lock().unwrap().push(ev);
                if done {
                    break;
                }
            }
        });
    });
    assert!(closed.load(SeqCst));
    let events = events.into_inner().unwrap();
    let mut accepted = accepted.into_inner().unwrap();
    let close = final_close(&events);
    // The close may land while the client is still connecting: then the attempt is
    // abandoned (1006, LOCAL | ABNORMAL, status OK) and every accepted send comes back.
    let before_open = close.close_code == 1006;
    if before_open {
        assert_eq!(
            (close.flags, close.status),
            (WSC_CLOSE_LOCAL | WSC_CLOSE_ABNORMAL, WSC_OK),
            "{close:?}"
        );
    } else {
        assert_eq!(
            (close.close_code, close.status),
            (1000, WSC_OK),
            "a clean close: {:?}",
            of_type(&events, WSC_EVENT_ERROR)
        );
    }
    // Echoes come back by payload (each is unique); SEND_FAILED by id.
    let by_payload: HashMap<Vec<u8>, u64> =
        accepted.iter().map(|(id, m)| (m.clone(), *id)).collect();
    let total = accepted.len();
    let (mut echoed, mut failed) = (0, 0);
    for ev in &events {
        match ev.ty {
            WSC_EVENT_TEXT | WSC_EVENT_BINARY => {
                let id = by_payload
                    .get(&ev.data)
                    .unwrap_or_else(|| panic!("an echo of something never accepted: {ev:?}"));
                assert!(accepted.remove(id).is_some(), "echoed twice: {ev:?}");
                echoed += 1;
            }
            WSC_EVENT_SEND_FAILED => {
                let m = accepted
                    .remove(&ev.id)
                    .unwrap_or_else(|| panic!("SEND_FAILED for an unknown id: {ev:?}"));
                assert_eq!(m, ev.data, "SEND_FAILED carries the payload");
                failed += 1;
            }
            _ => {}
        }
    }
    assert!(
        accepted.is_empty(),
        "{} of {total} accepted sends neither echoed nor failed (echoed {echoed}, failed {failed})",
        accepted.len()
    );
    assert!(total > 0, "no send accepted");
    if before_open {
        assert_eq!(
            echoed, 0,
            "nothing is echoed by a connection that never opened"
        );
    }
    // The closer's job ends with free; nothing runs after it.
    let d = c.free();
    assert!(d < Duration::from_secs(5), "free took {d:?}");
}

fn logging_echo(mut ws: ServerWs, log: &ServerLog) {
    let t0 = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        match ws.read() {
            Ok(m) => {
                note(log, &m);
                if m.is_text() || m.is_binary() {
                    if let Err(e) = ws.send(m) {
                        log.update(|d| d.notes.push(format!("send: {e}")));
                        break;
                    }
                }
            }
            Err(e) => {
                log.update(|d| {
                    d.notes
                        .push(format!("read: {e} after {:?}, {n} messages", t0.elapsed()))
                });
                break;
            }
        }
    }
}

#[test]
fn thirty_two_senders_while_another_thread_closes_then_frees() {
    let server = WsServer::start(ServerOptions::default(), logging_echo);
    for r in 0..6 {
        round(&server, r % 2 == 1);
    }
}

#[test]
fn thirty_two_senders_racing_a_free_from_inside_the_callback() {
    // Senders are joined before free (free must not race other calls, as documented); the
    // worker's own callback frees nothing here but sends on every echo while the close and
    // free happen, so callbacks, senders and free all meet on the worker.
    let server = WsServer::echo();
    let c = TestClient::start(&server.url(), None, true);
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        for t in 0..SENDERS {
            let (c, stop) = (&c, &stop);
            s.spawn(move || {
                let mut seq = 0;
                while !stop.load(SeqCst) && seq < PER_THREAD {
                    let st = c.send_binary(&tag(t, seq));
                    if st == WSC_ERR_NOT_CONNECTED {
                        break;
                    }
                    seq += 1;
                }
            });
        }
        std::thread::sleep(Duration::from_millis(50));
        let _ = c.close(1001, None);
        stop.store(true, SeqCst);
    });
    let d = c.free();
    assert!(d < Duration::from_secs(5), "free took {d:?}");
}
