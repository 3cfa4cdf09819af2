//! Names and addresses of a testbed, derived from its name, its subnet and its size: the
//! bridge `NAME-br` with 10.231.K.1, machines `m1..mN` in namespaces `NAME-m1..` at
//! 10.231.K.11.., veths `NAME-m1h..` (the peer is `eth0` inside), files under
//! `/tmp/xtask-testbed/NAME/`. Interface names stay within Linux's 15 characters because a name
//! has at most 8 and there are at most 20 machines.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// Where every testbed keeps its directory.
pub const BASE_DIR: &str = "/tmp/xtask-testbed";
/// Testbeds use 10.231.K.0/24, one K each.
pub const NET: [u8; 2] = [10, 231];
pub const MAX_MACHINES: usize = 20;
/// Machine i has the address .(FIRST_HOST + i).
const FIRST_HOST: u8 = 10;

/// A testbed's name: 1 to 8 lowercase letters or digits, starting with a letter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    pub fn parse(name: &str) -> Result<Name> {
        let ok = (1..=8).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !ok {
            bail!("invalid testbed name {name:?}: 1 to 8 lowercase letters or digits, starting with a letter (it prefixes interface names, which Linux limits to 15 characters)");
        }
        Ok(Name(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Refuses a machine count outside 1..=MAX_MACHINES, in one line.
pub fn check_machines(n: usize) -> Result<()> {
    if !(1..=MAX_MACHINES).contains(&n) {
        bail!("--machines {n}: a testbed has 1 to {MAX_MACHINES} machines");
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub name: Name,
    /// K of 10.231.K.0/24.
    pub subnet: u8,
    pub machines: usize,
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(base: &Path, name: Name, subnet: u8, machines: usize) -> Layout {
        Layout {
            dir: base.join(name.as_str()),
            name,
            subnet,
            machines,
        }
    }

    pub fn bridge(&self) -> String {
        format!("{}-br", self.name)
    }

    /// The host's address on the bridge: the machines' default route and registry forwarder.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(NET[0], NET[1], self.subnet, 1)
    }

    pub fn cidr(&self) -> String {
        format!("{}.{}.{}.0/24", NET[0], NET[1], self.subnet)
    }

    /// Machine `index` (1-based, as in `m1`).
    pub fn machine(&self, index: usize) -> Machine {
        assert!((1..=self.machines).contains(&index), "no machine m{index}");
        let name = format!("m{index}");
        Machine {
            index,
            netns: format!("{}-{name}", self.name),
            veth: format!("{}-{name}h", self.name),
            addr: Ipv4Addr::new(NET[0], NET[1], self.subnet, FIRST_HOST + index as u8),
            dir: self.dir.join(&name),
            name,
        }
    }

    pub fn all(&self) -> Vec<Machine> {
        (1..=self.machines).map(|i| self.machine(i)).collect()
    }

    /// The machine named `name` (`m2`), or a one-line refusal listing the names.
    pub fn find(&self, name: &str) -> Result<Machine> {
        match self.all().into_iter().find(|m| m.name == name) {
            Some(m) => Ok(m),
            None => bail!(
                "testbed {} has no machine {name:?}; its machines are m1..m{}",
                self.name,
                self.machines
            ),
        }
    }

    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client_key")
    }

    pub fn authorized_keys(&self) -> PathBuf {
        self.dir.join("authorized_keys")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    pub fn ssh_config(&self) -> PathBuf {
        self.dir.join("ssh_config")
    }

    pub fn socat_pidfile(&self) -> PathBuf {
        self.dir.join("socat.pid")
    }

    pub fn socat_log(&self) -> PathBuf {
        self.dir.join("socat.log")
    }
}

/// One machine of a layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    pub index: usize,
    pub name: String,
    pub netns: String,
    /// Host side of its veth pair; the peer is `eth0` in the namespace.
    pub veth: String,
    pub addr: Ipv4Addr,
    /// Its files: engine data and exec roots, socket, sshd config and host key, pid files, logs.
    pub dir: PathBuf,
}

impl Machine {
    pub fn netns_path(&self) -> String {
        format!("/var/run/netns/{}", self.netns)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    pub fn ssh_target(&self) -> String {
        format!("root@{}", self.addr)
    }

    pub fn host_key(&self) -> PathBuf {
        self.dir.join("host_key")
    }

    /// The engine's own daemon.json.
    pub fn engine_config(&self) -> PathBuf {
        self.dir.join("daemon.json")
    }

    pub fn sshd_config(&self) -> PathBuf {
        self.dir.join("sshd_config")
    }

    /// A directory for this machine's deploys: machines share this host's files, so two of them
    /// must not deploy into the same `--dir`.
    pub fn deploy_dir(&self) -> PathBuf {
        self.dir.join("srv")
    }

    pub fn pidfile(&self, role: &str) -> PathBuf {
        self.dir.join(format!("{role}.pid"))
    }

    pub fn log(&self, role: &str) -> PathBuf {
        self.dir.join(format!("{role}.log"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_lowercase_words() {
        for ok in ["xtb", "a", "t1a2b3c4", "ab12"] {
            assert_eq!(Name::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "Xtb", "1abc", "abcdefghi", "a-b", "a b", "a/b", "é"] {
            let err = Name::parse(bad).unwrap_err().to_string();
            assert!(err.contains("invalid testbed name"), "{bad}: {err}");
            assert!(!err.contains('\n'));
        }
    }

    #[test]
    fn machine_counts_outside_one_to_twenty_are_refused() {
        assert!(check_machines(1).is_ok());
        assert!(check_machines(MAX_MACHINES).is_ok());
        let err = check_machines(0).unwrap_err().to_string();
        assert_eq!(err, "--machines 0: a testbed has 1 to 20 machines");
        assert!(check_machines(MAX_MACHINES + 1).is_err());
    }

    #[test]
    fn names_and_addresses_follow_the_name_and_subnet() {
        let layout = Layout::new(Path::new("/b"), Name::parse("xtb").unwrap(), 7, 3);
        assert_eq!(layout.bridge(), "xtb-br");
        assert_eq!(layout.gateway().to_string(), "10.231.7.1");
        assert_eq!(layout.cidr(), "10.231.7.0/24");
        let m2 = layout.machine(2);
        assert_eq!(m2.name, "m2");
        assert_eq!(m2.netns, "xtb-m2");
        assert_eq!(m2.veth, "xtb-m2h");
        assert_eq!(m2.addr.to_string(), "10.231.7.12");
        assert_eq!(m2.docker_host(), "unix:///b/xtb/m2/docker.sock");
        assert_eq!(m2.ssh_target(), "root@10.231.7.12");
        assert_eq!(layout.find("m3").unwrap().index, 3);
        assert!(layout.find("m4").is_err());
    }

    #[test]
    fn the_longest_interface_name_fits_in_fifteen_characters() {
        let layout = Layout::new(
            Path::new(BASE_DIR),
            Name::parse("abcdefgh").unwrap(),
            254,
            MAX_MACHINES,
        );
        let last = layout.machine(MAX_MACHINES);
        assert!(last.veth.len() <= 15, "{}", last.veth);
        assert!(layout.bridge().len() <= 15);
        assert_eq!(last.addr.to_string(), "10.231.254.30");
        // A unix socket path is limited to 107 bytes.
        assert!(last.socket().as_os_str().len() < 100);
    }
}
