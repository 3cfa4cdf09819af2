//! A load probe on one machine's edge, ~20 requests/s from a thread, until stopped: what the
//! fleet, swarm and fast-switch tests count failed requests with.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::http_get_at_within;

/// A probe never outlives a test that forgot it.
const LIMIT: Duration = Duration::from_secs(400);

/// A request not answered within this counts as failed (to connect, and for each read).
pub const PATIENCE: Duration = Duration::from_secs(2);

pub struct EdgeProbe {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<EdgeLoad>,
}

#[derive(Debug, Default)]
pub struct EdgeLoad {
    pub requests: usize,
    pub failed: usize,
    /// `PATH at SECONDSs: STATUS` of each failure (`None`: no answer within its patience).
    pub failures: Vec<String>,
    /// The longest time between two answered requests.
    pub longest_gap: Duration,
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
                match http_get_at_within(&addr, port, path, patience) {
                    Some((200, body)) => {
                        load.longest_gap = load.longest_gap.max(last_ok.elapsed());
                        last_ok = Instant::now();
                        if path == "/" {
                            load.seen.extend(hashed_css(&body));
                        }
                    }
                    other => {
                        load.failed += 1;
                        load.failures.push(format!(
                            "{path} at {:.1}s: {:?}",
                            start.elapsed().as_secs_f64(),
                            other.map(|(s, _)| s)
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
