//! Named deploy environments, versioned in the repository: `deploy.yaml` at the project root
//! (or `--deploy-config` / `XTASK_DEPLOY_CONFIG`), read once into typed values before anything
//! connects. `deploy --env production` picks one; its values are defaults that flags override.
//!
//! ```yaml
//! environments:
//!   production:
//!     kind: compose            # blue/green Compose stacks on each host (or swarm, below)
//!     hosts:                   # [user@]host[:port], reached with the system ssh
//!       - deploy@web1.example.com
//!       - deploy@web2.example.com:2222
//!       - {host: deploy@web3.example.com, dir: /opt/crm}   # a host with its own directory
//!     dir: /srv/crm            # deploy directory on every host (unless the host names its own)
//!     stack: crm               # Compose project prefix (STACK-blue, STACK-green, STACK-edge)
//!     ssh_config: ci/ssh_config   # optional `ssh -F` file, relative to this file
//!     strategy: rolling        # rolling | recreate
//!     canary: web1.example.com # the host that switches first (default: the first)
//!     canary_wait: 30s         # keep checking the canary this long before the waves
//!     wave: 1                  # hosts per wave after the canary, or a share: 50%
//!     keep_backups: 5
//!     min_free_disk: 1GiB      # refuse a host with less free space in its deploy directory
//!   cluster:
//!     kind: swarm              # one stack on a Docker Swarm (compose.yaml)
//!     manager: deploy@mgr1.example.com   # a manager, reached with the system ssh
//!     stack: crm               # the stack's name
//!     env_file: secrets/swarm.env        # on this machine: APP_SECRET=..., DB_PASSWORD=... (made swarm secrets)
//! ```
//!
//! An unknown key, an unknown environment or a host listed twice is a one-line error naming
//! the file, the line and the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use saphyr::{LoadableYamlNode, MarkedYaml, YamlData};

use crate::deploy::fleet::Wave;
use crate::deploy::target::{parse_host, SshHost};

/// The file `--env` reads when neither `--deploy-config` nor `XTASK_DEPLOY_CONFIG` is given.
pub const DEFAULT_FILE: &str = "deploy.yaml";

/// How an environment runs the app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Blue/green Compose stacks on each of `hosts`.
    Compose,
    /// One stack on a Docker Swarm, deployed from its `manager` (compose.yaml).
    Swarm,
}

/// One host of an environment: as written (for messages and `--canary-host`) and parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    pub spec: String,
    pub ssh: SshHost,
    /// Its deploy directory, when it is not the environment's `dir`.
    pub dir: Option<String>,
}

/// An environment of deploy.yaml; `None` values fall back to the built-in defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environment {
    pub name: String,
    pub kind: Kind,
    /// Compose hosts (empty for a swarm).
    pub hosts: Vec<Host>,
    /// The swarm manager the stack is deployed from (kind swarm).
    pub manager: Option<SshHost>,
    /// A file on this machine with the swarm's APP_SECRET= and DB_PASSWORD= lines (kind swarm).
    pub env_file: Option<PathBuf>,
    /// The deploy directory of hosts that do not name their own.
    pub dir: Option<String>,
    pub stack: Option<String>,
    pub ssh_config: Option<PathBuf>,
    pub strategy: Option<String>,
    /// Index into `hosts`.
    pub canary: usize,
    pub canary_wait: Option<Duration>,
    pub wave: Option<Wave>,
    pub keep_backups: Option<usize>,
    pub min_free_disk: Option<u64>,
    /// HTTPS at the edge: the certificate and key, paths on the hosts.
    pub tls: Option<crate::deploy::tls::TlsFiles>,
}

fn find_host(hosts: &[Host], spec: &str) -> Option<usize> {
    if let Some(i) = hosts.iter().position(|h| h.spec == spec) {
        return Some(i);
    }
    let matches: Vec<usize> = hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| label(&h.ssh) == spec || h.ssh.host == spec)
        .map(|(i, _)| i)
        .collect();
    match matches.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

/// `host` or `host:port`: how output names a host.
pub fn label(ssh: &SshHost) -> String {
    match ssh.port {
        Some(port) => format!("{}:{port}", ssh.host),
        None => ssh.host.clone(),
    }
}

