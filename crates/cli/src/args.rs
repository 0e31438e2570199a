//! The command line, as clap types: resource-noun-verb (`mesh create`,
//! `peer list`, `message send`, `topic post`) with the short aliases users
//! of claudemesh already type (`send`, `peers`, `inbox`, `join`, and a bare
//! invite URL).
//! `docs/cli.md` is the contract scripts rely on; keep the two in step.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::approval_mode::ApprovalMode;

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
#[derive(Debug, Clone, Args)]
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
    /// The policy file [default: <home>/policy.yaml]
    #[arg(long, global = true, env = "CLAUDEMESH_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// What may run without asking: plan, read-only, write, yolo [default: the policy's approval_mode, else write]
    #[arg(
        long,
        global = true,
        env = "CLAUDEMESH_APPROVAL_MODE",
        value_enum,
        value_name = "MODE"
    )]
    pub approval_mode: Option<ApprovalMode>,
    /// Answer yes to confirmations (destructive verbs such as peer ban, restore)
    #[arg(short = 'y', long, global = true)]
    pub yes: bool,
    /// A private CA certificate (PEM) to trust for wss:// brokers besides the system's roots; a mesh created or joined with it keeps it
    #[arg(long, global = true, env = "CLAUDEMESH_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
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
    /// Give a peer capabilities back (dm, broadcast, group, topic, presence)
    Grant {
        /// The member: a display name or a key prefix (8+ hex digits)
        peer: String,
        /// Capabilities: dm, broadcast, group, topic, presence
        #[arg(required = true)]
        caps: Vec<String>,
    },
    /// Take capabilities from a peer (`all` takes every one)
    Revoke {
        /// The member: a display name or a key prefix (8+ hex digits)
        peer: String,
        /// Capabilities (dm, broadcast, group, topic, presence), or `all`
        #[arg(required = true)]
        caps: Vec<String>,
    },
    /// Refuse everything from a peer; the sender is told, unless --silent
    Block {
        /// The member: a display name or a key prefix (8+ hex digits)
        peer: String,
        /// Do not tell the sender: their messages are accepted and dropped
        #[arg(long)]
        silent: bool,
    },
    /// Back to the default for a peer: every capability
    Unblock {
        /// The member: a display name or a key prefix (8+ hex digits)
        peer: String,
    },
    /// List who you limited or blocked (everyone else may do everything)
    Grants,
    /// Check the broker: reachable, versions, clock skew, membership
    Status,
    /// Write an encrypted backup of this device's keys and settings (.cmb)
    Backup(BackupArgs),
    /// Replace the home with a backup (the current one is kept beside it)
    Restore(RestoreArgs),
    /// The local audit log of policy decisions: verify its hash chain, list it
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Run a broker on a temporary database, make two peers, and show them talk
    Demo(DemoArgs),
    /// The MCP server Claude Code starts (stdio): tools, and messages pushed as they arrive
    Mcp(McpArgs),
    /// For Claude Code's hooks: tell this session's MCP server the session is working or idle
    Hook {
        /// `working` (a prompt was submitted) or `idle` (the turn ended)
        #[arg(value_enum)]
        event: HookEvent,
    },
    /// For Claude Code's status line: mesh, session, peers online, unread
    StatusLine,
    /// Print shell completions
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Set up Claude Code: the MCP server, status hooks, the skill (and a status line)
    Install(InstallArgs),
    /// Take out of Claude Code's files exactly what `install` put in
    Uninstall(UninstallArgs),
    /// Start Claude Code with claudemesh's channel: messages arrive in the session
    Launch(LaunchArgs),
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
        /// The broker's websocket URL, e.g. ws://127.0.0.1:7900 or wss://mesh.example.com (add --ca for a private CA)
        #[arg(long, env = "CLAUDEMESH_BROKER_URL", value_name = "URL")]
        broker: String,
        /// Your display name in the mesh [default: $USER]
        #[arg(long = "name", value_name = "NAME")]
        display_name: Option<String>,
        /// What kind of peer you are
        #[arg(long = "type", value_enum, default_value_t = PeerKind::Human)]
        peer_type: PeerKind,
        /// The broker operator's mesh-creation token (a remote broker creates
        /// meshes only for its holders, unless its operator opened it to anyone)
        #[arg(
            long,
            env = "CLAUDEMESH_CREATE_TOKEN",
            hide_env_values = true,
            value_name = "TOKEN"
        )]
        create_token: Option<String>,
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
    /// Write a new mesh key now, sealed to every current member (owners and
    /// admins; a member when someone left, a joiner is owed the key, or the
    /// current key was made by a member)
    Rekey,
    /// Join a mesh with an invite URL or short code
    #[command(visible_alias = "add")]
    Join(JoinArgs),
    /// Make a mesh the default for commands without --mesh
    Use {
        /// Mesh name or id prefix
        mesh: String,
    },
    /// Leave the mesh (--mesh, or the default) and forget it on this device
    Leave,
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
    /// Remove a member (owners and admins); they may rejoin with a new invite
    Kick {
        /// The member: a display name or a key prefix (8+ hex digits)
        peer: String,
    },
    /// Remove a member and refuse their key until unbanned (owners and admins)
    Ban {
        /// The member: a display name or a key prefix (8+ hex digits)
        peer: String,
    },
    /// Lift a ban (owners and admins); it does not re-admit
    Unban {
        /// The name the member had, or a key prefix (8+ hex digits)
        peer: String,
    },
    /// List banned keys
    Bans,
    /// Show the safety number you share with a peer, to compare out of band;
    /// --mark pins their key once the numbers match
    Verify(VerifyArgs),
}

