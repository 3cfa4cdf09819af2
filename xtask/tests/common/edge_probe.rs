//! A load probe on one machine's edge, ~20 requests/s from a thread, until stopped: what the
//! fleet, swarm and fast-switch tests count failed requests with.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::http_request_why;

/// A probe never outlives a test that forgot it.
const LIMIT: Duration = Duration::from_secs(400);

/// How long a request may take before it counts as failed (to connect, and for each read).
/// Longer than the proxies' own limits (nginx gives up on an upstream after 60 s and answers
/// 504), so a hang in the stack ends as the stack's own answer, naming the hop, and a request
/// that is only slow is slow, not failed (CI, three e2e files on 2 cores: one run saw four
/// requests in a row get no answer within 10 s). The tests assert on failures; `slowest` and
/// `longest_gap` report the waits.
pub const PATIENCE: Duration = Duration::from_secs(75);

pub struct EdgeProbe {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<EdgeLoad>,
}

#[derive(Debug, Default)]
pub struct EdgeLoad {
    pub requests: usize,
    pub failed: usize,
    /// `PATH at SECONDSs (took Ns): STATUS or why there was no answer` of each failure.
    pub failures: Vec<String>,
    /// The longest time between two answered requests.
    pub longest_gap: Duration,
    /// The longest a request took, answered or not.
    pub slowest: Duration,
    /// The hashed stylesheets the pages named: which releases answered.
    pub seen: BTreeSet<String>,
}

impl EdgeProbe {
    /// `/` and `/health` in turn on `addr:port`.
    pub fn start(addr: String, port: u16) -> EdgeProbe {
        EdgeProbe::start_with(addr, port, &["/", "/health"], PATIENCE)
    }

    /// Each of `paths` in turn; a request unanswered within `patience` fails.
    pub fn start_with(addr: String, port: u16, paths: &[&str], patience: Duration) -> EdgeProbe {
        let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let (start, mut load) = (Instant::now(), EdgeLoad::default());
            let mut last_ok = Instant::now();
            while !flag.load(Ordering::SeqCst) && start.elapsed() < LIMIT {
                let path = paths[load.requests % paths.len()].as_str();
                load.requests += 1;
                let Ok(ip) = addr.parse::<std::net::IpAddr>() else {
                    panic!("probe address {addr:?} is no IP address");
                };
                let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
                let sent = Instant::now();
                let answer = http_request_why(ip, port, &request, patience);
                load.slowest = load.slowest.max(sent.elapsed());
                match answer {
                    Ok((200, body)) => {
                        load.longest_gap = load.longest_gap.max(last_ok.elapsed());
                        last_ok = Instant::now();
                        if path == "/" {
                            load.seen.extend(hashed_css(&body));
                        }
                    }
                    other => {
                        load.failed += 1;
                        load.failures.push(format!(
                            "{path} at {:.1}s (took {:.1?}): {} [{}]",
                            sent.duration_since(start).as_secs_f64(),
                            sent.elapsed(),
                            match other {
                                Ok((status, _)) => format!("HTTP {status}"),
                                Err(why) => format!("no answer within {patience:?} ({why})"),
                            },
                            super::machine_load()
                        ));
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            load
        });
        EdgeProbe { stop, handle }
    }

    pub fn stop(self) -> EdgeLoad {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap()
    }
}

/// Stops every probe at once, then collects their counts.
pub fn stop_all(probes: Vec<EdgeProbe>) -> Vec<EdgeLoad> {
    for p in &probes {
        p.stop.store(true, Ordering::SeqCst);
    }
    probes
        .into_iter()
        .map(|p| p.handle.join().unwrap())
        .collect()
}

/// The hashed stylesheet a page names (`/build/app-HASH.css`).
pub fn hashed_css(page: &str) -> Option<String> {
    let start = page.find("\"/build/")? + 1;
    let end = start + page[start..].find('"')?;
    Some(page[start..end].to_string())
}
