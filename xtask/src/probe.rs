//! A bounded load probe (on loopback, or a test machine's address) for the deploy benchmark: GETs a few paths in turn, about
//! 20 per second, until stopped (or 10 minutes), counting failures and the longest gap between
//! two good answers. With a marker path (a static file each release's nginx serves, naming the
//! release), every other request asks it, and the probe records when the answering release changed.

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
    /// When the marker's answer changed, and to what (the first answer included).
    pub releases: Vec<(Instant, String)>,
}

impl Load {
    /// The first moment at or after `since` when `release` answered the marker.
    pub fn first_served(&self, release: &str, since: Instant) -> Option<Duration> {
        let mut serving = None;
        for (at, name) in &self.releases {
            if *at <= since {
                serving = Some(name.as_str());
                continue;
            }
            if serving == Some(release) {
                return Some(Duration::ZERO);
            }
            if name == release {
                return Some(at.duration_since(since));
            }
            serving = Some(name);
        }
        (serving == Some(release)).then_some(Duration::ZERO)
    }
}

const PERIOD: Duration = Duration::from_millis(50);
const LIMIT: Duration = Duration::from_secs(600);

impl Probe {
    /// A probe of loopback `port`; with `marker`, every other request GETs it (see the module doc).
    pub fn start(port: u16, paths: Vec<String>, marker: Option<String>) -> Probe {
        Probe::start_at(std::net::Ipv4Addr::LOCALHOST.into(), port, paths, marker)
    }

    /// The same probe on `addr:port` (a test machine's edge).
    pub fn start_at(
        addr: std::net::IpAddr,
        port: u16,
        paths: Vec<String>,
        marker: Option<String>,
    ) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let (start, mut last_ok, mut load) = (Instant::now(), Instant::now(), Load::default());
            while !flag.load(Ordering::SeqCst) && start.elapsed() < LIMIT {
                let sent = Instant::now();
                let path = match &marker {
                    Some(marker) if load.requests % 2 == 0 => marker,
                    Some(_) => &paths[(load.requests / 2) % paths.len()],
                    None => &paths[load.requests % paths.len()],
                };
                let is_marker = Some(path) == marker.as_ref();
                load.requests += 1;
                match http::get_at(addr, port, path) {
                    Ok(response) if response.status == 200 => {
                        load.longest_gap = load.longest_gap.max(last_ok.elapsed());
                        last_ok = Instant::now();
                        let name = response.body.trim();
                        let changed = load.releases.last().map(|(_, r)| r.as_str()) != Some(name);
                        if is_marker && changed {
                            // When the answer arrived: never earlier than the release served it.
                            load.releases.push((Instant::now(), name.to_string()));
                        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_answer_of_a_release_after_a_moment() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let load = Load {
            releases: vec![
                (at(0), "a".into()),
                (at(1500), "b".into()),
                (at(4000), "a".into()),
            ],
            ..Load::default()
        };
        assert_eq!(
            load.first_served("b", at(1000)),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            load.first_served("a", at(1000)),
            Some(Duration::ZERO),
            "already serving"
        );
        assert_eq!(
            load.first_served("a", at(2000)),
            Some(Duration::from_millis(2000))
        );
        assert_eq!(load.first_served("x", at(1000)), None);
        assert_eq!(load.first_served("b", at(5000)), None, "no longer serving");
    }
}
