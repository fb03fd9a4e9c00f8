//! The `ssh` applet: `ssh keygen` makes the initramfs's host key, `ssh serve` is the server process the unlocking process starts.

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use super::keys;

#[derive(Debug, Parser)]
#[command(name = "ssh", version, about = "lethe's SSH unlock server: host keys, and the server process")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make an ed25519 host key for the initramfs (OpenSSH format, 0600) and PATH.pub; print its
    /// fingerprint. Never use the machine's own (stage 2) host key: the initramfs is readable.
    Keygen {
        /// Where to write the private key.
        #[arg(short = 'f', value_name = "PATH", default_value = keys::DEFAULT_HOST_KEY)]
        file: PathBuf,
        /// The key's comment.
        #[arg(short = 'C', value_name = "COMMENT", default_value = "lethe initramfs host key")]
        comment: String,
        /// Replace an existing key.
        #[arg(long)]
        force: bool,
    },
    /// The server process: started by the unlocking process with its end of the link; not
    /// for people.
    Serve {
        /// The lethe config (its `ssh` section).
        #[arg(long, value_name = "FILE", default_value = crate::config::PATH)]
        config: PathBuf,
        /// The SOCK_SEQPACKET link to the unlocking process: always 0, standard input.
        #[arg(long, value_name = "FD", default_value_t = 0)]
        link_fd: i32,
    },
}

/// `initrd-tool ssh keygen|serve ...`.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Keygen { file, comment, force } => keygen(&file, &comment, force),
        Command::Serve { config, link_fd } => {
            // The link comes as standard input: taken over without unsafe descriptor adoption,
            // and inherited by this child alone (no other process spawned meanwhile can get it).
            if link_fd != 0 {
                eprintln!("ssh serve: --link-fd {link_fd}: the link is passed as standard input (0)");
                return ExitCode::from(2);
            }
            let link = match std::io::stdin().as_fd().try_clone_to_owned() {
                Ok(fd) => fd,
                Err(e) => {
                    eprintln!("ssh serve: no link on standard input: {e}");
                    return ExitCode::from(2);
                }
            };
            if rustix::net::sockopt::socket_type(&link).ok() != Some(rustix::net::SocketType::SEQPACKET) {
                eprintln!("ssh serve: standard input is not the SOCK_SEQPACKET link");
                return ExitCode::from(2);
            }
            // Standard input itself becomes /dev/null (when there is one): the link lives on in
            // `link` only, close-on-exec.
            if let Ok(null) = std::fs::File::open("/dev/null") {
                let _ = rustix::stdio::dup2_stdin(&null);
            }
            super::server::serve(&config, link)
        }
    }
}

fn keygen(path: &std::path::Path, comment: &str, force: bool) -> ExitCode {
    let key = match keys::generate(comment) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("ssh keygen: {e}");
            return ExitCode::from(1);
        }
    };
    match keys::write_key_pair(&key, path, force) {
        Ok(pub_path) => {
            println!("Your identification has been saved in {}", path.display());
            println!("Your public key has been saved in {}", pub_path.display());
            println!("The key fingerprint is:");
            println!("{} {comment}", keys::fingerprint(key.public_key()));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ssh keygen: {e}");
            ExitCode::from(1)
        }
    }
}
