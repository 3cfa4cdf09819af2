//! The stack's database, PostgreSQL (service `db` of compose.yaml, the image of docker/db), as
//! every kind of target runs it: one server per Compose host (its own project `STACK-db`), one
//! task on a swarm (see `swarm_db.rs`). What both share is here: the names the app and the
//! release command use, and the commands run by `docker exec` in the db container (dumps,
//! restores, the dumps' list), built by pure functions (unit-tested argv).
//!
//! php, worker, db and a release command meet on the network `STACK_db`, which no nginx and no
//! edge joins (an nginx resolves "php" on its own networks and must only find its own color's).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cmd::Cmd;
use crate::deploy::remote::Remote;
use crate::secret::Secret;

/// The service name in compose.yaml.
pub const SERVICE: &str = "db";
/// The database and its user (compose.yaml's x-php environment, the image's defaults).
pub const NAME: &str = "crm";
pub const USER: &str = "crm";
/// What a release command gets to reach db, as php does (compose.yaml's x-php).
pub const CLIENT_ENV: [(&str, &str); 3] =
    [("DB_HOST", SERVICE), ("DB_NAME", NAME), ("DB_USER", USER)];
/// Where the password file is in every container that reads it (compose.yaml's `db_password`
/// secret: a swarm secret, or on Compose a file of the target, see [`PASSWORD_FILE`]).
pub const PASSWORD_PATH: &str = "/run/secrets/db_password";
/// A Compose target's password file, relative to its directory: made once by the first deploy
/// (or `up`), never in an image, an argument or `docker inspect` (only its path is).
pub const PASSWORD_FILE: &str = ".deploy/secrets/db_password";
/// Where the dumps are in the db container (swarm: the `db-backups` volume; Compose: the
/// target's `backups/` directory, bind-mounted).
pub const DUMPS: &str = "/var/lib/postgresql/backups";

/// The network php, worker, db and the release command share (compose.yaml's `db` network).
pub fn network(stack: &str) -> String {
    format!("{stack}_{SERVICE}")
}

/// `docker exec` in the db container, as `user` (`UID:GID`) or else the container's own
/// (postgres).
fn exec(container: &str, user: Option<&str>) -> Cmd {
    let cmd = Cmd::new("docker").arg("exec");
    let cmd = match user {
        Some(user) => cmd.args(["--user", user]),
        None => cmd,
    };
    cmd.arg(container)
}

/// A dump of the database into `DUMPS/name` (custom format: compressed, restorable with
/// `--clean`), written as `user` (Compose: the owner of the target's `backups/`, so the file is
/// theirs from the start) or else as postgres (a swarm's volume). The local socket trusts every
/// OS user of the container (docker/db's entrypoint).
pub fn dump(container: &str, user: Option<&str>, name: &str) -> Cmd {
    exec(container, user).args([
        "pg_dump",
        "--username",
        USER,
        "--dbname",
        NAME,
        "--format",
        "custom",
        "--file",
        &format!("{DUMPS}/{name}"),
    ])
}

/// Where a dump is written before it is complete: a name no listing takes for a dump, so a
/// dump cut short (its deploy killed) is never offered to a restore.
pub fn partial(name: &str) -> String {
    format!("{name}.partial")
}

/// The complete dump renamed to its own name, in the container (a swarm's volume; a Compose
/// target renames the file in its own `backups/`).
pub fn finish_dump(container: &str, name: &str) -> Cmd {
    exec(container, None).args([
        "mv",
        &format!("{DUMPS}/{}", partial(name)),
        &format!("{DUMPS}/{name}"),
    ])
}

/// The dump `name` put back: every object it holds dropped and recreated, in one transaction
/// (a failure changes nothing; the app's queries wait for it, none fails).
pub fn restore(container: &str, root: bool, name: &str) -> Cmd {
    exec(container, root.then_some("root")).args([
        "pg_restore",
        "--username",
        USER,
        "--dbname",
        NAME,
        "--clean",
        "--if-exists",
        "--single-transaction",
        "--exit-on-error",
        &format!("{DUMPS}/{name}"),
    ])
}

pub fn list(container: &str) -> Cmd {
    Cmd::new("docker").args(["exec", container, "ls", "-1", DUMPS])
}

pub fn remove(container: &str, names: &[String]) -> Cmd {
    Cmd::new("docker")
        .args(["exec", container, "rm", "-f"])
        .args(names.iter().map(|n| format!("{DUMPS}/{n}")))
}

