//! The release command: what a release declares must run once before it takes traffic (database
//! migrations, a cache warm-up), in the release's own image, with the target's `.env` and data.
//!
//! A release declares it in its php image, so it is versioned with the code it belongs to and
//! a deploy from any checkout (or a rollback) runs the command of the release it installs:
//!
//!   LABEL org.kiora.release-command='["php", "/var/www/app/bin/migrate.php"]'
//!
//! (exec form: a JSON array of strings, each one argument; no shell). A deploy reads the label
//! on the target once the image is pulled, runs it in a throwaway container (`docker run --rm`,
//! the builder of `exec --new`), or with `docker exec` in the release's php when a rolling
//! deploy has already started it (idle: nothing switches to it before the command succeeded),
//! after the backup and before anything switches, under the deploy lock (two deploys at once
//! cannot run it twice), and stops there when it fails: the live release never stopped
//! serving. An image without the label has no release command.
//!
//! The data is the stack's database server (see `db.rs`): the container joins the database's
//! network with the variables php gets. On a Compose target it gets the target's `.env` and
//! the password file mounted where php has it (`inspect` shows the path, never the value); on a
//! swarm the password arrives on its stdin (`DB_PASSWORD_FILE=php://stdin`), never in an
//! argument, a variable, a file or `inspect`.

use anyhow::{bail, Result};
use saphyr::{LoadableYamlNode, MarkedYaml, YamlData};

use crate::cmd::Cmd;
use crate::deploy::deployment::Deployment;
use crate::deploy::remote::Remote;
use crate::secret::Secret;

/// The image label that declares a release's command.
pub const LABEL: &str = "org.kiora.release-command";

/// How each line of the command's output is shown under the deploy's steps.
const PREFIX: &str = "  | ";

/// The release command of an image: one argument per string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseCommand(pub Vec<String>);

impl ReleaseCommand {
    /// Reads the label's value: empty (or Go's `<no value>`) means none; anything else must be
    /// a non-empty JSON array of strings.
    pub fn parse(label: &str) -> Result<Option<ReleaseCommand>> {
        let text = label.trim();
        if text.is_empty() || text == "<no value>" {
            return Ok(None);
        }
        let refuse = || {
            anyhow::anyhow!(
                "the label {LABEL} is {text:?}: it must be a JSON array of strings, e.g. [\"php\", \"bin/migrate.php\"]"
            )
        };
        if !text.starts_with('[') {
            return Err(refuse());
        }
        // A JSON array is a YAML flow sequence: the YAML reader the deploy config uses reads it.
        let docs = MarkedYaml::load_from_str(text).map_err(|_| refuse())?;
        let [doc] = docs.as_slice() else {
            return Err(refuse());
        };
        let YamlData::Sequence(items) = &doc.data else {
            return Err(refuse());
        };
        let words = items
            .iter()
            .map(|item| match &item.data {
                YamlData::Value(saphyr::Scalar::String(s)) => Some(s.to_string()),
                _ => None,
            })
            .collect::<Option<Vec<String>>>()
            .ok_or_else(refuse)?;
        if words.is_empty() || words[0].is_empty() {
            return Err(refuse());
        }
        Ok(Some(ReleaseCommand(words)))
    }

    /// The command as a person reads it (each word quoted for a shell only where needed).
    pub fn show(&self) -> String {
        let words: Vec<String> = self.0.iter().map(|w| crate::cmd::quote(w)).collect();
        words.join(" ")
    }
}

/// `docker image inspect` printing the label of `image` (empty, or `<no value>`, without it).
pub fn label_query(image: &str) -> Cmd {
    let format = format!("{{{{index .Config.Labels \"{LABEL}\"}}}}");
    Cmd::new("docker").args(["image", "inspect", "--format", &format, image])
}

fn container_name(stack: &str) -> String {
    format!("{stack}-release-{}", std::process::id())
}

/// The container of a release command working on a database server.
pub fn server_container(
    server: &Server,
    stack: &str,
    image: &str,
    env_file: Option<&str>,
    data_volume: Option<&str>,
    command: &ReleaseCommand,
) -> Cmd {
    let mut cmd = Cmd::new("docker").args(["run", "--rm"]);
    if let Password::Stdin(_) = server.password {
        cmd = cmd.arg("--interactive");
    }
    cmd = cmd
        .arg("--name")
        .arg(container_name(stack))
        .args(crate::docker::throwaway_label(stack))
        .args(["--network", server.network]);
    if let Some(env_file) = env_file {
        cmd = cmd.args(["--env-file", env_file]);
    }
    if let Some(volume) = data_volume {
        cmd = cmd
            .arg("--volume")
            .arg(format!("{volume}:{}", crate::deploy::ops::DATA_PATH));
    }
    cmd = cmd.args(crate::deploy::db::env_args(server.env));
    match server.password {
        Password::Stdin(password) => cmd
            .args(["--env", "DB_PASSWORD_FILE=php://stdin"])
            .arg(image)
            .args(command.0.iter().cloned())
            // The password, read once by the command (Database::password in the app).
            .stdin(password.expose().as_bytes().to_vec()),
        Password::File(path) => cmd
            .args(crate::deploy::db::password_file_args(path))
            .arg(image)
            .args(command.0.iter().cloned()),
    }
}

