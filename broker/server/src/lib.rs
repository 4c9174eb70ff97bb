//! `weir`: the Weir broker process.
//!
//! This crate is the only one that touches the operating system: it reads the configuration,
//! opens sockets, spawns threads, handles signals and reads the clock. Everything under it
//! (protocols, core, log, plugin host) receives bytes and time as arguments.
//!
//! Key pieces: [`cli`] (the process's life), [`config`] (every key, one declaration),
//! [`writer`] (the group-commit writer thread in front of the log).

pub mod admin;
pub mod cli;
pub mod config;
pub mod data_dir;
pub mod logging;
pub mod maintenance;
pub mod metrics;
pub mod shard;
pub mod writer;