/// Whether the server accepts connections (its image's health check, asked now).
pub fn ready(container: &str) -> Cmd {
    Cmd::new("docker").args([
        "exec",
        container,
        "pg_isready",
        "--quiet",
        "--host",
        "/var/run/postgresql",
        "--dbname",
        NAME,
        "--username",
        USER,
    ])
}

/// `--env KEY=VALUE` for each of `env` (e.g. [`CLIENT_ENV`]).
pub fn env_args(env: &[(&str, &str)]) -> Vec<String> {
    env.iter()
        .flat_map(|(key, value)| ["--env".to_string(), format!("{key}={value}")])
        .collect()
}

/// A container's `docker run` arguments that give it the target's password `file`, mounted
/// read-only where php has it (`inspect` shows the path, never the value).
pub fn password_file_args(file: &str) -> [String; 4] {
    [
        "--volume".into(),
        format!("{file}:{PASSWORD_PATH}:ro"),
        "--env".into(),
        format!("DB_PASSWORD_FILE={PASSWORD_PATH}"),
    ]
}

/// Asks [`ready`] of `container` every 250 ms until it answers or `limit` passed; whether it
/// did (a first start creates the cluster before the server answers).
pub fn wait_ready(remote: &Remote, container: &str, limit: Duration) -> Result<bool> {
    let start = Instant::now();
    while !remote.succeeds(ready(container))? {
        if start.elapsed() > limit {
            return Ok(false);
        }
        crate::interrupt::check()?;
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(true)
}

/// A dump `name` taken in a swarm's `container`: written as its [`partial`], then renamed, so a
/// dump cut short is never listed.
pub fn dump_commands(container: &str, name: &str) -> [Cmd; 2] {
    [
        dump(container, None, &partial(name)),
        finish_dump(container, name),
    ]
}

/// Makes the password file `path` (absolute) when it is missing or empty: a fresh random value,
/// written whole (a temporary file renamed, never over one a concurrent run made first). The
/// value goes on a child's stdin only.
pub fn ensure_password(remote: &Remote, path: &str) -> Result<()> {
    if remote.succeeds(Cmd::new("test").args(["-s", path]))? {
        return Ok(());
    }
    let secret = Secret::random().context("cannot make a random database password")?;
    for cmd in password_commands(path, &secret) {
        remote.run(cmd).with_context(|| {
            format!(
                "cannot write the database password file {path} on {}",
                remote.target.describe()
            )
        })?;
    }
    Ok(())
}

/// The file in a 0700 directory (only the deploying user reaches it on the target), itself
/// 0644: Compose bind-mounts it as it is, and php (uid 1000) and postgres read it.
pub fn password_commands(path: &str, secret: &Secret) -> [Cmd; 5] {
    let dir = path.rsplit_once('/').map_or(".", |(dir, _)| dir);
    let temp = format!("{path}.xtask-new");
    [
        Cmd::new("mkdir").args(["-p", "-m", "0700", dir]),
        Cmd::new("dd")
            .arg(format!("of={temp}"))
            .arg("status=none")
            .stdin(secret.expose().as_bytes().to_vec()),
        Cmd::new("chmod").args(["0644", &temp]),
        Cmd::new("mv").args(["-n", &temp, path]),
        Cmd::new("rm").args(["-f", &temp]),
    ]
}

/// A dump's name: `db-<time>-<label>.dump`, so names sort by time.
pub fn dump_name(stamp: &str, label: &str) -> String {
    format!("db-{stamp}-{label}.dump")
}

/// A name `backup --restore` accepts: a dump's file name, nothing that reaches another path.
pub fn is_dump_name(name: &str) -> bool {
    name.starts_with("db-")
        && name.ends_with(".dump")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// The first name `dump_name(stamp, label)`, `...-label-2`... not in `existing`: a dump is
/// never overwritten, even by two in the same second.
pub fn new_dump_name(existing: &[String], label: &str) -> String {
    let stamp: String = crate::project::now_rfc3339()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let mut name = dump_name(&stamp, label);
    for n in 2.. {
        if !existing.contains(&name) {
            break;
        }
        name = dump_name(&stamp, &format!("{label}-{n}"));
    }
    name
}

/// The dump names of a listing, oldest first.
pub fn dumps_of(listing: &str) -> Vec<String> {
    let mut names: Vec<String> = listing
        .lines()
        .filter(|n| is_dump_name(n))
        .map(String::from)
        .collect();
    names.sort();
    names
}

/// The tag of the db image a compose file names (`.../crm-gdb_db:0.6.0`).
pub fn image_tag(file: &str) -> Option<String> {
    let at = file.find(&format!("/{}:", crate::config::DB))?;
    let rest = &file[at + crate::config::DB.len() + 2..];
    let tag: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect();
    (!tag.is_empty()).then_some(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dumps_and_restores_run_in_the_db_container() {
        assert_eq!(
            dump("c1", None, "db-1-a.dump").argv(),
            [
                "docker",
                "exec",
                "c1",
                "pg_dump",
                "--username",
                "crm",
                "--dbname",
                "crm",
                "--format",
                "custom",
                "--file",
                "/var/lib/postgresql/backups/db-1-a.dump"
            ]
        );
        // Compose: written as the owner of the target's backups/.
        let d = dump("c1", Some("1000:1000"), "db-1-a.dump")
            .argv()
            .join(" ");
        assert!(
            d.starts_with("docker exec --user 1000:1000 c1 pg_dump "),
            "{d}"
        );
        assert!(!is_dump_name(&partial("db-1-a.dump")));
        // Swarm: dump, then rename, both in the container.
        assert_eq!(
            dump_commands("c1", "db-1-a.dump").map(|c| c.argv()[c.argv().len() - 3..].join(" ")),
            [
                "custom --file /var/lib/postgresql/backups/db-1-a.dump.partial",
                "mv /var/lib/postgresql/backups/db-1-a.dump.partial /var/lib/postgresql/backups/db-1-a.dump"
            ]
        );
        let r = restore("c1", false, "db-1-a.dump").argv().join(" ");
        assert!(
            r.starts_with("docker exec c1 pg_restore --username crm --dbname crm --clean --if-exists --single-transaction"),
            "{r}"
        );
        assert_eq!(
            remove("c1", &["db-1-a.dump".into()]).argv(),
            [
                "docker",
                "exec",
                "c1",
                "rm",
                "-f",
                "/var/lib/postgresql/backups/db-1-a.dump"
            ]
        );
        assert_eq!(
            ready("c1").argv().join(" "),
            "docker exec c1 pg_isready --quiet --host /var/run/postgresql --dbname crm --username crm"
        );
    }

    #[test]
    fn the_password_file_is_written_whole_and_only_its_directory_is_private() {
        let secret = Secret::new("pw-0123");
        let cmds = password_commands("/srv/crm/.deploy/secrets/db_password", &secret);
        let argv: Vec<String> = cmds.iter().map(|c| c.argv().join(" ")).collect();
        assert_eq!(
            argv,
            [
                "mkdir -p -m 0700 /srv/crm/.deploy/secrets",
                "dd of=/srv/crm/.deploy/secrets/db_password.xtask-new status=none",
                "chmod 0644 /srv/crm/.deploy/secrets/db_password.xtask-new",
                "mv -n /srv/crm/.deploy/secrets/db_password.xtask-new /srv/crm/.deploy/secrets/db_password",
                "rm -f /srv/crm/.deploy/secrets/db_password.xtask-new",
            ]
        );
        assert_eq!(cmds[1].stdin.as_deref(), Some(&b"pw-0123"[..]));
        assert!(!argv.concat().contains("pw-0123"));
    }

    #[test]
    fn dump_names_are_checked_and_never_reused() {
        assert!(is_dump_name(&dump_name("20261201T100000Z", "1.4.0")));
        for bad in [
            "db-1.dump/../x",
            "data-1.tar.gz",
            "db-1.dump.sh",
            "db-$(id).dump",
            "../db-1.dump",
        ] {
            assert!(!is_dump_name(bad), "{bad}");
        }
        assert_eq!(
            dumps_of("db-2-b.dump\nlost+found\ndb-1-a.dump\n"),
            ["db-1-a.dump", "db-2-b.dump"]
        );
        let first = new_dump_name(&[], "x");
        let second = new_dump_name(std::slice::from_ref(&first), "x");
        assert_ne!(first, second);
        assert!(is_dump_name(&first) && is_dump_name(&second), "{second}");
    }

    #[test]
    fn the_stack_file_gives_php_what_the_release_command_gets() {
        let file = include_str!("../../../compose.yaml");
        for (key, value) in CLIENT_ENV {
            assert!(file.contains(&format!("    {key}: {value}\n")), "{key}");
        }
        assert!(file.contains(&format!("DB_PASSWORD_FILE: {PASSWORD_PATH}\n")));
        assert!(file.contains("    name: ${CRM_STACK:-crm}_db\n    external: true\n"));
        let tag = image_tag(file).expect("the stack file names the db image");
        assert!(crate::reference::check_release_tag(&tag).is_ok(), "{tag}");
        assert_eq!(
            image_tag("image: r/crm-gdb_db:1.2.3\n").as_deref(),
            Some("1.2.3")
        );
        assert_eq!(network("e2e"), "e2e_db");
    }
}
