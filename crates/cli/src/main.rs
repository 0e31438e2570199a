//! `claudemesh`: the command line. Parses arguments, opens the home, runs
//! one command, and turns any failure into one line (plus a hint) and an
//! exit code from `exit`. Before a command runs, the policy decides
//! whether it may (`request_for` here, then `policy`, which logs to
//! `policy::audit_log`). Logs go to stderr only, and only with `-v`.
//!
//! # Layout
//!
//! - `args`: the command line's top (`Cli`, the list of `Command`s);
//!   `global`: the options every command takes, and the home they open;
//!   `output`, `exit`: printing and failures.
//! - One file per noun a user types: `mesh`, `peer`, `message`,
//!   `schedule`, `memory`, `topic`, `grants`, `status`, `backup`, `audit`, `apikey`, `serve`, `demo`. Each holds its clap
//!   types (`MeshCmd`, …) with what each command asks the policy
//!   (`request`) and runs (`run`); `names` (how members are shown),
//!   `workdir` (this checkout, for presence).
//! - `policy/`: the approval policy every command asks first, and its
//!   audit log;
//!   `approval_mode`: how much may run without asking (`--approval-mode`).
//! - `claude/`: the Claude Code integration (`install`, `mcp`, hooks, the
//!   status line, `launch`).

mod apikey;
mod approval_mode;
mod args;
mod audit;
mod backup;
mod claude;
mod demo;
mod exit;
mod global;
mod grants;
mod lease;
mod memory;
mod mesh;
mod message;
mod names;
mod output;
mod peer;
mod policy;
mod schedule;
mod serve;
mod state;
mod status;
mod task;
mod topic;
mod workdir;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser as _};

use crate::args::{Cli, Command};
use crate::exit::{Failure, Outcome};
use crate::mesh::MeshCmd;
use crate::message::MessageCmd;
use crate::peer::PeerCmd;
use crate::policy::{Request, Verb};

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => exit::OK,
                _ => exit::USAGE,
            };
            // With --json, a usage error is one JSON object like any other.
            if code == exit::USAGE && std::env::args_os().any(|a| a == "--json") {
                usage_failure(&e).print(true);
            } else {
                let _ = e.print();
            }
            return ExitCode::from(code);
        }
    };
    init_logging(cli.global.verbose);
    let json = cli.global.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            Failure::new(
                exit::INTERNAL,
                format!("cannot start the async runtime: {e}"),
            )
            .print(json);
            return ExitCode::from(exit::INTERNAL);
        }
    };
    let result = runtime.block_on(run(cli));
    // Do not wait for background tasks (reconnects, drains) on the way out.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            f.print(json);
            ExitCode::from(f.code)
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CLAUDEMESH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// The request a command makes of the policy; `None` for commands that
/// touch neither the home nor a mesh (`demo`, `completions`), and for
/// `restore`, which settles the policy itself once the backup has opened.
fn request_for(cmd: &Command) -> Option<Request> {
    match cmd {
        Command::Mesh(cmd) => cmd.request(),
        Command::Peer(cmd) => cmd.request(),
        Command::Message(cmd) => cmd.request(),
        Command::Schedule(cmd) => cmd.request(),
        Command::Memory(cmd) => cmd.request(),
        Command::Task(cmd) => cmd.request(),
        Command::State(cmd) => cmd.request(),
        Command::Lease(cmd) => cmd.request(),
        Command::Topic(cmd) => cmd.request(),
        Command::Group(cmd) => cmd.request(),
        Command::Profile(cmd) => cmd.request(),
        Command::Grants(cmd) => cmd.request(),
        Command::Audit(cmd) => cmd.request(),
        Command::Apikey(cmd) => cmd.request(),
        Command::Serve(a) => Some(a.request()),
        Command::Join(a) => Some(a.request()),
        Command::Send(a) => Some(a.request()),
        Command::Peers => PeerCmd::List.request(),
        Command::Verify(a) => Some(a.request()),
        Command::Inbox(a) => Some(a.request()),
        Command::Status => Some(Request::new(Verb::Status, None, false)),
        Command::Backup(a) => Some(a.request()),
        Command::Restore(_) => None,
        Command::Install(a) => a.request(),
        Command::Uninstall(a) => a.request(),
        Command::Launch(a) => Some(a.request()),
        // Each MCP tool call is checked as the verb it matches (mcp/tools.rs).
        Command::Mcp(_) => Some(Request::new(Verb::Mcp, None, true)),
        // A hook only reports the session's state to its own MCP server and
        // the status line only reads local files: neither is an action the
        // policy governs (and a refused hook would break every prompt).
        Command::Demo(_)
        | Command::Completions { .. }
        | Command::External(_)
        | Command::Hook { .. }
        | Command::StatusLine => None,
    }
}

