//! Traffic canaries through the edge (`deploy --tag T --canary 10%`): the next release runs
//! beside the live one and the edge sends it that share of the requests, chosen per request
//! (nginx `split_clients` on `$request_id`). Two files in the edge's conf volume do it, included
//! by edge.conf from crm-gdb_edge 0.4.0 on:
//!
//!   split.conf    (http level) the split and a log format: the upstream chosen and the status
//!   canary.conf   (server level) the split replaces the live upstream; each answer is logged to
//!                 [`LOG`] and names its upstream in the [`HEADER`] response header
//!
//! During `--canary-wait` the log is read (only its new bytes each time) and the two sides'
//! 5xx rates are compared; a line shows the split and the counts every few seconds. The
//! canary is promoted when it is no worse than the live release ([`judge`]), withdrawn
//! otherwise. Any switch of the edge (promotion, putting the live release back, a reconcile)
//! removes both files, so a canary never outlives the deploy that decides it.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::cmd::Cmd;
use crate::config::{CANARY_MARGIN_POINTS, CANARY_MIN_REQUESTS};
use crate::deploy::deployment::Deployment;
use crate::deploy::stack::{check_and_reload, write_in_edge};

pub const SPLIT_CONF: &str = "/etc/nginx/crm-edge/split.conf";
pub const CANARY_CONF: &str = "/etc/nginx/crm-edge/canary.conf";
/// Inside the edge container (not a volume): a new canary starts it afresh.
pub const LOG: &str = "/var/log/nginx/crm-canary.log";
/// The response header naming the upstream (`crm-green:80`) that answered, during a canary.
pub const HEADER: &str = "X-Crm-Upstream";
/// The line of edge.conf (crm-gdb_edge 0.4.0 on) that includes [`CANARY_CONF`].
const INCLUDE: &str = "include /etc/nginx/crm-edge/canary*.conf;";
const EDGE_CONF: &str = "/etc/nginx/conf.d/default.conf";
/// How often the log is read, and how often the comparison line is printed.
const POLL: Duration = Duration::from_secs(1);
const SHOW_EVERY: Duration = Duration::from_secs(5);

/// The share of requests a canary gets: 1 to 99 percent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share(u8);

impl Share {
    /// `10%` or `10`.
    pub fn parse(text: &str) -> Result<Share> {
        let digits = text.trim().strip_suffix('%').unwrap_or(text.trim());
        match digits.parse::<u8>() {
            Ok(n) if (1..=99).contains(&n) => Ok(Share(n)),
            _ => bail!("invalid canary share {text:?}: a percentage from 1% to 99%, e.g. 10%"),
        }
    }
}

impl std::fmt::Display for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}%", self.0)
    }
}

/// The http-level half: which upstream each request goes to, and the log format.
pub fn split_conf(share: Share, canary_project: &str, live_project: &str) -> String {
    format!(
        "# Canary: written by `cargo xtask deploy --canary`, removed by any switch of the edge.\n\
         split_clients \"${{request_id}}\" $crm_split {{\n\
         \x20   {share} \"{canary_project}:80\";\n\
         \x20   * \"{live_project}:80\";\n\
         }}\n\
         log_format crm_canary '$crm_split $status';\n"
    )
}

/// The server-level half: the split replaces the live upstream; answers are logged and tagged.
pub fn canary_conf() -> String {
    format!(
        "# Canary: the split of split.conf replaces the live upstream (live.conf) for every request.\n\
         set $crm_live $crm_split;\n\
         add_header {HEADER} $crm_split always;\n\
         access_log /var/log/nginx/access.log;\n\
         access_log {LOG} crm_canary;\n"
    )
}

/// A fresh log, the split, then the server half (it needs the split), the check, the reload.
pub fn start_commands(
    edge: &str,
    share: Share,
    canary_project: &str,
    live_project: &str,
) -> Vec<Cmd> {
    let mut cmds = vec![Cmd::new("docker").args(["exec", edge, "rm", "-f", LOG])];
    cmds.extend(write_in_edge(
        edge,
        SPLIT_CONF,
        split_conf(share, canary_project, live_project),
    ));
    cmds.extend(write_in_edge(edge, CANARY_CONF, canary_conf()));
    cmds.extend(check_and_reload(edge));
    cmds
}