fn container_for(
    stack: &Stack,
    image: &str,
    env_file: Option<&str>,
    command: &ReleaseCommand,
) -> Cmd {
    server_container(&stack.db, stack.name, image, env_file, stack.data, command)
}

/// `docker exec` of a release command in a running php container of the release (a rolling
/// deploy starts them beside its backup): what a throwaway container would get on a Compose
/// target (the `.env`, the database's variables; the network, the data volume and the password
/// file are the container's own, as php has them), without a container to start.
pub fn in_container(
    container: &str,
    env_file: Option<&str>,
    env: &[(&str, &str)],
    command: &ReleaseCommand,
) -> Cmd {
    let mut cmd = Cmd::new("docker").arg("exec");
    if let Some(env_file) = env_file {
        cmd = cmd.args(["--env-file", env_file]);
    }
    cmd.args(crate::deploy::db::env_args(env))
        .arg("--env")
        .arg(format!(
            "DB_PASSWORD_FILE={}",
            crate::deploy::db::PASSWORD_PATH
        ))
        .arg(container)
        .args(command.0.iter().cloned())
}

/// Runs the release command of `image` (release `tag`) on the target, if it declares one: in
/// the php container `inside` when the release already runs there, else in a throwaway one. The
/// image must be on the target. Output is shown line by line as it comes; a failure is one line
/// naming the command and its exit status, and leaves no container of its own behind.
pub fn run(d: &Deployment, image: &str, tag: &str, inside: Option<&str>) -> Result<()> {
    let password = d.target().path(crate::deploy::db::PASSWORD_FILE);
    let network = crate::deploy::db::network(&d.stack);
    let data = d.data_volume();
    let stack = Stack {
        name: &d.stack,
        db: Server {
            network: &network,
            env: &crate::deploy::db::CLIENT_ENV,
            password: Password::File(&password),
        },
        env_file: Some(&d.target().path(".env")),
        data: Some(&data),
    };
    run_on(&d.remote, &stack, image, tag, inside)
}

/// Where a release command runs: the stack's name, its database and the `.env` it gets when
/// that file exists (None: none to look for, as on a swarm node).
pub struct Stack<'a> {
    pub name: &'a str,
    pub db: Server<'a>,
    pub env_file: Option<&'a str>,
    /// The data volume, mounted where php has it (Compose: the app imports the contacts of a
    /// SQLite file found there into a new database once; a swarm's nodes each have their own).
    pub data: Option<&'a str>,
}

/// A database server: the network to join, the variables that reach it (DB_HOST...), and its
/// password.
pub struct Server<'a> {
    pub network: &'a str,
    pub env: &'a [(&'a str, &'a str)],
    pub password: Password<'a>,
}

