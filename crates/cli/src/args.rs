//! The command line, as clap types: resource-noun-verb (`mesh create`,
//! `peer list`, `message send`) with the short aliases users of claudemesh
//! already type (`send`, `peers`, `inbox`, `join`, and a bare invite URL).
//! `docs/cli.md` is the contract scripts rely on; keep the two in step.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The claudemesh home (keys, config, local inbox) [default: ~/.claudemesh]
    #[arg(long, global = true, env = "CLAUDEMESH_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Which mesh (name or id prefix) [default: the default mesh]
    #[arg(long, global = true, env = "CLAUDEMESH_MESH", value_name = "MESH")]
    pub mesh: Option<String>,
    /// Print machine-readable JSON
    #[arg(long, global = true)]
    pub json: bool,
    /// Print less
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log more to stderr (-v info, -vv debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
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
    /// Your presence: status and summary
    #[command(subcommand)]
    Profile(ProfileCmd),
    /// Join a mesh with an invite URL (same as `mesh join`)
    Join(JoinArgs),
    /// Send a message (same as `message send`)
    Send(SendArgs),
    /// List peers (same as `peer list`)
    Peers,
    /// Show unread messages (same as `message inbox`)
    Inbox(InboxArgs),
    /// Check the broker: reachable, versions, clock skew, membership
    Status,
    /// Run a broker on a temporary database, make two peers, and show them talk
    Demo(DemoArgs),
    /// Print shell completions
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// A bare invite URL joins that mesh
    #[command(external_subcommand)]
    External(Vec<String>),
}

#[derive(Debug, Subcommand)]
pub enum MeshCmd {
    /// Create a mesh on a broker; you become its owner
    #[command(visible_alias = "new")]
    Create {
        /// The mesh's name (local; shared with people you invite)
        name: String,
        /// The broker's websocket URL, e.g. ws://127.0.0.1:7900
        #[arg(long, env = "CLAUDEMESH_BROKER_URL", value_name = "URL")]
        broker: String,
        /// Your display name in the mesh [default: $USER]
        #[arg(long = "name", value_name = "NAME")]
        display_name: Option<String>,
        /// What kind of peer you are
        #[arg(long = "type", value_enum, default_value_t = PeerKind::Human)]
        peer_type: PeerKind,
    },
    /// List the meshes this device belongs to
    #[command(visible_alias = "ls")]
    List,
    /// Make an invite: prints its URL (last line of stdout)
    #[command(visible_alias = "invite")]
    Share {
        /// How many people may join with it
        #[arg(long, default_value_t = 1, value_name = "N")]
        uses: u32,
        /// How long it stays valid (e.g. 30m, 12h, 7d)
        #[arg(long, default_value = "7d", value_name = "DURATION")]
        expires: humantime::Duration,
        /// The role joiners get
        #[arg(long, value_enum, default_value_t = RoleArg::Member)]
        role: RoleArg,
        /// Also print a short code to read aloud (join with --broker)
        #[arg(long)]
        code: bool,
        /// Do not draw a QR code
        #[arg(long)]
        no_qr: bool,
    },
    /// Revoke an invite by the id `mesh share` printed
    RevokeInvite {
        /// Invite id (or its first 8+ hex digits)
        id: String,
    },
    /// Join a mesh with an invite URL or short code
    #[command(visible_alias = "add")]
    Join(JoinArgs),
    /// Make a mesh the default for commands without --mesh
    Use {
        /// Mesh name or id prefix
        mesh: String,
    },
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The invite: https://…/join#…, claudemesh://join/…, a token, or a short code
    pub invite: String,
    /// Your display name in the mesh [default: $USER]
    #[arg(long = "name", value_name = "NAME")]
    pub display_name: Option<String>,
    /// The broker, when joining with a short code
    #[arg(long, env = "CLAUDEMESH_BROKER_URL", value_name = "URL")]
    pub broker: Option<String>,
    /// What kind of peer you are
    #[arg(long = "type", value_enum, default_value_t = PeerKind::Human)]
    pub peer_type: PeerKind,
}

#[derive(Debug, Subcommand)]
pub enum PeerCmd {
    /// List the mesh's members, online first, with their sessions
    #[command(visible_alias = "ls")]
    List,
}

#[derive(Debug, Subcommand)]
pub enum MessageCmd {
    /// Send a message (end-to-end encrypted and signed)
    Send(SendArgs),
    /// Fetch queued messages, store and acknowledge them, print the unread ones
    Inbox(InboxArgs),
    /// Per-recipient state of a message you sent: queued, delivered, read
    Status {
        /// The message id `send` printed
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Recipient: a display name, a key prefix (8+ hex digits), or a session name
    pub to: String,
    /// The text ("-" reads it from stdin)
    pub text: String,
    /// Delivery priority
    #[arg(long, value_enum, default_value_t = PriorityArg::Next)]
    pub priority: PriorityArg,
    /// The message id this one answers
    #[arg(long, value_name = "ID")]
    pub reply_to: Option<String>,
}

#[derive(Debug, Args)]
pub struct InboxArgs {
    /// Keep running and print messages as they arrive
    #[arg(long)]
    pub watch: bool,
    /// Show read messages too (the newest --limit)
    #[arg(long)]
    pub all: bool,
    /// At most this many messages
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

#[derive(Debug, Subcommand)]
pub enum ProfileCmd {
    /// Set your one-line summary (encrypted; peers see it in `peer list`)
    Summary {
        /// The summary ("" clears it)
        text: String,
    },
    /// Set your status: idle takes every message, working and dnd only `now` ones
    Status {
        /// The status
        #[arg(value_enum)]
        status: StatusArg,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's temporary directory and print where it is
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PeerKind {
    Ai,
    Human,
    Bot,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Member,
    Admin,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PriorityArg {
    Now,
    Next,
    Low,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatusArg {
    Idle,
    Working,
    Dnd,
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