/// `peer verify` / `verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// The member: a display name or a key prefix (8+ hex digits)
    pub peer: String,
    /// The numbers match: pin this key (you are warned, and direct messages
    /// are refused, if the log ever shows another key under this name)
    #[arg(long)]
    pub mark: bool,
}

#[derive(Debug, Subcommand)]
pub enum TopicCmd {
    /// Create a topic; you become its first member
    Create {
        /// The topic's name (with or without #): 1-64 of A-Z a-z 0-9 . _ - /
        name: String,
        /// Private: its own key, only members read it, members add members
        #[arg(long)]
        private: bool,
        /// What the topic is for (shown in `topic list`)
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
    },
    /// List the mesh's topics with your unread counts
    #[command(visible_alias = "ls")]
    List,
    /// Join a public topic
    Join {
        /// The topic (with or without #)
        topic: String,
    },
    /// Leave a topic
    Leave {
        /// The topic (with or without #)
        topic: String,
    },
    /// Add a member to a topic (private: you must be in it)
    Add {
        /// The topic (with or without #)
        topic: String,
        /// The member: a display name or a key prefix (8+ hex digits)
        peer: String,
    },
    /// List a topic's members
    Members {
        /// The topic (with or without #)
        topic: String,
    },
    /// Post to a topic (same as `send '#topic' <text>`)
    Post {
        /// The topic (with or without #)
        topic: String,
        /// The text ("-" reads it from stdin)
        text: String,
        /// Delivery priority
        #[arg(long, value_enum, default_value_t = PriorityArg::Next)]
        priority: PriorityArg,
        /// The message id this one answers
        #[arg(long, value_name = "ID")]
        reply_to: Option<String>,
    },
    /// A topic's stored messages (yours too), verified like deliveries
    History {
        /// The topic (with or without #)
        topic: String,
        /// At most this many (1-200)
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: u32,
        /// Only messages older than this message id
        #[arg(long, value_name = "ID")]
        before: Option<String>,
    },
    /// Mark every unread message of a topic read
    Read {
        /// The topic (with or without #)
        topic: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Join a group (again, to change your role in it)
    Join {
        /// The group (with or without @), e.g. eng/backend
        group: String,
        /// Your role in the group, e.g. lead
        #[arg(long, value_name = "ROLE")]
        role: Option<String>,
    },
    /// Leave a group
    Leave {
        /// The group (with or without @)
        group: String,
    },
    /// List the groups that have members, with their members and roles
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
    /// Recipient: a display name, a key prefix (8+ hex digits), a session
    /// name, '#topic', '@group', or '*' (everyone)
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
pub struct McpArgs {
    /// The session's name, as peers see it and send to it [default: $CLAUDEMESH_SESSION_NAME, else <display name>@<directory>]
    #[arg(long, env = "CLAUDEMESH_SESSION_NAME", value_name = "NAME")]
    pub name: Option<String>,
}

/// What a Claude Code hook reports.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum HookEvent {
    /// A prompt was submitted (`UserPromptSubmit`)
    Working,
    /// The turn ended (`Stop`)
    Idle,
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
pub struct BackupArgs {
    /// Where to write it [default: claudemesh-backup-<date>.cmb here]
    pub file: Option<PathBuf>,
    /// Replace the file if it exists
    #[arg(long)]
    pub force: bool,
    /// Read the passphrase from the first line of this file (else
    /// $CLAUDEMESH_PASSPHRASE, else it is asked twice on the terminal)
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup (.cmb) `claudemesh backup` wrote
    pub file: PathBuf,
    /// Read the passphrase from the first line of this file (else
    /// $CLAUDEMESH_PASSPHRASE, else it is asked on the terminal)
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Check the hash chain of the audit log; names the first broken line
    Verify,
    /// The latest policy decisions, oldest first
    #[command(visible_alias = "ls")]
    List {
        /// At most this many (the newest)
        #[arg(long, default_value_t = 20, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's temporary directory and print where it is
    #[arg(long)]
    pub keep: bool,
}

/// `install` (see `src/claude/install/`).
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Print what would change; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not add the hooks that keep your status true (working/idle)
    #[arg(long)]
    pub no_hooks: bool,
    /// Do not install the skill file that teaches Claude the CLI
    #[arg(long)]
    pub no_skill: bool,
    /// Also set Claude Code's status line (mesh, peers online, unread)
    #[arg(long)]
    pub status_line: bool,
    /// Pre-approve claudemesh's MCP tools (Claude then uses them without asking)
    #[arg(long)]
    pub allow_tools: bool,
    /// Replace a status line, an MCP server named claudemesh or a skill file
    /// that is not ours (uninstall puts it back)
    #[arg(long)]
    pub force: bool,
}

/// `uninstall`.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Print what would change; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// `launch` (see `src/claude/launch.rs`).
#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// This session's name, shown to peers (`send <name>` reaches it)
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Arguments for `claude`, after `--`
    #[arg(last = true, value_name = "CLAUDE_ARGS")]
    pub claude_args: Vec<std::ffi::OsString>,
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