/// How the command gets the database password.
pub enum Password<'a> {
    /// On its stdin (a swarm: the value is in xtask's hands, nowhere on the manager).
    Stdin(&'a Secret),
    /// The target's password file, mounted read-only (a Compose target, `up`).
    File(&'a str),
}

/// [`run`] for any stack on `remote`'s target (`up` and `test-image`: a local one).
pub fn run_on(
    remote: &Remote,
    stack: &Stack,
    image: &str,
    tag: &str,
    inside: Option<&str>,
) -> Result<()> {
    let command_for = |env_file: Option<&str>, command: &ReleaseCommand| match inside {
        Some(container) => in_container(container, env_file, stack.db.env, command),
        None => container_for(stack, image, env_file, command),
    };
    let label = match remote.query(label_query(image)) {
        Ok(label) => label,
        // A dry run did not pull the image: say what would run.
        Err(_) if remote.dry_run() => {
            remote.say(format!(
                "  the command of the label {LABEL} of {image}, once pulled, as:"
            ));
            let placeholder = ReleaseCommand(vec![format!("<{LABEL}>")]);
            remote.streamed(command_for(None, &placeholder), "")?;
            return Ok(());
        }
        Err(err) => return Err(err.context(format!("reading the release command of {image}"))),
    };
    let Some(command) = ReleaseCommand::parse(&label)? else {
        remote.say(format!("  {tag} declares none (no label {LABEL})"));
        return Ok(());
    };
    let env_file = match stack.env_file {
        Some(path) => remote
            .succeeds(Cmd::new("test").args(["-f", path]))?
            .then_some(path),
        None => None,
    };
    remote.say(format!("  {}", command.show()));
    let cmd = command_for(env_file, &command);
    let status = remote.streamed(cmd, PREFIX);
    if !matches!(status, Ok(0)) && inside.is_none() {
        // Interrupted, or the client lost: the container must not run on (nor stay) unseen.
        // (In the release's php, the deploy's undo removes the container it runs in.)
        let _ =
            remote.cleanup(Cmd::new("docker").args(["rm", "--force", &container_name(stack.name)]));
    }
    match status? {
        0 => Ok(()),
        code => bail!(
            "the release command of {tag} (`{}`) failed with exit code {code} on {}; nothing was switched",
            command.show(),
            remote.target.describe()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_label_is_a_json_array_of_strings() {
        assert_eq!(
            ReleaseCommand::parse(r#"["php", "/var/www/app/bin/migrate.php"]"#).unwrap(),
            Some(ReleaseCommand(vec![
                "php".into(),
                "/var/www/app/bin/migrate.php".into()
            ]))
        );
        // Words stay whole: no shell ever splits or expands them.
        let odd = ReleaseCommand::parse(r#"["php", "-r", "echo $(id); rm -rf /", "a \"b\""]"#)
            .unwrap()
            .unwrap();
        assert_eq!(odd.0[2], "echo $(id); rm -rf /");
        assert_eq!(odd.0[3], "a \"b\"");
        assert_eq!(odd.show(), r#"php -r 'echo $(id); rm -rf /' 'a "b"'"#);
        for none in ["", "  ", "<no value>"] {
            assert_eq!(ReleaseCommand::parse(none).unwrap(), None, "{none:?}");
        }
        for bad in [
            "php bin/migrate.php",
            "[]",
            r#"[""]"#,
            "[php, 1]",
            r#"["php", ["x"]]"#,
            r#"{"cmd": "php"}"#,
            "[unclosed",
        ] {
            let err = ReleaseCommand::parse(bad).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("the label {LABEL} is ")),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn it_runs_in_a_throwaway_container_of_the_release_on_the_database_network() {
        let command = ReleaseCommand(vec!["php".into(), "bin/migrate.php".into()]);
        let password = Secret::new("db-password-0123");
        let server = Server {
            network: "crm_db",
            env: &[("DB_HOST", "db"), ("DB_NAME", "crm")],
            password: Password::Stdin(&password),
        };
        let cmd = server_container(&server, "crm", "r/crm-gdb_php:1.2.0", None, None, &command);
        assert_eq!(
            cmd.argv(),
            [
                "docker",
                "run",
                "--rm",
                "--interactive",
                "--name",
                &format!("crm-release-{}", std::process::id()),
                "--label",
                "org.kiora.crm.throwaway=crm",
                "--network",
                "crm_db",
                "--env",
                "DB_HOST=db",
                "--env",
                "DB_NAME=crm",
                "--env",
                "DB_PASSWORD_FILE=php://stdin",
                "r/crm-gdb_php:1.2.0",
                "php",
                "bin/migrate.php"
            ]
        );
        assert_eq!(cmd.stdin.as_deref(), Some(&b"db-password-0123"[..]));
        // A Compose target: its .env, and the password file mounted (only its path is shown).
        let server = Server {
            network: "crm_db",
            env: &crate::deploy::db::CLIENT_ENV,
            password: Password::File("/srv/crm/.deploy/secrets/db_password"),
        };
        let cmd = server_container(
            &server,
            "crm",
            "r/crm-gdb_php:1.2.0",
            Some("/srv/crm/.env"),
            Some("crm_data"),
            &command,
        );
        assert_eq!(
            cmd.argv(),
            [
                "docker",
                "run",
                "--rm",
                "--name",
                &format!("crm-release-{}", std::process::id()),
                "--label",
                "org.kiora.crm.throwaway=crm",
                "--network",
                "crm_db",
                "--env-file",
                "/srv/crm/.env",
                "--volume",
                "crm_data:/var/www/app/var/data",
                "--env",
                "DB_HOST=db",
                "--env",
                "DB_NAME=crm",
                "--env",
                "DB_USER=crm",
                "--volume",
                "/srv/crm/.deploy/secrets/db_password:/run/secrets/db_password:ro",
                "--env",
                "DB_PASSWORD_FILE=/run/secrets/db_password",
                "r/crm-gdb_php:1.2.0",
                "php",
                "bin/migrate.php"
            ]
        );
        assert!(cmd.stdin.is_none());
        // In the release's running php: the same variables, nothing to mount or join.
        assert_eq!(
            in_container(
                "c1",
                Some("/srv/crm/.env"),
                &crate::deploy::db::CLIENT_ENV,
                &command
            )
            .argv(),
            [
                "docker",
                "exec",
                "--env-file",
                "/srv/crm/.env",
                "--env",
                "DB_HOST=db",
                "--env",
                "DB_NAME=crm",
                "--env",
                "DB_USER=crm",
                "--env",
                "DB_PASSWORD_FILE=/run/secrets/db_password",
                "c1",
                "php",
                "bin/migrate.php"
            ]
        );
        assert_eq!(
            label_query("r/x:1").argv(),
            [
                "docker",
                "image",
                "inspect",
                "--format",
                "{{index .Config.Labels \"org.kiora.release-command\"}}",
                "r/x:1"
            ]
        );
    }
}
