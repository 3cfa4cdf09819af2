//! `cargo xtask testbed up|down|status|stop-engine|start-engine`: real, separate machines on
//! this one (network namespaces, each with its own address, Docker engine and sshd) to try a
//! fleet deploy on, and for the end-to-end tests. See `crate::deploy::testbed`.

use std::path::Path;

use anyhow::Result;

use crate::ctx::Ctx;
use crate::deploy::testbed::{self, Name, UpOptions, BASE_DIR};
use crate::reference::parse_port;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  sudo cargo xtask testbed up --machines 3\n  sudo cargo xtask testbed up --name fleet --machines 2 --swarm --registry-port 5000\n  cargo xtask testbed status\n  sudo cargo xtask testbed down\n\nEach machine is a network namespace with its own address (10.231.K.11..), Docker engine and sshd;\n`up` prints the ssh targets, each engine's DOCKER_HOST and an example deploy line.\nState, keys and logs live in /tmp/xtask-testbed/NAME/."
)]
pub struct TestbedArgs {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct NameArg {
    /// Testbed name (1-8 lowercase letters or digits); several testbeds can exist at once.
    #[arg(long, default_value = "xtb")]
    name: String,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Make the machines and print how to reach them.
    Up {
        #[command(flatten)]
        name: NameArg,
        /// Number of machines (1-20).
        #[arg(long, default_value_t = 3)]
        machines: usize,
        /// Make a Docker swarm: m1 the manager, the others workers.
        #[arg(long)]
        swarm: bool,
        /// Forward the registry on this host's 127.0.0.1:PORT into every machine (default: the
        /// port of --registry when it is 127.0.0.1:PORT).
        #[arg(long)]
        registry_port: Option<u16>,
        /// Port an edge is published on, for the printed addresses.
        #[arg(long, default_value_t = 8080)]
        edge_port: u16,
    },
    /// Remove everything `up` made: daemons (by pid), namespaces, links, the iptables rule, files.
    Down {
        #[command(flatten)]
        name: NameArg,
    },
    /// Show a testbed (or every one) and whether each daemon runs.
    Status {
        /// Testbed name (default: every testbed).
        #[arg(long)]
        name: Option<String>,
    },
    /// Stop one machine's Docker engine (to see a deploy meet a dead engine).
    StopEngine {
        #[command(flatten)]
        name: NameArg,
        /// The machine, e.g. m2.
        machine: String,
    },
    /// Start one machine's Docker engine again.
    StartEngine {
        #[command(flatten)]
        name: NameArg,
        /// The machine, e.g. m2.
        machine: String,
    },
}

pub fn run(ctx: &Ctx, args: TestbedArgs) -> Result<()> {
    let base = Path::new(BASE_DIR);
    let runner = &ctx.runner;
    match args.command {
        Command::Up {
            name,
            machines,
            swarm,
            registry_port,
            edge_port,
        } => {
            let name = Name::parse(&name.name)?;
            testbed::check_machines(machines)?;
            let registry_port =
                registry_port.or_else(|| loopback_registry_port(&ctx.config.registry));
            testbed::preflight(registry_port.is_some())?;
            let opts = UpOptions {
                machines,
                swarm,
                registry_port,
                edge_port,
            };
            testbed::up(runner, base, name.clone(), &opts)?;
            if !runner.dry_run {
                print!("{}", testbed::status(base, Some(&name))?);
            }
            Ok(())
        }
        Command::Down { name } => {
            let name = Name::parse(&name.name)?;
            testbed::preflight(false)?;
            testbed::down(runner, base, &name)
        }
        Command::Status { name } => {
            let name = name.as_deref().map(Name::parse).transpose()?;
            print!("{}", testbed::status(base, name.as_ref())?);
            Ok(())
        }
        Command::StopEngine { name, machine } => {
            testbed::preflight(false)?;
            testbed::stop_engine(runner, base, &Name::parse(&name.name)?, &machine)
        }
        Command::StartEngine { name, machine } => {
            testbed::preflight(false)?;
            testbed::start_engine(runner, base, &Name::parse(&name.name)?, &machine)
        }
    }
}

/// The port of a registry on this host's loopback (`127.0.0.1:5000/kiora` gives 5000).
fn loopback_registry_port(registry: &str) -> Option<u16> {
    let host = registry.split('/').next()?;
    parse_port(host.strip_prefix("127.0.0.1:")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_loopback_registry_is_forwarded() {
        assert_eq!(loopback_registry_port("127.0.0.1:5000/kiora"), Some(5000));
        assert_eq!(loopback_registry_port("127.0.0.1:41234"), Some(41234));
        assert_eq!(loopback_registry_port("registry.kiora.tech/kiora"), None);
        assert_eq!(
            loopback_registry_port("registry.kiora.tech:5000/kiora"),
            None
        );
        assert_eq!(loopback_registry_port("127.0.0.1/kiora"), None);
    }
}
