//! `weir user add|remove|list`: the users file's maintenance. Passwords are read from the
//! terminal without echo (twice), or from standard input's first line when it is not a
//! terminal; never from the command line, where other users could see them.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;

use clap::Subcommand;

use weir_core::auth::scram::ScramMechanism;

use crate::auth::hash::{
    PBKDF2_ITERATIONS_DEFAULT, PasswordHash, check_iterations, new_scram_credential,
};
use crate::auth::users_file::{self, User};
use crate::config::Config;

/// Longest password read, bytes.
const PASSWORD_BYTES_MAX: usize = 4096;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user, or set a user's password: asked on the terminal, or read from standard
    /// input's first line.
    Add {
        /// The user name (no `:`, whitespace or control characters).
        name: String,
        /// The users file (default: `auth.users_file` of the configuration).
        #[arg(long)]
        users_file: Option<PathBuf>,
        /// PBKDF2 iterations of the password hash; each CONNECT with a password pays them.
        #[arg(long, default_value_t = PBKDF2_ITERATIONS_DEFAULT)]
        iterations: u32,
    },
    /// Remove a user.
    Remove {
        /// The user name.
        name: String,
        /// The users file (default: `auth.users_file` of the configuration).
        #[arg(long)]
        users_file: Option<PathBuf>,
    },
    /// List the users and the SASL mechanisms each can use.
    List {
        /// The users file (default: `auth.users_file` of the configuration).
        #[arg(long)]
        users_file: Option<PathBuf>,
    },
}

/// Runs a `weir user` command; returns what to print.
pub fn run(config: &Config, command: UserCommand) -> anyhow::Result<String> {
    let file = |given: Option<PathBuf>| given.unwrap_or_else(|| config.users_file());
    match command {
        UserCommand::Add {
            name,
            users_file,
            iterations,
        } => {
            users_file::check_name(&name).map_err(|e| anyhow::anyhow!(e))?;
            check_iterations(iterations)?;
            let path = file(users_file);
            let mut users = read(&path)?;
            let password = read_password(&name)?;
            let user = User {
                password: PasswordHash::new(&password, iterations)?,
                scram: vec![
                    new_scram_credential(ScramMechanism::Sha256, &password)?,
                    new_scram_credential(ScramMechanism::Sha512, &password)?,
                ],
            };
            let verb = if users.insert(name.clone(), user).is_some() {
                "password changed"
            } else {
                "added"
            };
            users_file::write(&path, &users)?;
            Ok(format!("user {name} {verb} in {}\n", path.display()))
        }
        UserCommand::Remove { name, users_file } => {
            let path = file(users_file);
            let mut users = read(&path)?;
            if users.remove(&name).is_none() {
                anyhow::bail!("no user {name} in {}", path.display());
            }
            users_file::write(&path, &users)?;
            Ok(format!("user {name} removed from {}\n", path.display()))
        }
        UserCommand::List { users_file } => {
            let users = read(&file(users_file))?;
            let mut out = String::new();
            for (name, user) in &users {
                let mut mechanisms = vec!["PLAIN"];
                mechanisms.extend(user.scram.iter().map(|k| k.mechanism.name()));
                out.push_str(&format!("{name}\t{}\n", mechanisms.join(" ")));
            }
            Ok(out)
        }
    }
}

fn read(path: &std::path::Path) -> anyhow::Result<users_file::Users> {
    let users = users_file::read(path, false).map_err(|e| anyhow::anyhow!(e))?;
    Ok(users.unwrap_or_default())
}

/// The password: asked twice on the terminal without echo, or standard input's first line
/// (without its line ending) when standard input is not a terminal.
fn read_password(name: &str) -> anyhow::Result<Vec<u8>> {
    if !std::io::stdin().is_terminal() {
        let line = read_line()?.ok_or_else(|| anyhow::anyhow!("no password on standard input"))?;
        return check_password(line);
    }
    let first = prompt(&format!("password for {name}: "))?;
    let again = prompt("again: ")?;
    if first != again {
        anyhow::bail!("the passwords differ; nothing changed");
    }
    check_password(first)
}

fn check_password(password: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    if password.is_empty() {
        anyhow::bail!("the password is empty");
    }
    if password.len() > PASSWORD_BYTES_MAX {
        anyhow::bail!("the password is over {PASSWORD_BYTES_MAX} bytes");
    }
    Ok(password)
}

/// Standard input's next line without its line ending, read up to one byte past
/// [`PASSWORD_BYTES_MAX`] (so an overlong one is seen as such); `None` at its end.
fn read_line() -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let read = std::io::stdin()
        .lock()
        .take(PASSWORD_BYTES_MAX as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if read == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    Ok(Some(line))
}

/// Asks on the terminal with echo off, restoring it afterwards.
fn prompt(text: &str) -> anyhow::Result<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let fd = std::io::stdin().as_raw_fd();
    eprint!("{text}");
    std::io::stderr().flush()?;
    // SAFETY: `termios` is plain data; tcgetattr fills it for a valid descriptor.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is standard input, open for the process's life; `saved` is valid memory.
    if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
        anyhow::bail!("cannot read the terminal's settings");
    }
    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHO;
    // SAFETY: as above; `quiet` is a copy of valid settings with echo off.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
        anyhow::bail!("cannot turn the terminal's echo off");
    }
    let line = read_line();
    // SAFETY: restores the settings read above.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    eprintln!();
    Ok(line?.unwrap_or_default())
}
