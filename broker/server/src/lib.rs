//! `weir`: the Weir broker process.
//!
//! This crate is the only one that opens sockets, spawns threads, handles signals or reads the
//! clock (the log's storage engine does its own file I/O). The protocols and the core receive
//! bytes and time as arguments.
//!
//! Key pieces: [`cli`] (the process's life), [`clock`] (the one place that reads the time),
//! [`config`] (every key, one declaration),
//! [`writer`] (the group-commit writer thread in front of the log).

pub mod admin;
pub mod admin_client;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod data_dir;
pub mod file_watch;
pub mod group_thread;
pub mod histogram;
pub mod logging;
pub mod maintenance;
pub mod memory;
pub mod metrics;
pub mod plugin_cli;
pub mod plugins;
pub mod shard;
pub mod tls;
pub mod user_cli;
pub mod writer;
