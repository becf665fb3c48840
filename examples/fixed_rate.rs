//! An open-loop load generator: requests are scheduled at a fixed rate and
//! each one's latency is measured from when it was due, so a stalled
//! server shows in the percentiles instead of slowing the generator down
//! (no coordinated omission). Prints the rate achieved and p50, p99 and
//! p99.9, and how late the generator itself sent (its floor).
//!
//! The schedule is kept by an OS thread sleeping with the kernel's
//! high-resolution timers (the runtime's timer ticks in milliseconds, which
//! would add up to a millisecond to every latency); it hands each due
//! request to the connections in turn.
//!
//!   cargo run --release --example fixed_rate -- URL RATE SECONDS [BODY] [HEADER: VALUE]…
//!
//! POST with BODY when given (`-` for none, GET), over 64 keep-alive
//! connections.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

const CONNECTIONS: usize = 64;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, rate, seconds, rest @ ..] = args.as_slice() else {
        eprintln!("usage: fixed_rate URL RATE SECONDS [BODY] [HEADER: VALUE]…");
        std::process::exit(2);
    };
    let uri: hyper::Uri = url.parse().expect("a URL");
    let addr = format!(
        "{}:{}",
        uri.host().expect("a host"),
        uri.port_u16().unwrap_or(80)
    );
    let rate: f64 = rate.parse().expect("a rate");
    let total = (rate * seconds.parse::<f64>().expect("seconds")) as u64;
    let body = rest.first().filter(|b| b.as_str() != "-").cloned();
    let headers: Vec<(String, String)> = rest
        .iter()
        .skip(1)
        .filter_map(|h| h.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let start = Instant::now() + Duration::from_millis(200);
    let mut queues = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (tx, mut due_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        queues.push(tx);
        let (addr, uri, body, headers) = (addr.clone(), uri.clone(), body.clone(), headers.clone());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            stream.set_nodelay(true).ok();
            let (mut sender, conn) = http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            let mut latencies = Vec::new();
            let mut late = Vec::new();
            let mut errors = 0u64;
            while let Some(due) = due_rx.recv().await {
                late.push(due.elapsed());
                let mut req = hyper::Request::builder()
                    .method(if body.is_some() { "POST" } else { "GET" })
                    .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
                    .header("host", &addr)
                    .header("content-type", "application/json");
                for (k, v) in &headers {
                    req = req.header(k.as_str(), v.as_str());
                }
                let req = req
                    .body(Full::new(Bytes::from(body.clone().unwrap_or_default())))
                    .expect("a request");
                match sender.send_request(req).await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        let _ = resp.into_body().collect().await;
                        if !ok {
                            errors += 1;
                        }
                        latencies.push(due.elapsed());
                    }
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            (latencies, late, errors)
        }));
    }
    // The schedule: request i is due at start + i / rate.
    let pacer = std::thread::spawn(move || {
        for i in 0..total {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if queues[i as usize % CONNECTIONS].send(due).is_err() {
                break;
            }
        }
    });
    pacer.join().expect("the pacer");
    let mut all = Vec::new();
    let mut late = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, s, e) = t.await.expect("a connection task");
        all.extend(l);
        late.extend(s);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort_unstable();
        v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "rate {:.0}/s asked, {:.0}/s done, {} errors; latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms (the generator's own lateness: p50 {:.2} ms, p99 {:.2} ms)",
        rate,
        all.len() as f64 / elapsed,
        errors,
        pct(&mut all, 0.50),
        pct(&mut all, 0.99),
        pct(&mut all, 0.999),
        all.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        pct(&mut late, 0.50),
        pct(&mut late, 0.99),
    );
}
