//! `claudemesh`: the command line. Parses arguments, opens the home, runs
//! one command, and turns any failure into one line (plus a hint) and an
//! exit code from `exit`. Before a command runs, the policy decides
//! whether it may (`policy`, logged by `audit`). Logs go to stderr only,
//! and only with `-v`.
//!
//! # Layout
//!
//! - `args`: the command line as clap types; `output`, `exit`: printing
//!   and failures.
//! - One file per noun a user types: `mesh`, `peer`, `message`, `topic`,
//!   `grants`, `status`, `backup`, `audit`, `demo`; `names` (how members
//!   are shown), `workdir` (this checkout, for presence).
//! - `policy/`: the approval policy every command asks first;
//!   `approval_mode`: how much may run without asking (`--approval-mode`).
//! - `claude/`: the Claude Code integration (`install`, `mcp`, hooks, the
//!   status line, `launch`).

mod approval_mode;
mod args;
mod audit;
mod backup;
mod claude;
mod demo;
mod exit;
mod grants;
mod mesh;
mod message;
mod names;
mod output;
mod peer;
mod policy;
mod status;
mod topic;
mod workdir;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser as _};
use claudemesh_client::home::{Home, resolve_home};

use crate::args::{
    AuditCmd, Cli, Command, Global, GroupCmd, MeshCmd, MessageCmd, PeerCmd, ProfileCmd, TopicCmd,
};
use crate::exit::Failure;

/// What a command returns.
pub type Outcome = Result<(), Failure>;

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

/// Opens the home named by `--home`, `CLAUDEMESH_HOME` or the default.
pub fn open_home(g: &Global) -> Result<Home, Failure> {
    mesh::trust_ca(g)?;
    let root = resolve_home(g.home.as_deref())?;
    Ok(Home::open(&root)?)
}

async fn run(cli: Cli) -> Outcome {
    let g = cli.global;
    // `restore` settles the policy itself, once the backup has opened.
    if !matches!(cli.command, Command::Restore(_))
        && let Some(req) = policy::request_for(&cli.command)
    {
        policy::Policy::load(&g)?.enforce(&g, &req)?;
    }
    match cli.command {
        Command::Mesh(cmd) => match cmd {
            MeshCmd::Create {
                name,
                broker,
                display_name,
                peer_type,
                create_token,
            } => {
                mesh::create(
                    &g,
                    &name,
                    &broker,
                    display_name,
                    peer_type,
                    create_token.as_deref(),
                )
                .await
            }
            MeshCmd::List => mesh::list(&g),
            MeshCmd::Share {
                uses,
                expires,
                role,
                code,
                no_qr,
            } => mesh::share(&g, uses, expires.into(), role, code, no_qr).await,
            MeshCmd::RevokeInvite { id } => mesh::revoke_invite(&g, &id).await,
            MeshCmd::Rekey => mesh::rekey(&g).await,
            MeshCmd::Join(a) => mesh::join(&g, a).await,
            MeshCmd::Use { mesh } => mesh::use_mesh(&g, &mesh),
            MeshCmd::Leave => mesh::leave(&g).await,
        },
        Command::Join(a) => mesh::join(&g, a).await,
        Command::External(words) => {
            let first = words.first().map(String::as_str).unwrap_or_default();
            // (A bare invite URL was turned into `join` by `parse`.)
            Err(
                Failure::new(exit::USAGE, format!("unknown command {first:?}"))
                    .hint("run `claudemesh --help` for the list of commands"),
            )
        }
        Command::Grant { peer: p, caps } => grants::grant(&g, &p, &caps).await,
        Command::Revoke { peer: p, caps } => grants::revoke(&g, &p, &caps).await,
        Command::Block { peer: p, silent } => grants::block(&g, &p, silent).await,
        Command::Unblock { peer: p } => grants::unblock(&g, &p).await,
        Command::Grants => grants::list(&g).await,
        Command::Peer(PeerCmd::List) | Command::Peers => peer::list(&g).await,
        Command::Peer(PeerCmd::Kick { peer: p }) => peer::remove(&g, &p, false).await,
        Command::Peer(PeerCmd::Ban { peer: p }) => peer::remove(&g, &p, true).await,
        Command::Peer(PeerCmd::Unban { peer: p }) => peer::unban(&g, &p).await,
        Command::Peer(PeerCmd::Bans) => peer::bans(&g).await,
        Command::Peer(PeerCmd::Verify(a)) | Command::Verify(a) => peer::verify(&g, a).await,
        Command::Topic(cmd) => match cmd {
            TopicCmd::Create {
                name,
                private,
                description,
            } => topic::create(&g, &name, private, description).await,
            TopicCmd::List => topic::list(&g).await,
            TopicCmd::Join { topic: t } => topic::join(&g, &t).await,
            TopicCmd::Leave { topic: t } => topic::leave(&g, &t).await,
            TopicCmd::Add { topic: t, peer: p } => topic::add(&g, &t, &p).await,
            TopicCmd::Members { topic: t } => topic::members(&g, &t).await,
            TopicCmd::Post {
                topic: t,
                text,
                priority,
                reply_to,
            } => topic::post(&g, &t, &text, priority, reply_to).await,
            TopicCmd::History {
                topic: t,
                limit,
                before,
            } => topic::history(&g, &t, limit, before).await,
            TopicCmd::Read { topic: t } => topic::read(&g, &t).await,
        },
        Command::Group(cmd) => match cmd {
            GroupCmd::Join { group, role } => topic::group_join(&g, &group, role).await,
            GroupCmd::Leave { group } => topic::group_leave(&g, &group).await,
            GroupCmd::List => topic::group_list(&g).await,
        },
        Command::Message(MessageCmd::Send(a)) | Command::Send(a) => message::send(&g, a).await,
        Command::Message(MessageCmd::Inbox(a)) | Command::Inbox(a) => message::inbox(&g, a).await,
        Command::Message(MessageCmd::Status { id }) => message::status(&g, &id).await,
        Command::Profile(ProfileCmd::Summary { text }) => peer::set_summary(&g, text).await,
        Command::Profile(ProfileCmd::Status { status }) => peer::set_status(&g, status).await,
        Command::Status => status::run(&g).await,
        Command::Backup(a) => backup::backup(&g, a),
        Command::Restore(a) => backup::restore(&g, a),
        Command::Audit(AuditCmd::Verify) => audit::verify_cmd(&g),
        Command::Audit(AuditCmd::List { limit }) => audit::list_cmd(&g, limit),
        Command::Demo(a) => demo::run(&g, a).await,
        Command::Mcp(a) => claude::mcp::run(&g, a).await,
        Command::Hook { event } => claude::hooks::hook(&g, event).await,
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