async fn run(cli: Cli) -> Outcome {
    let g = cli.global;
    if let Some(req) = request_for(&cli.command) {
        policy::Policy::load(&g)?.enforce(&g, &req)?;
    }
    match cli.command {
        Command::Mesh(cmd) => cmd.run(&g).await,
        Command::Peer(cmd) => cmd.run(&g).await,
        Command::Message(cmd) => cmd.run(&g).await,
        Command::Schedule(cmd) => cmd.run(&g).await,
        Command::Memory(cmd) => cmd.run(&g).await,
        Command::Task(cmd) => cmd.run(&g).await,
        Command::State(cmd) => cmd.run(&g).await,
        Command::Lease(cmd) => cmd.run(&g).await,
        Command::Topic(cmd) => cmd.run(&g).await,
        Command::Group(cmd) => cmd.run(&g).await,
        Command::Profile(cmd) => cmd.run(&g).await,
        Command::Grants(cmd) => cmd.run(&g).await,
        Command::Audit(cmd) => cmd.run(&g).await,
        Command::Apikey(cmd) => cmd.run(&g).await,
        Command::Serve(a) => a.run(&g).await,
        Command::Join(a) => MeshCmd::Join(a).run(&g).await,
        Command::Send(a) => MessageCmd::Send(a).run(&g).await,
        Command::Peers => PeerCmd::List.run(&g).await,
        Command::Verify(a) => PeerCmd::Verify(a).run(&g).await,
        Command::Inbox(a) => MessageCmd::Inbox(a).run(&g).await,
        Command::External(words) => {
            let first = words.first().map(String::as_str).unwrap_or_default();
            // (A bare invite URL was turned into `join` by `parse`.)
            Err(
                Failure::new(exit::USAGE, format!("unknown command {first:?}"))
                    .hint("run `claudemesh --help` for the list of commands"),
            )
        }
        Command::Status => status::run(&g).await,
        Command::Backup(a) => backup::backup(&g, a),
        Command::Restore(a) => backup::restore(&g, a),
        Command::Demo(a) => demo::run(&g, a).await,
        Command::Mcp(a) => claude::mcp::run(&g, a).await,
        Command::Hook { event, enforce } => claude::hooks::hook(&g, event, enforce).await,
        Command::StatusLine => claude::status_line::status_line(&g).await,
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "claudemesh", &mut std::io::stdout());
            Ok(())
        }
        Command::Install(a) => claude::install::apply::install(&g, &a),
        Command::Uninstall(a) => claude::install::undo::uninstall(&g, &a),
        Command::Launch(a) => claude::launch::run(&g, a),
    }
}

/// Parses the command line. A bare `claudemesh [flags] <invite-url> …` is
/// parsed as `claudemesh [flags] join <invite-url> …`, so it takes every
/// flag `join` takes, before or after the URL.
fn parse() -> Result<Cli, clap::Error> {
    let cli = Cli::try_parse()?;
    let url = match &cli.command {
        Command::External(words) if words.first().is_some_and(|w| looks_like_invite(w)) => {
            words[0].clone()
        }
        _ => return Ok(cli),
    };
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(at) = argv.iter().skip(1).position(|a| *a == *url) {
        argv.insert(at + 1, "join".into());
    }
    Cli::try_parse_from(argv)
}

/// A clap error as a usage [`Failure`]: its first paragraph on one line.
fn usage_failure(e: &clap::Error) -> Failure {
    let text = e.render().to_string();
    let first = text.split("\n\n").next().unwrap_or_default();
    let message = first
        .trim_start_matches("error:")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    Failure::new(exit::USAGE, message).hint("run `claudemesh --help` (or `<command> --help`)")
}

fn looks_like_invite(s: &str) -> bool {
    s.starts_with("claudemesh://")
        || ((s.starts_with("https://") || s.starts_with("http://")) && s.contains("/join#"))
}
