//! The command line's top: [`Cli`] (the global options, then one
//! [`Command`]) and the list of commands, resource-noun-verb (`mesh
//! create`, `peer list`, `message send`, `topic post`) with the short
//! aliases users of claudemesh already type (`send`, `peers`, `inbox`,
//! `join`, and a bare invite URL). Each noun's subcommands, and each
//! command's arguments, are clap types in the noun's own module.
//! `docs/cli.md` is the contract scripts rely on; keep the two in step.

use clap::{Parser, Subcommand};

use crate::apikey::ApikeyCmd;
use crate::audit::AuditCmd;
use crate::backup::{BackupArgs, RestoreArgs};
use crate::claude::hooks::HookEvent;
use crate::claude::install::apply::InstallArgs;
use crate::claude::install::undo::UninstallArgs;
use crate::claude::launch::LaunchArgs;
use crate::claude::mcp::McpArgs;
use crate::demo::DemoArgs;
use crate::global::Global;
use crate::grants::GrantsCmd;
use crate::lease::LeaseCmd;
use crate::memory::MemoryCmd;
use crate::mesh::{JoinArgs, MeshCmd};
use crate::message::{InboxArgs, MessageCmd, SendArgs};
use crate::peer::{PeerCmd, ProfileCmd, VerifyArgs};
use crate::schedule::ScheduleCmd;
use crate::serve::ServeArgs;
use crate::state::StateCmd;
use crate::task::TaskCmd;
use crate::topic::{GroupCmd, TopicCmd};

/// claudemesh: an end-to-end encrypted mesh for Claude Code sessions,
/// scripts and people, across machines.
#[derive(Debug, Parser)]
#[command(
    name = "claudemesh",
    version,
    propagate_version = true,
    after_help = "Start here:\n  claudemesh demo                                  see two peers talk through a local broker\n  claudemesh mesh create team --broker ws://HOST:7900\n  claudemesh mesh share                            prints an invite URL\n  claudemesh join <invite-url>                     on the other machine\n  claudemesh send <name> \"hello\"  /  claudemesh inbox\n\nExit codes are listed in docs/cli.md."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, share and join meshes
    #[command(subcommand, visible_alias = "workspace")]
    Mesh(MeshCmd),
    /// See who is in the mesh
    #[command(subcommand)]
    Peer(PeerCmd),
    /// Send, read and track messages
    #[command(subcommand, visible_alias = "msg")]
    Message(MessageCmd),
    /// Messages held to be delivered later (send --at/--in): list, cancel
    #[command(subcommand)]
    Schedule(ScheduleCmd),
    /// Team memory: notes sealed to the mesh, searched on this device (remember, recall, list, forget)
    #[command(subcommand)]
    Memory(MemoryCmd),
    /// Tasks sealed to the mesh: create, list, claim (one claimant wins), release, complete
    #[command(subcommand)]
    Task(TaskCmd),
    /// Shared state: small values sealed to the mesh, set with compare-and-set, watched live
    #[command(subcommand)]
    State(StateCmd),
    /// File leases: reserve files while you edit them, so other sessions leave them alone
    #[command(subcommand)]
    Lease(LeaseCmd),
    /// Topics (#name): create, join, post, read their history
    #[command(subcommand)]
    Topic(TopicCmd),
    /// Groups (@name): join, leave, list
    #[command(subcommand)]
    Group(GroupCmd),
    /// Your presence: status and summary
    #[command(subcommand)]
    Profile(ProfileCmd),
    /// Join a mesh with an invite URL (same as `mesh join`)
    Join(JoinArgs),
    /// Send a message (same as `message send`)
    Send(SendArgs),
    /// List peers (same as `peer list`)
    Peers,
    /// Compare safety numbers with a peer (same as `peer verify`)
    Verify(VerifyArgs),
    /// Show unread messages (same as `message inbox`)
    Inbox(InboxArgs),
    // `grant`, `revoke`, `block`, `unblock`, `grants`: top-level commands.
    #[command(flatten)]
    Grants(GrantsCmd),
    /// Check the broker: reachable, versions, clock skew, membership
    Status,
    /// Write an encrypted backup of this device's keys and settings (.cmb)
    Backup(BackupArgs),
    /// Replace the home with a backup (the current one is kept beside it)
    Restore(RestoreArgs),
    /// The local audit log of policy decisions: verify its hash chain, list it
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Keys for scripts using the local gateway (`claudemesh serve`): create, list, revoke
    #[command(subcommand)]
    Apikey(ApikeyCmd),
    /// Run the local gateway: REST, server-sent events and an OpenAPI document on 127.0.0.1:7901
    Serve(ServeArgs),
    /// Run a broker on a temporary database, make two peers, and show them talk
    Demo(DemoArgs),
    /// The MCP server Claude Code starts (stdio): tools, and messages pushed as they arrive
    Mcp(McpArgs),
    /// For Claude Code's hooks: set this session's status and print what to add to the conversation (messages where channels are off)
    Hook {
        /// `prompt` (UserPromptSubmit), `stop` (Stop) or `session-start` (SessionStart); `working`/`idle` are old names of prompt/stop
        #[arg(value_enum)]
        event: HookEvent,
        /// pre-edit: refuse the edit (not only warn) when another session holds an exclusive lease on the file
        #[arg(long)]
        enforce: bool,
    },
    /// For Claude Code's status line: mesh, session, peers online, unread
    StatusLine,
    /// Print shell completions
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Set up Claude Code: the MCP server, hooks, the skill (and a status line)
    Install(InstallArgs),
    /// Take out of Claude Code's files exactly what `install` put in
    Uninstall(UninstallArgs),
    /// Start Claude Code with claudemesh's channel: messages arrive in the session
    Launch(LaunchArgs),
    /// A bare invite URL joins that mesh
    #[command(external_subcommand)]
    External(Vec<String>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
