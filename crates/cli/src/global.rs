//! The options every command takes (`--home`, `--mesh`, `--json`, …) as
//! [`Global`], and what they open first: the private CA `--ca` names and
//! the home ([`open_home`]).

use std::path::PathBuf;

use clap::Args;
use claudemesh_client::ClientError;
use claudemesh_client::home::{Home, resolve_home};

use crate::approval_mode::ApprovalMode;
use crate::exit::Failure;

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

/// Makes `--ca` / `CLAUDEMESH_CA` (a PEM file) the private CA this process
/// trusts for `wss://` brokers; a mesh created or joined now stores it.
pub fn trust_ca(g: &Global) -> Result<(), Failure> {
    if let Some(path) = &g.ca {
        let pem = claudemesh_client::tls::read_ca_file(path).map_err(ClientError::from)?;
        claudemesh_client::tls::set_default_ca(Some(pem));
    }
    Ok(())
}

/// Opens the home named by `--home`, `CLAUDEMESH_HOME` or the default.
pub fn open_home(g: &Global) -> Result<Home, Failure> {
    trust_ca(g)?;
    let root = resolve_home(g.home.as_deref())?;
    Ok(Home::open(&root)?)
}
