//! Where a deploy goes: a directory on this machine, or one on a server reached with the system
//! `ssh` (host keys always checked against known_hosts, whatever the ssh config says).
//!
//! Commands for the target are built as argument vectors like every other command. For ssh,
//! which hands the remote shell one string, they are quoted once, here, in [`Target::cmd`]: a
//! hostile `--dir` or tag is one quoted word there, never shell syntax.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::cmd::{quote, Cmd, Runner};
use crate::reference::{is_host_name, parse_port};

/// `user@host[:port]` of a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshHost {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// None: this machine.
    pub ssh: Option<SshHost>,
    /// Absolute path of the deploy directory on the target.
    pub dir: String,
    /// An ssh config file (`ssh -F`), e.g. for tests with their own keys and known_hosts.
    pub ssh_config: Option<PathBuf>,
    /// `-o` options for one shared connection to the server (`ssh.rs`), or none.
    pub sharing: Vec<String>,
}

impl Target {
    pub fn new(host: Option<&str>, dir: &str, ssh_config: Option<PathBuf>) -> Result<Target> {
        let ssh = host.map(parse_host).transpose()?;
        if !dir.starts_with('/') || dir.contains(['\0', '\n']) {
            bail!("invalid --dir {dir:?}: the deploy directory must be an absolute path on the target (e.g. /srv/crm)");
        }
        let dir = dir.trim_end_matches('/').to_string();
        let sharing = match ssh {
            Some(_) => crate::ssh::sharing_options(),
            None => Vec::new(),
        };
        Ok(Target {
            sharing,
            ssh,
            dir: if dir.is_empty() { "/".into() } else { dir },
            ssh_config,
        })
    }

    /// `dir/relative`.
    pub fn path(&self, relative: &str) -> String {
        format!("{}/{relative}", self.dir)
    }

    /// For messages: `/srv/crm` or `deploy@web1:2222:/srv/crm`.
    pub fn describe(&self) -> String {
        match &self.ssh {
            None => self.dir.clone(),
            Some(ssh) => {
                let user = ssh
                    .user
                    .as_ref()
                    .map(|u| format!("{u}@"))
                    .unwrap_or_default();
                let port = ssh.port.map(|p| format!(":{p}")).unwrap_or_default();
                format!("{user}{}{port}:{}", ssh.host, self.dir)
            }
        }
    }

    /// `cmd`, to be run on the target. Its environment is passed with `env K=V` (ssh does not
    /// forward it) and its stdin is forwarded; commands for a target never rely on a working
    /// directory (they use absolute paths).
    pub fn cmd(&self, cmd: Cmd) -> Cmd {
        let Some(ssh) = &self.ssh else { return cmd };
        let mut words: Vec<String> = Vec::new();
        if !cmd.env.is_empty() {
            words.push("env".into());
            words.extend(cmd.env.iter().map(|(k, v)| format!("{k}={v}")));
        }
        words.push(cmd.program.clone());
        words.extend(cmd.args.iter().cloned());
        let remote: Vec<String> = words.iter().map(|w| quote(w)).collect();
        // On the command line, these win over any ssh config (ssh keeps the first value it
        // gets): a config with `StrictHostKeyChecking no` or `accept-new` cannot weaken them.
        let mut wrapped = Cmd::new("ssh").args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ConnectTimeout=10",
        ]);
        wrapped = wrapped.args(&self.sharing);
        if let Some(config) = &self.ssh_config {
            wrapped = wrapped.arg("-F").arg(config.display().to_string());
        }
        if let Some(port) = ssh.port {
            wrapped = wrapped.arg("-p").arg(port.to_string());
        }
        if let Some(user) = &ssh.user {
            wrapped = wrapped.arg("-l").arg(user);
        }
        wrapped = wrapped.arg(&ssh.host).arg("--").arg(remote.join(" "));
        wrapped.stdin = cmd.stdin;
        wrapped
    }

    /// Refuses, in one line, a target that cannot be used: unreachable host, unknown host key,
    /// missing directory or compose file. Nothing is changed.
    pub fn check(&self, runner: &Runner) -> Result<()> {
        let compose = self.path("compose.yaml");
        let output = runner.output(&self.cmd(Cmd::new("test").args(["-f", &compose])))?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        match (&self.ssh, output.status.code()) {
            (Some(ssh), Some(255)) => bail!("{}", ssh_failure(ssh, &stderr)),
            _ => {
                let dir_exists =
                    runner.succeeds(&self.cmd(Cmd::new("test").args(["-d", &self.dir])))?;
                if dir_exists {
                    bail!(
                        "no compose.yaml in {}; copy the production compose file there first",
                        self.describe()
                    )
                }
                bail!("the deploy directory {} does not exist; create it with the production compose.yaml and .env", self.describe())
            }
        }
    }
}