/// The canary's files, server half first (it names the split).
pub const FILES: [&str; 3] = [CANARY_CONF, SPLIT_CONF, LOG];

/// Removes the canary; a switch runs it before its reload.
pub fn clear_command(edge: &str) -> Cmd {
    clear_files_command(edge, &FILES)
}

/// Removes some of [`FILES`] (those a look found).
pub fn clear_files_command(edge: &str, files: &[&str]) -> Cmd {
    Cmd::new("docker")
        .args(["exec", edge, "rm", "-f"])
        .args(files.iter().copied())
}

/// Is `file` in the edge?
pub fn file_probe(edge: &str, file: &str) -> Cmd {
    Cmd::new("docker").args(["exec", edge, "test", "-f", file])
}

/// Does the edge's configuration include the canary files?
pub fn supported_probe(edge: &str) -> Cmd {
    Cmd::new("docker").args(["exec", edge, "grep", "-qF", INCLUDE, EDGE_CONF])
}

/// Is a canary on (its server half is there)?
pub fn on_probe(edge: &str) -> Cmd {
    Cmd::new("docker").args(["exec", edge, "test", "-f", CANARY_CONF])
}

pub fn read_split(edge: &str) -> Cmd {
    Cmd::new("docker").args(["exec", edge, "cat", SPLIT_CONF])
}

/// The canary's share and upstream project from split.conf (`10% "crm-green:80";`).
pub fn parse_split(text: &str) -> Option<(Share, String)> {
    text.lines().find_map(|line| {
        let (share, rest) = line.trim().split_once("% \"")?;
        let project = rest.strip_suffix(":80\";")?;
        Some((Share::parse(share).ok()?, project.to_string()))
    })
}

/// The log's bytes from `offset` on.
fn read_log(edge: &str, offset: u64) -> Cmd {
    Cmd::new("docker").args(["exec", edge, "tail", "-c", &format!("+{}", offset + 1), LOG])
}

/// Requests answered by one side, and how many of them were 5xx.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    pub requests: u64,
    pub errors: u64,
}

impl Count {
    /// The 5xx rate in percent (0 without requests).
    pub fn rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            100.0 * self.errors as f64 / self.requests as f64
        }
    }
}

/// Both sides, as counted from the edge's canary log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub canary: Count,
    pub live: Count,
    /// Bytes of the log read so far (whole lines only).
    pub offset: u64,
}

impl Tally {
    /// Counts the whole lines of `text` (log bytes from `offset`): `crm-green:80 200`.
    pub fn add(&mut self, text: &[u8], canary_upstream: &str) {
        let Some(end) = text.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        for line in String::from_utf8_lossy(&text[..end]).lines() {
            let Some((upstream, status)) = line.trim().split_once(' ') else {
                continue;
            };
            let Ok(status) = status.trim().parse::<u16>() else {
                continue;
            };
            let side = if upstream == canary_upstream {
                &mut self.canary
            } else {
                &mut self.live
            };
            side.requests += 1;
            side.errors += u64::from((500..600).contains(&status));
        }
        self.offset += end as u64 + 1;
    }

    /// The share of the requests the canary got, in percent.
    pub fn seen_share(&self) -> f64 {
        let all = self.canary.requests + self.live.requests;
        if all == 0 {
            0.0
        } else {
            100.0 * self.canary.requests as f64 / all as f64
        }
    }

