//! `claudemesh serve open` and `claudemesh serve sessions`: signing a
//! browser in to the web app of the gateway running on this home, and
//! listing or ending the browsers signed in. Both work on the home's
//! `state.db` directly (`claudemesh_gateway::web::sessions`), so they need
//! no channel to the running gateway; `open` reads where it listens from
//! its `serve.lock`.

use clap::Subcommand;
use claudemesh_client::local::LocalStore;
use claudemesh_gateway::lock::GatewayLock;
use claudemesh_gateway::web::sessions::{WebSessionError, WebSessions};
use claudemesh_proto::clock::now_ms;

use crate::exit::{self, Failure, Outcome};
use crate::global::{Global, open_home};
use crate::output;
use crate::policy::{Request, Verb};

#[derive(Debug, Subcommand)]
pub enum ServeCmd {
    /// Sign a browser in to the web app: prints a one-time link (and opens it)
    Open {
        /// Print the link only; do not start a browser
        #[arg(long)]
        no_browser: bool,
    },
    /// The browsers signed in to the web app; `end <id>` or `end --all` signs them out
    #[command(subcommand_required = false)]
    Sessions {
        #[command(subcommand)]
        action: Option<SessionsCmd>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionsCmd {
    /// Sign a browser out at once (by the id `serve sessions` shows)
    End {
        /// The session's id (ws_…)
        #[arg(required_unless_present = "all")]
        id: Option<String>,
        /// Every session
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}

impl ServeCmd {
    /// What it asks the policy.
    pub fn request(&self) -> Request {
        match self {
            ServeCmd::Open { .. } => Request::new(Verb::ServeOpen, None, false),
            ServeCmd::Sessions { action: None } => Request::new(Verb::ServeSessions, None, false),
            ServeCmd::Sessions {
                action: Some(SessionsCmd::End { id, .. }),
            } => Request::new(Verb::ServeSessionsEnd, id.as_deref(), false),
        }
    }

    pub async fn run(self, g: &Global) -> Outcome {
        match self {
            ServeCmd::Open { no_browser } => open(g, no_browser).await,
            ServeCmd::Sessions { action: None } => list(g).await,
            ServeCmd::Sessions {
                action: Some(SessionsCmd::End { id, all }),
            } => end(g, id.as_deref(), all).await,
        }
    }
}

async fn sessions(g: &Global) -> Result<(claudemesh_client::Home, WebSessions), Failure> {
    let home = open_home(g)?;
    let local = LocalStore::open(&home.state_db_path()).await?;
    Ok((home, WebSessions::new(local.pool().clone())))
}

fn failure(e: WebSessionError) -> Failure {
    match e {
        WebSessionError::NotFound(_) => Failure::new(exit::NOT_FOUND, e.to_string())
            .hint("`claudemesh serve sessions` lists them"),
        WebSessionError::Random(_) => Failure::new(exit::INTERNAL, e.to_string()),
        WebSessionError::Db(_) => Failure::new(exit::IO, e.to_string()),
    }
}

/// `serve open`: a one-time sign-in link to the running gateway.
async fn open(g: &Global, no_browser: bool) -> Outcome {
    let (home, web) = sessions(g).await?;
    let base = match GatewayLock::running(home.root()) {
        Ok(Some(at)) => at,
        Ok(None) => {
            return Err(
                Failure::new(exit::NOT_FOUND, "no gateway runs on this home").hint(
                    "start it with `claudemesh serve`, then run `claudemesh serve open` again",
                ),
            );
        }
        Err(e) => return Err(Failure::new(exit::IO, e.to_string())),
    };
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(Failure::new(
            exit::USAGE,
            format!("the gateway listens on {base}, which a browser cannot open"),
        )
        .hint(
            "run `claudemesh serve` on a TCP address (the default, 127.0.0.1:7901) for the web app",
        ));
    }
    let link = web.issue_signin(now_ms()).await.map_err(failure)?;
    let url = signin_url(&base, &link.token);
    if g.json {
        output::json(&serde_json::json!({"url": url, "expires_at": link.expires_at}));
        return Ok(());
    }
    let opened = !no_browser && open_browser(&url);
    if !g.quiet {
        eprintln!(
            "{} This link signs a browser in once, within {} minutes; keep it to yourself.",
            if opened {
                "Opened the web app in your browser."
            } else {
                "Open this link in a browser on this machine to use the web app."
            },
            claudemesh_gateway::web::sessions::SIGNIN_TTL_MS / 60_000
        );
    }
    println!("{url}");
    Ok(())
}

/// The link that redeems `token` at the gateway at `base`. A gateway on
/// every address (`0.0.0.0`, `[::]`) is opened on loopback, a name it
/// answers and a browser can open.
pub fn signin_url(base: &str, token: &str) -> String {
    let base =
        base.replacen("://0.0.0.0:", "://127.0.0.1:", 1)
            .replacen("://[::]:", "://[::1]:", 1);
    format!("{}/web/signin?token={token}", base.trim_end_matches('/'))
}

/// Starts the desktop's browser on `url`, without waiting; whether one
/// could be started. The link is passed as an argument, never through a
/// shell.
fn open_browser(url: &str) -> bool {
    let program = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    std::process::Command::new(program)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_ok()
}

async fn list(g: &Global) -> Outcome {
    let (_, web) = sessions(g).await?;
    let rows = web.active(now_ms()).await.map_err(failure)?;
    output::listing(
        g.json,
        &rows,
        "No browser is signed in. Sign one in with `claudemesh serve open`.",
        &["ID", "BROWSER", "SIGNED IN", "LAST SEEN", "EXPIRES"],
        |s| {
            vec![
                s.id.clone(),
                if s.agent.is_empty() {
                    "-".to_owned()
                } else {
                    s.agent.chars().take(40).collect()
                },
                output::timestamp(s.created_at),
                output::ago(s.last_seen_at),
                output::timestamp(s.expires_at),
            ]
        },
    );
    Ok(())
}

async fn end(g: &Global, id: Option<&str>, all: bool) -> Outcome {
    let (_, web) = sessions(g).await?;
    let now = now_ms();
    let ended = match (id, all) {
        (_, true) => web.end_all(now).await.map_err(failure)?,
        (Some(id), false) => {
            web.end(id, now).await.map_err(failure)?;
            1
        }
        (None, false) => {
            return Err(Failure::new(exit::USAGE, "name a session, or give --all"));
        }
    };
    if g.json {
        output::json(&serde_json::json!({"ended": ended}));
    } else if !g.quiet {
        eprintln!(
            "Signed out {ended} browser session{}.",
            if ended == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_names_an_address_a_browser_can_open() {
        assert_eq!(
            signin_url("http://127.0.0.1:7901", "t"),
            "http://127.0.0.1:7901/web/signin?token=t"
        );
        assert_eq!(
            signin_url("https://0.0.0.0:7901/", "t"),
            "https://127.0.0.1:7901/web/signin?token=t"
        );
        assert_eq!(
            signin_url("http://[::]:80", "t"),
            "http://[::1]:80/web/signin?token=t"
        );
        assert_eq!(
            signin_url("https://gw.example:443", "t"),
            "https://gw.example:443/web/signin?token=t"
        );
    }
}