/// One line for ssh's own failures (exit 255).
fn ssh_failure(ssh: &SshHost, stderr: &str) -> String {
    let host = &ssh.host;
    if stderr.contains("Host key verification failed")
        || stderr.contains("No ED25519 host key")
        || stderr.contains("host key")
    {
        format!(
            "unknown or changed host key for {host}: refusing to connect; check the server's fingerprint, then add it to ~/.ssh/known_hosts (ssh-keyscan{} {host})",
            ssh.port.map(|p| format!(" -p {p}")).unwrap_or_default()
        )
    } else if stderr.contains("Permission denied") {
        format!("ssh to {host} was refused (Permission denied): load your key in ssh-agent or set IdentityFile in ~/.ssh/config")
    } else {
        let reason = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no answer")
            .trim();
        format!("cannot reach {host} over ssh ({reason}); check the host name, port and network")
    }
}

/// `[user@]host[:port]`. Nothing that ssh could read as an option (a leading `-`) gets through.
pub fn parse_host(spec: &str) -> Result<SshHost> {
    let bad = |why: &str| {
        anyhow::anyhow!("invalid --host {spec:?}: {why}; expected [user@]host[:port] such as deploy@web1.example.com:22")
    };
    let (user, rest) = match spec.split_once('@') {
        Some((user, rest)) => (Some(user), rest),
        None => (None, spec),
    };
    if let Some(user) = user {
        let ok = user.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && user
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.".contains(c));
        if !ok {
            return Err(bad("bad user name"));
        }
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => {
            let port = parse_port(port).ok_or_else(|| bad("bad port"))?;
            (host, Some(port))
        }
        None => (rest, None),
    };
    if host.len() > 253 || !is_host_name(host) {
        return Err(bad("bad host name"));
    }
    Ok(SshHost {
        user: user.map(String::from),
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(
            parse_host("deploy@web1.example.com:2222").unwrap(),
            SshHost {
                user: Some("deploy".into()),
                host: "web1.example.com".into(),
                port: Some(2222)
            }
        );
        assert_eq!(
            parse_host("127.0.0.1").unwrap(),
            SshHost {
                user: None,
                host: "127.0.0.1".into(),
                port: None
            }
        );
        for bad in [
            "",
            "-oProxyCommand=x",
            "root@-x",
            "a b",
            "h:0",
            "h:99999",
            "h:",
            "Root@h",
            "u@h;id",
            "@h",
            "h/x",
            "$(id)",
        ] {
            assert!(
                parse_host(bad)
                    .unwrap_err()
                    .to_string()
                    .starts_with("invalid --host"),
                "{bad}"
            );
        }
    }

    #[test]
    fn local_commands_are_unchanged() {
        let target = Target::new(None, "/srv/crm/", None).unwrap();
        assert_eq!(target.dir, "/srv/crm");
        let cmd = Cmd::new("docker").args(["compose", "ps"]);
        assert_eq!(target.cmd(cmd.clone()), cmd);
        assert_eq!(target.path(".deploy/lock"), "/srv/crm/.deploy/lock");
    }

    #[test]
    fn remote_commands_are_quoted_once() {
        let mut target = Target::new(
            Some("root@127.0.0.1:2222"),
            "/tmp/x; rm -rf /",
            Some("/t/ssh_config".into()),
        )
        .unwrap();
        // Whatever this machine allows (ssh.rs), the options come before any config file.
        target.sharing = vec!["-o".into(), "ControlPath=/run/s/1-%C".into()];
        let cmd = target.cmd(
            Cmd::new("docker")
                .args(["pull", "r/crm-gdb_php:$(id)"])
                .env("A", "b c")
                .stdin("x"),
        );
        assert_eq!(
            cmd.argv(),
            [
                "ssh",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "ControlPath=/run/s/1-%C",
                "-F",
                "/t/ssh_config",
                "-p",
                "2222",
                "-l",
                "root",
                "127.0.0.1",
                "--",
                "env 'A=b c' docker pull 'r/crm-gdb_php:$(id)'",
            ]
        );
        assert_eq!(cmd.stdin.as_deref(), Some(&b"x"[..]));
        let test = target.cmd(Cmd::new("test").args(["-d", &target.dir]));
        // The trailing slash is trimmed like any directory's; the rest stays one quoted word.
        assert_eq!(test.args.last().unwrap(), "test -d '/tmp/x; rm -rf '");
        assert_eq!(target.describe(), "root@127.0.0.1:2222:/tmp/x; rm -rf ");
    }

    #[test]
    fn relative_dirs_are_refused() {
        assert!(Target::new(None, "srv/crm", None)
            .unwrap_err()
            .to_string()
            .contains("absolute path"));
    }

    #[test]
    fn ssh_failures_in_one_line() {
        let ssh = parse_host("web1:2222").unwrap();
        let msg = ssh_failure(&ssh, "No ED25519 host key is known for [web1]:2222 and you have requested strict checking.\r\nHost key verification failed.\r\n");
        assert!(
            msg.starts_with("unknown or changed host key for web1")
                && msg.contains("ssh-keyscan -p 2222 web1"),
            "{msg}"
        );
        let msg = ssh_failure(
            &ssh,
            "ssh: connect to host web1 port 2222: Connection refused\r\n",
        );
        assert_eq!(msg, "cannot reach web1 over ssh (ssh: connect to host web1 port 2222: Connection refused); check the host name, port and network");
    }
}

#[cfg(test)]
mod props;