/// Reads `path` and returns environment `name` (every environment of the file is checked).
pub fn load(path: &Path, name: &str) -> Result<Environment> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read {} (the deploy environments); create it (see README, deploy.yaml) or point --deploy-config at it",
            path.display()
        )
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut all = parse(&text, &path.display().to_string(), base)?;
    match all.iter().position(|e| e.name == name) {
        Some(i) => Ok(all.swap_remove(i)),
        None => {
            let names: Vec<&str> = all.iter().map(|e| e.name.as_str()).collect();
            bail!(
                "unknown environment {name:?} in {}: it has {}",
                path.display(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )
        }
    }
}

const KEYS: [&str; 14] = [
    "kind",
    "hosts",
    "manager",
    "env_file",
    "dir",
    "stack",
    "ssh_config",
    "strategy",
    "canary",
    "canary_wait",
    "wave",
    "keep_backups",
    "min_free_disk",
    "tls",
];

/// Every environment of the file `text` (named `file` in errors); relative paths are taken
/// from `base`.
pub fn parse(text: &str, file: &str, base: &Path) -> Result<Vec<Environment>> {
    let docs = MarkedYaml::load_from_str(text).map_err(|err| {
        anyhow::anyhow!(
            "{file}:{}: not valid YAML: {}",
            err.marker().line(),
            err.info()
        )
    })?;
    let at = |node: &MarkedYaml, what: String| -> anyhow::Error {
        anyhow::anyhow!("{file}:{}: {what}", node.span.start.line())
    };
    let Some(root) = docs.first() else {
        bail!("{file}: empty; expected `environments:` with at least one environment");
    };
    let top =
        mapping(root).ok_or_else(|| at(root, "expected a mapping with `environments:`".into()))?;
    let mut environments = None;
    for (key, value) in top {
        match key.data.as_str() {
            Some("environments") => environments = Some(value),
            _ => {
                return Err(at(
                    key,
                    format!("unknown key {} (expected `environments:`)", show(key)),
                ))
            }
        }
    }
    let environments = environments.ok_or_else(|| at(root, "no `environments:` key".into()))?;
    let envs = mapping(environments).ok_or_else(|| {
        at(
            environments,
            "`environments` must map names to settings".into(),
        )
    })?;
    let mut out = Vec::new();
    for (name_node, body) in envs {
        let name = name_node
            .data
            .as_str()
            .filter(|n| valid_name(n))
            .ok_or_else(|| {
                at(
                    name_node,
                    format!(
                        "invalid environment name {}: lowercase letters, digits, '-' and '_'",
                        show(name_node)
                    ),
                )
            })?
            .to_string();
        let fields = mapping(body).ok_or_else(|| {
            at(
                body,
                format!("environment {name}: expected a mapping of settings"),
            )
        })?;
        let mut get = std::collections::BTreeMap::new();
        for (key, value) in fields {
            let k = key.data.as_str().unwrap_or_default();
            if !KEYS.contains(&k) {
                return Err(at(
                    key,
                    format!(
                        "unknown key {} in environment {name} (known: {})",
                        show(key),
                        KEYS.join(", ")
                    ),
                ));
            }
            get.insert(k, value);
        }
        let key = |k: &str| format!("environments.{name}.{k}");
        let string = |k: &str| -> Result<Option<String>> {
            match get.get(k) {
                None => Ok(None),
                Some(node) => scalar(node)
                    .map(Some)
                    .ok_or_else(|| at(node, format!("{}: expected a single value", key(k)))),
            }
        };
        let parsed = |k: &str, f: &dyn Fn(&str) -> Result<()>| -> Result<()> {
            if let (Some(node), Some(v)) = (get.get(k), string(k)?) {
                f(&v).map_err(|e| at(node, format!("{}: {e:#}", key(k))))?;
            }
            Ok(())
        };

        let kind = match string("kind")?.as_deref() {
            None | Some("compose") => Kind::Compose,
            Some("swarm") => Kind::Swarm,
            Some(other) => {
                return Err(at(
                    get["kind"],
                    format!(
                        "{}: unknown kind {other:?} (expected compose or swarm)",
                        key("kind")
                    ),
                ))
            }
        };
        if kind == Kind::Swarm {
            // A swarm is reached through its manager; the Compose-host settings do not apply.
            for k in [
                "hosts",
                "dir",
                "strategy",
                "canary",
                "canary_wait",
                "wave",
                "tls",
            ] {
                if let Some(node) = get.get(k) {
                    return Err(at(
                        node,
                        format!(
                            "{}: not for a swarm environment (it has `manager:`)",
                            key(k)
                        ),
                    ));
                }
            }
            let node = get.get("manager").ok_or_else(|| {
                at(
                    body,
                    format!("swarm environment {name} has no `manager:` ([user@]host[:port])"),
                )
            })?;
            let spec = scalar(node).ok_or_else(|| {
                at(
                    node,
                    format!("{}: expected [user@]host[:port]", key("manager")),
                )
            })?;
            let manager =
                parse_host(&spec).map_err(|e| at(node, format!("{}: {e:#}", key("manager"))))?;
            parsed("stack", &|v| check_stack(v))?;
            parsed("keep_backups", &|v| {
                v.parse::<usize>()
                    .map(drop)
                    .map_err(|_| anyhow::anyhow!("{v:?} is not a number"))
            })?;
            parsed("min_free_disk", &|v| parse_size(v).map(drop))?;
            out.push(Environment {
                name: name.clone(),
                kind,
                hosts: Vec::new(),
                manager: Some(manager),
                env_file: string("env_file")?.map(|p| base.join(p)),
                dir: None,
                stack: string("stack")?,
                ssh_config: string("ssh_config")?.map(|p| base.join(p)),
                strategy: None,
                canary: 0,
                canary_wait: None,
                wave: None,
                keep_backups: string("keep_backups")?.map(|v| v.parse()).transpose()?,
                min_free_disk: string("min_free_disk")?
                    .map(|v| parse_size(&v))
                    .transpose()?,
                tls: None,
            });
            continue;
        }
        for k in ["manager", "env_file"] {
            if let Some(node) = get.get(k) {
                return Err(at(node, format!("{}: only for `kind: swarm`", key(k))));
            }
        }

        let hosts_node = get
            .get("hosts")
            .ok_or_else(|| at(body, format!("environment {name} has no `hosts:`")))?;
        let YamlData::Sequence(items) = &hosts_node.data else {
            return Err(at(
                hosts_node,
                format!("{}: expected a list of [user@]host[:port]", key("hosts")),
            ));
        };
        if items.is_empty() {
            return Err(at(
                hosts_node,
                format!("{}: the list is empty", key("hosts")),
            ));
        }
        let absolute = |node: &MarkedYaml, k: &str, dir: &str| -> Result<()> {
            if dir.starts_with('/') && !dir.contains(['\0', '\n']) {
                Ok(())
            } else {
                Err(at(
                    node,
                    format!(
                        "{}: {dir:?} must be an absolute path on the hosts (e.g. /srv/crm)",
                        key(k)
                    ),
                ))
            }
        };
        let dir = string("dir")?;
        if let (Some(node), Some(dir)) = (get.get("dir"), &dir) {
            absolute(node, "dir", dir)?;
        }
        let mut hosts: Vec<Host> = Vec::new();
        for item in items {
            // `user@host[:port]`, or `{host: user@host[:port], dir: /path}`.
            let (spec, own_dir) = match (&item.data, mapping(item)) {
                (_, Some(fields)) => {
                    let mut spec = None;
                    let mut own = None;
                    for (k, v) in fields {
                        match k.data.as_str() {
                            Some("host") => spec = scalar(v),
                            Some("dir") => {
                                let d = scalar(v).unwrap_or_default();
                                absolute(v, "hosts.dir", &d)?;
                                own = Some(d);
                            }
                            _ => {
                                return Err(at(
                                    k,
                                    format!("unknown key {} in a host of environment {name} (known: host, dir)", show(k)),
                                ))
                            }
                        }
                    }
                    let spec = spec.ok_or_else(|| {
                        at(
                            item,
                            format!("{}: a host entry needs `host:`", key("hosts")),
                        )
                    })?;
                    (spec, own)
                }
                _ => (
                    scalar(item).ok_or_else(|| {
                        at(
                            item,
                            format!("{}: expected [user@]host[:port]", key("hosts")),
                        )
                    })?,
                    None,
                ),
            };
            let ssh =
                parse_host(&spec).map_err(|e| at(item, format!("{}: {e:#}", key("hosts"))))?;
            if own_dir.is_none() && dir.is_none() {
                return Err(at(
                    item,
                    format!("{}: {spec} has no deploy directory: set `dir:` for the environment or the host", key("hosts")),
                ));
            }
            // The same machine twice (whatever the user) would deploy to one directory twice.
            let same_dir =
                |h: &Host| h.dir.as_ref().or(dir.as_ref()) == own_dir.as_ref().or(dir.as_ref());
            if let Some(first) = hosts.iter().find(|h| {
                h.ssh.host == ssh.host
                    && h.ssh.port.unwrap_or(22) == ssh.port.unwrap_or(22)
                    && same_dir(h)
            }) {
                return Err(at(
                    item,
                    format!(
                        "{}: {spec} appears twice (also as {}); list each host once",
                        key("hosts"),
                        first.spec
                    ),
                ));
            }
            hosts.push(Host {
                spec,
                ssh,
                dir: own_dir,
            });
        }

        parsed("stack", &|v| check_stack(v))?;
        parsed("strategy", &|v| match v {
            "rolling" | "recreate" => Ok(()),
            _ => bail!("unknown strategy {v:?} (rolling or recreate)"),
        })?;
        let canary = match (get.get("canary"), string("canary")?) {
            (Some(node), Some(spec)) => find_host(&hosts, &spec).ok_or_else(|| {
                at(
                    node,
                    format!("{}: {spec:?} is not one of the hosts", key("canary")),
                )
            })?,
            _ => 0,
        };
        parsed("canary_wait", &|v| parse_duration(v).map(drop))?;
        parsed("wave", &|v| Wave::parse(v).map(drop))?;
        parsed("keep_backups", &|v| {
            v.parse::<usize>()
                .map(drop)
                .map_err(|_| anyhow::anyhow!("{v:?} is not a number"))
        })?;
        parsed("min_free_disk", &|v| parse_size(v).map(drop))?;

        // `tls: {cert: /path/fullchain.pem, key: /path/privkey.pem}`, both paths on the hosts.
        let tls = match get.get("tls") {
            None => None,
            Some(node) => {
                let fields = mapping(node).ok_or_else(|| {
                    at(
                        node,
                        format!("{}: expected `{{cert: PATH, key: PATH}}`", key("tls")),
                    )
                })?;
                let (mut cert, mut tls_key) = (None, None);
                for (k, v) in fields {
                    let slot = match k.data.as_str() {
                        Some("cert") => &mut cert,
                        Some("key") => &mut tls_key,
                        _ => {
                            return Err(at(
                                k,
                                format!(
                                    "unknown key {} in {} (known: cert, key)",
                                    show(k),
                                    key("tls")
                                ),
                            ))
                        }
                    };
                    *slot = Some(
                        scalar(v)
                            .ok_or_else(|| at(v, format!("{}: expected a path", key("tls"))))?,
                    );
                }
                let (Some(cert), Some(tls_key)) = (cert, tls_key) else {
                    return Err(at(
                        node,
                        format!("{}: needs both `cert:` and `key:`", key("tls")),
                    ));
                };
                Some(
                    crate::deploy::tls::TlsFiles::new(&cert, &tls_key)
                        .map_err(|e| at(node, format!("{}: {e:#}", key("tls"))))?,
                )
            }
        };

        out.push(Environment {
            name: name.clone(),
            kind,
            hosts,
            manager: None,
            env_file: None,
            dir,
            stack: string("stack")?,
            ssh_config: string("ssh_config")?.map(|p| base.join(p)),
            strategy: string("strategy")?,
            canary,
            canary_wait: string("canary_wait")?
                .map(|v| parse_duration(&v))
                .transpose()?,
            wave: string("wave")?.map(|v| Wave::parse(&v)).transpose()?,
            keep_backups: string("keep_backups")?.map(|v| v.parse()).transpose()?,
            min_free_disk: string("min_free_disk")?
                .map(|v| parse_size(&v))
                .transpose()?,
            tls,
        });
    }
    Ok(out)
}

