//! The deploy side: a target (this machine or a server over ssh) and what runs on it.
//! Nothing here calls a task.
//!
//! target        where a deploy goes; commands for ssh quoted once
//! options       the target options of deploy, rollback, backup and status
//! remote        a runner bound to a target (a value: cloneable, Send)
//! deployment    one stack on a target: its files, compose project, pulls and health check
//! lock          the deploy lock on a target: a lease, and the takeover of a dead holder's lock
//! reconcile     after a takeover: the target made to agree with its edge
//! history       what was deployed there, when, by whom, with what result
//! backups       dumps of a Compose target's database into its backups/, and restoring one
//! stack         the blue/green releases behind the edge on a target
//! canary        a share of the requests to the next release through the edge, and the verdict
//! switch        one host from its live release to another, in phases: check, prepare, switch,
//!               finish or revert
//! fleet         scheduling the phases over several hosts so they end on one release
//! rollout       deploy, rollback and status of a fleet (a single target is a fleet of one)
//! environments  the named environments of deploy.yaml
//! swarm         a release on a Docker Swarm: compose.yaml as a stack, watched until it
//!               converges or swarm rolls it back
//! db            the stack's PostgreSQL on every kind of target: names, dumps and restores
//! swarm_db      a swarm stack's PostgreSQL: pinned to a node, dumps and restores through its task
//! swarm_ops     logs of a swarm's services, a command in a running task's container
//! ops           the live release's logs, one-off commands in it or beside it
//! release_command  what a release declares to run once before it takes traffic (migrations)
//! maintenance   the edge's maintenance page (503 with Retry-After; health checks still answered)
//! tls           HTTPS at the edge: the target's own certificate and key, reloaded without a drop
//! prune         what a target no longer needs: old release images, containers, assets, backups
//! local_stack   the one-project stack of `up` and `test-image` on this machine
//! testbed       machines to deploy to, made here: network namespaces with their own engine and sshd
//! local_env     the local stack's secrets: made once, kept outside the tree and the images

pub mod backups;
pub mod canary;
pub mod db;
pub mod deployment;
pub mod environments;
pub mod fleet;
pub mod history;
pub mod local_env;
pub mod local_stack;
pub mod lock;
pub mod maintenance;
pub mod ops;
pub mod options;
pub mod prune;
pub mod reconcile;
pub mod release_command;
pub mod remote;
pub mod rollout;
pub mod stack;
pub mod swarm;
pub mod swarm_db;
pub mod swarm_ops;
pub mod switch;
pub mod target;
pub mod testbed;
pub mod tls;
