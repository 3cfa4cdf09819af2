//! The state file of one testbed: what `up` made, one line per thing, in the order it was made.
//!
//! A line is written (and flushed) *before* the thing it names is made, so an interrupted or
//! failed `up` leaves a journal that names everything it may have made; `down` undoes the lines
//! from the end and tolerates things that are already gone. `down` therefore removes only what
//! some `up` of this testbed made: its own namespaces, links, rule and daemons (by pid file).
//! Words are separated by single spaces; every path is under the testbed's directory, which has
//! no spaces (see `Name`).

use std::fmt;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// One line of the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// The third byte K of the testbed's subnet 10.231.K.0/24.
    Subnet(u8),
    /// How many machines `up` was asked for.
    Machines(usize),
    /// The registry port forwarded into every machine.
    RegistryPort(u16),
    /// The port an edge would be published on (for the printed addresses).
    EdgePort(u16),
    /// A bridge in the host's namespace.
    Bridge(String),
    /// `FORWARD -i BRIDGE -o BRIDGE -j ACCEPT` in the host's iptables.
    ForwardRule(String),
    /// A network namespace (`/var/run/netns/NAME`).
    Netns(String),
    /// The host side of a veth pair (the peer goes with its namespace).
    Veth(String),
    /// A machine: its name, address, namespace and engine socket (`unix://...`).
    Machine {
        name: String,
        addr: Ipv4Addr,
        netns: String,
        docker_host: String,
    },
    /// A daemon started with a pid file; stopped only if that pid still runs `exe`.
    Daemon {
        role: String,
        machine: String,
        exe: String,
        pidfile: PathBuf,
    },
    /// The swarm's manager, once `swarm init` ran there.
    Swarm(String),
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Subnet(k) => write!(f, "subnet {k}"),
            Entry::Machines(n) => write!(f, "machines {n}"),
            Entry::RegistryPort(p) => write!(f, "registry-port {p}"),
            Entry::EdgePort(p) => write!(f, "edge-port {p}"),
            Entry::Bridge(b) => write!(f, "bridge {b}"),
            Entry::ForwardRule(b) => write!(f, "forward {b}"),
            Entry::Netns(n) => write!(f, "netns {n}"),
            Entry::Veth(v) => write!(f, "veth {v}"),
            Entry::Machine {
                name,
                addr,
                netns,
                docker_host,
            } => write!(f, "machine {name} {addr} {netns} {docker_host}"),
            Entry::Daemon {
                role,
                machine,
                exe,
                pidfile,
            } => write!(f, "daemon {role} {machine} {exe} {}", pidfile.display()),
            Entry::Swarm(m) => write!(f, "swarm {m}"),
        }
    }
}

impl Entry {
    pub fn parse(line: &str) -> Result<Entry> {
        let words: Vec<&str> = line.split(' ').collect();
        let bad = || format!("unreadable testbed state line {line:?}");
        let entry = match words.as_slice() {
            ["subnet", k] => Entry::Subnet(k.parse().with_context(bad)?),
            ["machines", n] => Entry::Machines(n.parse().with_context(bad)?),
            ["registry-port", p] => Entry::RegistryPort(p.parse().with_context(bad)?),
            ["edge-port", p] => Entry::EdgePort(p.parse().with_context(bad)?),
            ["bridge", b] => Entry::Bridge(b.to_string()),
            ["forward", b] => Entry::ForwardRule(b.to_string()),
            ["netns", n] => Entry::Netns(n.to_string()),
            ["veth", v] => Entry::Veth(v.to_string()),
            ["machine", name, addr, netns, docker_host] => Entry::Machine {
                name: name.to_string(),
                addr: addr.parse().with_context(bad)?,
                netns: netns.to_string(),
                docker_host: docker_host.to_string(),
            },
            ["daemon", role, machine, exe, pidfile] => Entry::Daemon {
                role: role.to_string(),
                machine: machine.to_string(),
                exe: exe.to_string(),
                pidfile: PathBuf::from(pidfile),
            },
            ["swarm", m] => Entry::Swarm(m.to_string()),
            _ => bail!("{}", bad()),
        };
        Ok(entry)
    }
}

/// The journal file, appended to as things are made.
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    pub const FILE: &'static str = "state";

    /// A new, empty journal in `dir` (which `up` has just created).
    pub fn create(dir: &Path) -> Result<Journal> {
        let path = dir.join(Self::FILE);
        std::fs::write(
            &path,
            "# xtask testbed: what `up` made, in order; `down` undoes it from the end\n",
        )
        .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Journal { path })
    }

    /// Appends `entry`, flushed to the file before returning (before the thing is made).
    pub fn record(&self, entry: &Entry) -> Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .with_context(|| format!("cannot append to {}", self.path.display()))?;
        writeln!(file, "{entry}")
            .and_then(|()| file.sync_data())
            .with_context(|| format!("cannot append to {}", self.path.display()))
    }

    /// Every entry of the journal in `dir`, in the order they were written.
    pub fn read(dir: &Path) -> Result<Vec<Entry>> {
        let path = dir.join(Self::FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        parse(&text)
    }
}

pub fn parse(text: &str) -> Result<Vec<Entry>> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(Entry::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<Entry> {
        vec![
            Entry::Subnet(7),
            Entry::Machines(3),
            Entry::RegistryPort(5000),
            Entry::EdgePort(8080),
            Entry::Bridge("xtb-br".into()),
            Entry::ForwardRule("xtb-br".into()),
            Entry::Netns("xtb-m1".into()),
            Entry::Veth("xtb-m1h".into()),
            Entry::Machine {
                name: "m1".into(),
                addr: Ipv4Addr::new(10, 231, 7, 11),
                netns: "xtb-m1".into(),
                docker_host: "unix:///tmp/xtask-testbed/xtb/m1/docker.sock".into(),
            },
            Entry::Daemon {
                role: "dockerd".into(),
                machine: "m1".into(),
                exe: "/usr/sbin/dockerd".into(),
                pidfile: "/tmp/xtask-testbed/xtb/m1/dockerd.pid".into(),
            },
            Entry::Swarm("m1".into()),
        ]
    }

    #[test]
    fn every_entry_reads_back_as_written() {
        let text: String = every_kind().iter().map(|e| format!("{e}\n")).collect();
        assert!(text.contains(
            "daemon dockerd m1 /usr/sbin/dockerd /tmp/xtask-testbed/xtb/m1/dockerd.pid\n"
        ));
        assert_eq!(parse(&format!("# comment\n{text}")).unwrap(), every_kind());
    }

    #[test]
    fn a_damaged_line_is_refused_with_the_line() {
        let err = parse("subnet 7\nsubnet x\n").unwrap_err();
        assert!(format!("{err:#}").contains("\"subnet x\""), "{err:#}");
        assert!(parse("bridge\n").is_err());
        assert!(parse("what is this\n").is_err());
    }

    #[test]
    fn the_journal_appends_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::create(dir.path()).unwrap();
        for entry in every_kind() {
            journal.record(&entry).unwrap();
        }
        assert_eq!(Journal::read(dir.path()).unwrap(), every_kind());
    }
}
