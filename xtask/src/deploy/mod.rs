//! The deploy side: a target (this machine or a server over ssh) and what runs on it.
//! Nothing here calls a task.
//!
//! target        where a deploy goes; commands for ssh quoted once
//! deployment    files, lock, history, backups and pulls on the target
//! stack         the blue/green releases behind the edge on a target
//! local_stack   the one-project stack of `up` and `test-image` on this machine

pub mod deployment;
pub mod local_stack;
pub mod stack;
pub mod target;
