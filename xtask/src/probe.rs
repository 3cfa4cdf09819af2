//! A bounded load probe (on loopback, or a test machine's address) for the deploy benchmark: GETs a few paths in turn, about
//! 20 per second, until stopped (or 10 minutes), counting failures and the longest gap between
//! two good answers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::http;

pub struct Probe {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Load>,
}

/// What the probe saw.
#[derive(Clone, Debug, Default)]
pub struct Load {
    pub requests: usize,
    pub failed: usize,
    pub longest_gap: Duration,
}

const PERIOD: Duration = Duration::from_millis(50);
const LIMIT: Duration = Duration::from_secs(600);

impl Probe {
    pub fn start(port: u16, paths: Vec<String>) -> Probe {
        Probe::start_at(std::net::Ipv4Addr::LOCALHOST.into(), port, paths)
    }

    /// The same probe on `addr:port` (a test machine's edge).
    pub fn start_at(addr: std::net::IpAddr, port: u16, paths: Vec<String>) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let (start, mut last_ok, mut load) = (Instant::now(), Instant::now(), Load::default());
            while !flag.load(Ordering::SeqCst) && start.elapsed() < LIMIT {
                let sent = Instant::now();
                let path = &paths[load.requests % paths.len()];
                load.requests += 1;
                match http::get_at(addr, port, path) {
                    Ok(response) if response.status == 200 => {
                        load.longest_gap = load.longest_gap.max(last_ok.elapsed());
                        last_ok = Instant::now();
                    }
                    _ => load.failed += 1,
                }
                std::thread::sleep(PERIOD.saturating_sub(sent.elapsed()));
            }
            load.longest_gap = load.longest_gap.max(last_ok.elapsed());
            load
        });
        Probe { stop, handle }
    }

    pub fn stop(self) -> Load {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap_or_default()
    }
}