    /// `canary 10% (asked) 9.8% (seen): 41 req, 0 5xx | live 377 req, 0 5xx`
    pub fn line(&self, asked: Share) -> String {
        format!(
            "canary {asked} (asked) {:.1}% (seen): {} req, {} 5xx | live {} req, {} 5xx",
            self.seen_share(),
            self.canary.requests,
            self.canary.errors,
            self.live.requests,
            self.live.errors
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Not enough seen yet.
    Wait,
    Promote,
    Withdraw(String),
}

/// The canary is no worse when its 5xx rate is at most the live release's plus
/// [`CANARY_MARGIN_POINTS`], over at least [`CANARY_MIN_REQUESTS`] requests. Decided when the wait
/// is over; before that only a canary failing half its requests is withdrawn at once.
pub fn judge(tally: &Tally, over: bool) -> Verdict {
    let (canary, live) = (tally.canary, tally.live);
    let worse = canary.rate() > live.rate() + CANARY_MARGIN_POINTS;
    let why = || {
        format!(
            "its 5xx rate {:.1}% ({} of {}) is worse than the live release's {:.1}% ({} of {}) by more than {CANARY_MARGIN_POINTS} points",
            canary.rate(),
            canary.errors,
            canary.requests,
            live.rate(),
            live.errors,
            live.requests
        )
    };
    if canary.requests >= CANARY_MIN_REQUESTS && worse && canary.rate() >= 50.0 {
        return Verdict::Withdraw(why());
    }
    if !over {
        return Verdict::Wait;
    }
    if canary.requests < CANARY_MIN_REQUESTS {
        return Verdict::Withdraw(format!(
            "only {} request(s) reached it, too few to judge (at least {CANARY_MIN_REQUESTS}): give a longer --canary-wait, or --canary-wait 0 and decide with --promote / --abort",
            canary.requests
        ));
    }
    if worse {
        Verdict::Withdraw(why())
    } else {
        Verdict::Promote
    }
}

/// Compares the two sides for `wait` from the edge's log, showing the split as it goes. Ok when
/// the canary is to be promoted; the error says why it is to be withdrawn.
pub fn compare(
    d: &Deployment,
    edge: &str,
    canary_project: &str,
    share: Share,
    wait: Duration,
) -> Result<Tally> {
    if d.remote.dry_run() {
        return Ok(Tally::default());
    }
    let mut tally = Tally::default();
    let say = |line: String| d.remote.say(line);
    judge_for(share, wait, say, || {
        poll(d, edge, canary_project, &mut tally)?;
        Ok(vec![(String::new(), tally.clone())])
    })
}

/// Adds the log's new whole lines on `edge` to `tally` (a log not there yet counts nothing).
pub fn poll(d: &Deployment, edge: &str, canary_project: &str, tally: &mut Tally) -> Result<()> {
    let out = d.remote.output(read_log(edge, tally.offset))?;
    if out.status.success() {
        tally.add(&out.stdout, &format!("{canary_project}:80"));
    }
    Ok(())
}

/// The fleet's counts: every host's edge's requests and 5xx added up, per side.
pub fn sum<'a>(tallies: impl IntoIterator<Item = &'a Tally>) -> Tally {
    let mut all = Tally::default();
    for t in tallies {
        all.canary.requests += t.canary.requests;
        all.canary.errors += t.canary.errors;
        all.live.requests += t.live.requests;
        all.live.errors += t.live.errors;
    }
    all
}

/// `web1 41/0 | 377/0, web2 ...`: each host's canary and live requests/5xx (several hosts).
pub fn per_host(hosts: &[(String, Tally)]) -> String {
    hosts
        .iter()
        .map(|(h, t)| {
            format!(
                "{h} {}/{} | {}/{}",
                t.canary.requests, t.canary.errors, t.live.requests, t.live.errors
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The comparison for `wait`: `read` gives each host's counts so far (one host, or every host
/// of a fleet: their sum is judged), the line is shown every few seconds. Ok when the canary is
/// to be promoted; the error says why it is to be withdrawn.
pub fn judge_for(
    share: Share,
    wait: Duration,
    say: impl Fn(String),
    mut read: impl FnMut() -> Result<Vec<(String, Tally)>>,
) -> Result<Tally> {
    let (start, mut shown) = (Instant::now(), Instant::now());
    loop {
        crate::interrupt::check()?;
        std::thread::sleep(POLL.min(wait.saturating_sub(start.elapsed())));
        let hosts = read()?;
        let tally = sum(hosts.iter().map(|(_, t)| t));
        let verdict = judge(&tally, start.elapsed() >= wait);
        if verdict != Verdict::Wait || shown.elapsed() >= SHOW_EVERY {
            match hosts.len() {
                1 => say(format!("  {}", tally.line(share))),
                _ => say(format!(
                    "  fleet: {} (canary | live req/5xx: {})",
                    tally.line(share),
                    per_host(&hosts)
                )),
            }
            shown = Instant::now();
        }
        match verdict {
            Verdict::Wait => continue,
            Verdict::Promote => return Ok(tally),
            Verdict::Withdraw(why) => bail!("the canary was withdrawn: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_percentages_from_1_to_99() {
        assert_eq!(Share::parse("10%").unwrap(), Share(10));
        assert_eq!(Share::parse("25").unwrap().to_string(), "25%");
        for bad in ["0%", "100%", "10.5%", "-1", "", "ten"] {
            let e = Share::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid canary share"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_split_and_the_server_half() {
        let split = split_conf(Share(10), "crm-green", "crm-blue");
        assert!(
            split.contains("split_clients \"${request_id}\" $crm_split {\n    10% \"crm-green:80\";\n    * \"crm-blue:80\";\n}\n"),
            "{split}"
        );
        assert!(split.contains("log_format crm_canary '$crm_split $status';"));
        assert_eq!(
            parse_split(&split),
            Some((Share(10), "crm-green".to_string()))
        );
        assert_eq!(parse_split("# nothing\n"), None);
        let conf = canary_conf();
        assert!(conf.contains("set $crm_live $crm_split;\n"));
        assert!(conf.contains("add_header X-Crm-Upstream $crm_split always;\n"));
        assert!(conf.contains("access_log /var/log/nginx/crm-canary.log crm_canary;\n"));
        // The edge's own log keeps going to stdout.
        assert!(conf.contains("access_log /var/log/nginx/access.log;\n"));
    }

    #[test]
    fn starting_writes_the_split_before_the_server_half_then_reloads() {
        let cmds = start_commands("e1", Share(10), "crm-green", "crm-blue");
        let argv: Vec<String> = cmds.iter().map(|c| c.argv().join(" ")).collect();
        assert_eq!(
            argv,
            [
                "docker exec e1 rm -f /var/log/nginx/crm-canary.log",
                "docker exec -i e1 dd of=/etc/nginx/crm-edge/split.conf.new status=none",
                "docker exec e1 mv -f /etc/nginx/crm-edge/split.conf.new /etc/nginx/crm-edge/split.conf",
                "docker exec -i e1 dd of=/etc/nginx/crm-edge/canary.conf.new status=none",
                "docker exec e1 mv -f /etc/nginx/crm-edge/canary.conf.new /etc/nginx/crm-edge/canary.conf",
                "docker exec e1 nginx -t -q",
                "docker exec e1 nginx -s reload",
            ]
        );
        assert_eq!(
            clear_command("e1").argv(),
            [
                "docker",
                "exec",
                "e1",
                "rm",
                "-f",
                CANARY_CONF,
                SPLIT_CONF,
                LOG
            ]
        );
        assert_eq!(
            read_log("e1", 41).argv(),
            ["docker", "exec", "e1", "tail", "-c", "+42", LOG]
        );
    }

    #[test]
    fn the_log_is_counted_by_whole_lines() {
        let mut t = Tally::default();
        t.add(
            b"crm-green:80 200\ncrm-blue:80 200\ncrm-green:80 500\ncrm-blue:80 502\ncrm-bl",
            "crm-green:80",
        );
        assert_eq!(
            t.canary,
            Count {
                requests: 2,
                errors: 1
            }
        );
        assert_eq!(
            t.live,
            Count {
                requests: 2,
                errors: 1
            }
        );
        // The half line is read again next time, from the offset.
        assert_eq!(t.offset, 66);
        t.add(b"crm-blue:80 404\n", "crm-green:80");
        assert_eq!(t.live.requests, 3);
        assert_eq!(t.offset, 82);
        t.add(b"", "crm-green:80");
        t.add(b"garbage\n", "crm-green:80");
        assert_eq!((t.canary.requests, t.live.requests), (2, 3));
        assert_eq!(
            t.line(Share(10)),
            "canary 10% (asked) 40.0% (seen): 2 req, 1 5xx | live 3 req, 1 5xx"
        );
    }

    fn tally(canary: (u64, u64), live: (u64, u64)) -> Tally {
        Tally {
            canary: Count {
                requests: canary.0,
                errors: canary.1,
            },
            live: Count {
                requests: live.0,
                errors: live.1,
            },
            offset: 0,
        }
    }

    #[test]
    fn a_canary_no_worse_than_live_is_promoted_else_withdrawn() {
        // Healthy, or as bad as live within the margin.
        assert_eq!(judge(&tally((41, 0), (377, 0)), true), Verdict::Promote);
        assert_eq!(judge(&tally((100, 3), (900, 9)), true), Verdict::Promote);
        // 10% 5xx against none.
        let Verdict::Withdraw(why) = judge(&tally((100, 10), (900, 0)), true) else {
            panic!("a canary failing 10% must be withdrawn")
        };
        assert!(
            why.starts_with("its 5xx rate 10.0% (10 of 100) is worse than the live release's 0.0%"),
            "{why}"
        );
        // Too few requests to judge: withdrawn, never promoted blind.
        let Verdict::Withdraw(why) = judge(&tally((3, 0), (40, 0)), true) else {
            panic!("too few requests")
        };
        assert!(why.starts_with("only 3 request(s) reached it"), "{why}");
        // Before the end of the wait: only a canary failing half its requests goes at once.
        assert_eq!(judge(&tally((100, 10), (900, 0)), false), Verdict::Wait);
        assert_eq!(judge(&tally((5, 5), (50, 0)), false), Verdict::Wait);
        assert!(matches!(
            judge(&tally((30, 20), (300, 0)), false),
            Verdict::Withdraw(_)
        ));
        assert_eq!(Count::default().rate(), 0.0);
    }

    #[test]
    fn a_fleet_is_judged_on_every_host_s_counts_added_up() {
        let hosts = [
            ("web1".to_string(), tally((20, 0), (180, 1))),
            ("web2".to_string(), tally((21, 9), (190, 0))),
        ];
        let all = sum(hosts.iter().map(|(_, t)| t));
        assert_eq!(
            (all.canary, all.live),
            (
                tally((41, 9), (370, 1)).canary,
                tally((41, 9), (370, 1)).live
            )
        );
        // One bad host is enough to make the fleet's canary worse: withdrawn everywhere.
        assert!(matches!(judge(&all, true), Verdict::Withdraw(_)));
        // Neither host alone reached the minimum, together they do: promoted.
        let few = [tally((12, 0), (100, 0)), tally((12, 0), (100, 0))];
        assert!(matches!(judge(&few[0], true), Verdict::Withdraw(_)));
        assert_eq!(judge(&sum(&few), true), Verdict::Promote);
        assert_eq!(per_host(&hosts), "web1 20/0 | 180/1, web2 21/9 | 190/0");
        assert_eq!(sum([]), Tally::default());
    }

    #[test]
    fn the_comparison_ends_on_the_verdict_of_the_sum() {
        let mut calls = 0;
        let lines = std::cell::RefCell::new(Vec::new());
        let bad = judge_for(
            Share(20),
            Duration::from_secs(60),
            |l| lines.borrow_mut().push(l),
            || {
                calls += 1;
                Ok(vec![
                    ("a".into(), tally((15, 15), (60, 0))),
                    ("b".into(), tally((15, 0), (60, 0))),
                ])
            },
        )
        .unwrap_err()
        .to_string();
        // Half the fleet's canary requests fail: withdrawn at the first look, not after 60s.
        assert_eq!(calls, 1);
        assert!(
            bad.starts_with("the canary was withdrawn: its 5xx rate 50.0% (15 of 30)"),
            "{bad}"
        );
        assert!(
            lines.borrow()[0].starts_with(
                "  fleet: canary 20% (asked) 20.0% (seen): 30 req, 15 5xx | live 120 req, 0 5xx"
            ),
            "{:?}",
            lines.borrow()
        );
        let good = judge_for(
            Share(20),
            Duration::ZERO,
            |_| {},
            || Ok(vec![("a".into(), tally((30, 0), (100, 0)))]),
        )
        .unwrap();
        assert_eq!(good.canary.requests, 30);
    }
}