fn mapping<'a, 'b>(
    node: &'b MarkedYaml<'a>,
) -> Option<&'b saphyr::AnnotatedMapping<'a, MarkedYaml<'a>>> {
    match &node.data {
        YamlData::Mapping(m) => Some(m),
        _ => None,
    }
}

/// A scalar as text (`1`, `true`, `30s` alike); None for a list or mapping.
fn scalar(node: &MarkedYaml) -> Option<String> {
    match &node.data {
        YamlData::Value(value) => match value {
            saphyr::Scalar::String(s) => Some(s.to_string()),
            saphyr::Scalar::Integer(i) => Some(i.to_string()),
            saphyr::Scalar::FloatingPoint(f) => Some(f.to_string()),
            saphyr::Scalar::Boolean(b) => Some(b.to_string()),
            saphyr::Scalar::Null => None,
        },
        _ => None,
    }
}

fn show(node: &MarkedYaml) -> String {
    format!("{:?}", scalar(node).unwrap_or_else(|| "?".into()))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// A Compose project name prefix: lowercase letters, digits, '-' and '_', starting with a letter
/// or digit.
pub fn check_stack(stack: &str) -> Result<()> {
    let valid = valid_name(stack) && stack.starts_with(|c: char| c.is_ascii_alphanumeric());
    if !valid {
        bail!("invalid stack {stack:?}: lowercase letters, digits, '-' and '_' (a Compose project name)");
    }
    Ok(())
}

/// `500ms`, `30s`, `2m`, `1h` (a unit is required: a bare `10` could mean anything).
pub fn parse_duration(text: &str) -> Result<Duration> {
    let bad =
        || anyhow::anyhow!("invalid duration {text:?}: a number and a unit, e.g. 30s, 2m, 500ms");
    let t = text.trim();
    let (number, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = number.parse().map_err(|_| bad())?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(bad()),
    })
}

