//! An open-loop load generator: requests are scheduled at a fixed rate and
//! each one's latency is measured from when it was due, so a stalled
//! server shows in the percentiles instead of slowing the generator down
//! (no coordinated omission). Prints the rate achieved and p50, p99 and
//! p99.9.
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
    let start = Instant::now() + Duration::from_millis(100);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (next, addr, uri, body, headers) = (
            next.clone(),
            addr.clone(),
            uri.clone(),
            body.clone(),
            headers.clone(),
        );
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
            let mut errors = 0u64;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return (latencies, errors);
                }
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
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
                        return (latencies, errors);
                    }
                }
            }
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("a connection task");
        all.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "rate {:.0}/s asked, {:.0}/s done, {} errors; latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        rate,
        all.len() as f64 / elapsed,
        errors,
        pct(0.50),
        pct(0.99),
        pct(0.999),
        all.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    );
}