/// `1GiB`, `500MiB`, `2G`, `1024` (bytes): binary units.
pub fn parse_size(text: &str) -> Result<u64> {
    let bad = || anyhow::anyhow!("invalid size {text:?}: a number and a unit, e.g. 1GiB, 500MiB");
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let scale: u64 = match unit {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        _ => return Err(bad()),
    };
    n.checked_mul(scale).ok_or_else(bad)
}

/// `1.0 GiB`, for messages.
pub fn show_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "\
# comment
environments:
  production:
    hosts:
      - deploy@web1.example.com
      - deploy@web2.example.com:2222
      - web3.example.com
    dir: /srv/crm
    stack: crm
    ssh_config: ci/ssh_config
    strategy: rolling
    canary: web2.example.com
    canary_wait: 30s
    wave: 50%
    keep_backups: 3
    min_free_disk: 2GiB
  staging:
    hosts: [deploy@staging.example.com]
    dir: /srv/crm-staging
";

    fn err(text: &str) -> String {
        format!(
            "{:#}",
            parse(text, "deploy.yaml", Path::new("/repo")).unwrap_err()
        )
    }

    #[test]
    fn environments_become_typed_values() {
        let envs = parse(EXAMPLE, "deploy.yaml", Path::new("/repo")).unwrap();
        let prod = &envs[0];
        assert_eq!(prod.name, "production");
        assert_eq!(prod.kind, Kind::Compose);
        assert_eq!(prod.hosts.len(), 3);
        assert_eq!(prod.hosts[1].ssh.port, Some(2222));
        assert_eq!(prod.hosts[1].spec, "deploy@web2.example.com:2222");
        assert_eq!(prod.dir.as_deref(), Some("/srv/crm"));
        assert_eq!(prod.ssh_config, Some(PathBuf::from("/repo/ci/ssh_config")));
        assert_eq!(prod.canary, 1);
        assert_eq!(prod.canary_wait, Some(Duration::from_secs(30)));
        assert_eq!(prod.wave, Some(Wave::Percent(50)));
        assert_eq!(prod.keep_backups, Some(3));
        assert_eq!(prod.min_free_disk, Some(2 << 30));
        assert_eq!(prod.strategy.as_deref(), Some("rolling"));
        let staging = &envs[1];
        assert_eq!(
            (staging.canary, staging.stack.as_deref(), staging.wave),
            (0, None, None)
        );
        assert_eq!(find_host(&prod.hosts, "web3.example.com"), Some(2));
        assert_eq!(find_host(&prod.hosts, "web2.example.com:2222"), Some(1));
        assert_eq!(find_host(&prod.hosts, "web9"), None);
    }

    #[test]
    fn hosts_may_name_their_own_directory() {
        let text = "environments:\n  t:\n    hosts:\n      - {host: root@10.0.0.11, dir: /tmp/m1}\n      - root@10.0.0.12\n      - {host: root@10.0.0.11, dir: /tmp/m1b}\n    dir: /srv/crm\n";
        let envs = parse(text, "deploy.yaml", Path::new("/repo")).unwrap();
        let dirs: Vec<Option<&str>> = envs[0].hosts.iter().map(|h| h.dir.as_deref()).collect();
        assert_eq!(dirs, [Some("/tmp/m1"), None, Some("/tmp/m1b")]);
        let e = err(&text.replace("/tmp/m1b", "/tmp/m1"));
        assert!(e.contains("appears twice"), "{e}");
    }

    #[test]
    fn tls_names_two_paths_on_the_hosts() {
        let base = "environments:\n  p:\n    hosts: [a]\n    dir: /x\n";
        let envs = parse(
            &format!(
                "{base}    tls: {{cert: /srv/tls/fullchain.pem, key: /srv/tls/privkey.pem}}\n"
            ),
            "deploy.yaml",
            Path::new("/repo"),
        )
        .unwrap();
        assert_eq!(
            envs[0].tls,
            Some(
                crate::deploy::tls::TlsFiles::new("/srv/tls/fullchain.pem", "/srv/tls/privkey.pem")
                    .unwrap()
            )
        );
        assert_eq!(parse(base, "d", Path::new("/")).unwrap()[0].tls, None);
        let e = err(&format!("{base}    tls: {{cert: /c}}\n"));
        assert!(
            e.starts_with("deploy.yaml:5: environments.p.tls: needs both"),
            "{e}"
        );
        let e = err(&format!(
            "{base}    tls: {{cert: /c, key: /k, chain: /x}}\n"
        ));
        assert!(
            e.contains("unknown key \"chain\" in environments.p.tls"),
            "{e}"
        );
        let e = err(&format!("{base}    tls: {{cert: c.pem, key: /k}}\n"));
        assert!(
            e.contains("environments.p.tls: invalid TLS certificate path \"c.pem\""),
            "{e}"
        );
        let e = err(&format!("{base}    tls: /c\n"));
        assert!(e.contains("expected `{cert: PATH, key: PATH}`"), "{e}");
    }

    #[test]
    fn the_committed_example_parses() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy.yaml"))
            .unwrap();
        let envs = parse(&text, "deploy.yaml", Path::new("/repo")).unwrap();
        assert!(envs.iter().any(|e| e.name == "production"), "{envs:?}");
    }

    #[test]
    fn mistakes_are_one_line_naming_the_file_line_and_key() {
        let e = err(&EXAMPLE.replace("    wave: 50%", "    wav: 50%"));
        assert!(
            e.starts_with("deploy.yaml:14: unknown key \"wav\" in environment production"),
            "{e}"
        );
        let e = err(&EXAMPLE.replace("web3.example.com", "web1.example.com:22"));
        assert!(
            e.starts_with("deploy.yaml:7: environments.production.hosts: web1.example.com:22 appears twice (also as deploy@web1.example.com)"),
            "{e}"
        );
        let e = err(&EXAMPLE.replace("canary: web2.example.com", "canary: web9"));
        assert!(
            e.contains("environments.production.canary: \"web9\" is not one of the hosts"),
            "{e}"
        );
        let e = err(&EXAMPLE.replace("wave: 50%", "wave: 0"));
        assert!(
            e.contains("deploy.yaml:14: environments.production.wave: invalid wave"),
            "{e}"
        );
        let e = err(&EXAMPLE.replace("- web3.example.com", "- -oProxyCommand=x"));
        assert!(e.contains("invalid --host"), "{e}");
        let e = err(&EXAMPLE.replace("dir: /srv/crm\n", "dir: srv\n"));
        assert!(e.contains("must be an absolute path"), "{e}");
        let e = err(&EXAMPLE.replace("strategy: rolling", "strategy: yolo"));
        assert!(e.contains("unknown strategy \"yolo\""), "{e}");
        let e = err("environments:\n  prod:\n    hosts: [a]\n    dir: /x\n    kind: swarm\n");
        assert!(
            e.contains("environments.prod.hosts: not for a swarm environment"),
            "{e}"
        );
        let e = err("environments:\n  prod:\n    kind: swarm\n");
        assert!(
            e.contains("swarm environment prod has no `manager:`"),
            "{e}"
        );
        let e = err("environments:\n  prod:\n    kind: swarm\n    manager: -oProxyCommand=x\n");
        assert!(
            e.contains("environments.prod.manager: invalid --host"),
            "{e}"
        );
        let e = err("environments:\n  prod:\n    hosts: [a]\n    dir: /x\n    manager: a\n");
        assert!(
            e.contains("environments.prod.manager: only for `kind: swarm`"),
            "{e}"
        );
        let e = err("environments:\n  prod:\n    kind: kubernetes\n");
        assert!(
            e.contains("unknown kind \"kubernetes\" (expected compose or swarm)"),
            "{e}"
        );
        let e = err("environments:\n  prod:\n    dir: /x\n");
        assert!(e.contains("has no `hosts:`"), "{e}");
        let e = err("environments:\n  prod:\n    hosts: [a]\n");
        assert!(e.contains("a has no deploy directory"), "{e}");
        let e = err("environments:\n  prod:\n    hosts: [{host: a, dirr: /x}]\n");
        assert!(e.contains("unknown key \"dirr\" in a host"), "{e}");
        let e = err("environments:\n  prod:\n    hosts: [{host: a, dir: x}]\n");
        assert!(e.contains("must be an absolute path"), "{e}");
        let e = err("envs: {}\n");
        assert!(e.starts_with("deploy.yaml:1: unknown key \"envs\""), "{e}");
        let e = err("environments: [\n");
        assert!(e.starts_with("deploy.yaml:"), "{e}");
        for e in [
            err(&EXAMPLE.replace("    wave: 50%", "    wav: 50%")),
            err("environments:\n  prod:\n    dir: /x\n"),
        ] {
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn a_swarm_environment_names_its_manager() {
        let all = parse(
            "environments:\n  cluster:\n    kind: swarm\n    manager: root@10.0.0.1:2222\n    stack: shop\n    env_file: secrets/swarm.env\n    ssh_config: ssh_config\n",
            "deploy.yaml",
            Path::new("/repo"),
        )
        .unwrap();
        let e = &all[0];
        assert_eq!(e.kind, Kind::Swarm);
        assert!(e.hosts.is_empty());
        let m = e.manager.as_ref().unwrap();
        assert_eq!((m.host.as_str(), m.port), ("10.0.0.1", Some(2222)));
        assert_eq!(e.stack.as_deref(), Some("shop"));
        assert_eq!(
            e.env_file.as_deref(),
            Some(Path::new("/repo/secrets/swarm.env"))
        );
        assert_eq!(e.ssh_config.as_deref(), Some(Path::new("/repo/ssh_config")));
    }

    #[test]
    fn unknown_environment_names_the_known_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deploy.yaml");
        std::fs::write(&path, EXAMPLE).unwrap();
        let e = load(&path, "prod").unwrap_err().to_string();
        assert!(e.starts_with("unknown environment \"prod\" in "), "{e}");
        assert!(e.ends_with("it has production, staging"), "{e}");
        assert_eq!(
            load(&path, "staging").unwrap().dir.as_deref(),
            Some("/srv/crm-staging")
        );
        let e = format!(
            "{:#}",
            load(&dir.path().join("nope.yaml"), "x").unwrap_err()
        );
        assert!(e.starts_with("cannot read "), "{e}");
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        for bad in ["", "10", "s", "1.5s", "-1s", "3d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("500M").unwrap(), 500 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        for bad in ["", "GiB", "1.5G", "1PB", "99999999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(show_size(1 << 30), "1.0 GiB");
        assert_eq!(show_size(512), "512 B");
    }
}
