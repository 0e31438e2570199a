//! `claudemesh hook pre-edit [--enforce]`, which Claude Code runs before
//! its Edit, Write, MultiEdit and NotebookEdit tools (`install` puts it in
//! `settings.json` as a `PreToolUse` hook): when another session (another
//! member's, or this member's other Claude Code or CLI session) holds a
//! live lease on the file, it tells the model who and until when, and under
//! `--enforce` refuses the edit when that lease is exclusive.
//!
//! # Claude Code's `PreToolUse` input and output, as relied on here
//!
//! From Claude Code's hooks reference (<https://code.claude.com/docs/en/hooks>):
//! stdin carries `tool_name` and `tool_input`, whose `file_path` (Edit,
//! Write, MultiEdit) or `notebook_path` (NotebookEdit) is absolute; exit 0
//! with `{"hookSpecificOutput": {"hookEventName": "PreToolUse",
//! "additionalContext": "…"}}` adds the text to the model's context, and
//! with `"permissionDecision": "deny", "permissionDecisionReason": "…"`
//! refuses the tool call and tells the model why.
//!
//! It always exits 0 and fails open: with no answer within 2 s (no broker,
//! an offline laptop) the edit goes ahead; under `--enforce` the model is
//! told the leases could not be checked.

use std::path::Path;
use std::time::Duration;

use claudemesh_client::leases::{Lease, describe};
use claudemesh_client::{ConnectOptions, MeshClient, SessionChoice};
use claudemesh_crypto::SessionKey;
use serde_json::{Value, json};

use crate::claude::input::ClaudeInput;
use crate::claude::sessions::own_session;
use crate::exit::Outcome;
use crate::global::{Global, open_home};
use crate::lease::Place;

/// How long the hook may take before the edit goes ahead unchecked.
const BUDGET: Duration = Duration::from_secs(2);

/// `claudemesh hook pre-edit`: prints what Claude Code is to read, if
/// anything (see the module).
pub async fn pre_edit(g: &Global, input: &ClaudeInput, enforce: bool) -> Outcome {
    let Some(file) = input.edited_file() else {
        return Ok(());
    };
    let checked = tokio::time::timeout(BUDGET, conflicts(g, input, file)).await;
    let out = match checked {
        Ok(Ok(hits)) => decision(&hits, file, enforce),
        Ok(Err(why)) => unchecked(&why, enforce),
        Err(_) => unchecked("no answer within 2 s", enforce),
    };
    if let Some(out) = out {
        use std::io::Write as _;
        // A closed stdout is Claude Code's business, not a failure here.
        let _ = writeln!(std::io::stdout(), "{out}");
    }
    Ok(())
}

/// What to say when the leases could not be checked: nothing (the edit
/// goes ahead), or under `--enforce` a note saying so.
fn unchecked(why: &str, enforce: bool) -> Option<Value> {
    tracing::info!("hook pre-edit: leases not checked: {why}");
    enforce.then(|| {
        json!({"hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "additionalContext": format!("claudemesh: could not check file leases ({why}); the edit goes ahead unchecked."),
        }})
    })
}

/// The live leases of other sessions on `file`, after a sync.
async fn conflicts(
    g: &Global,
    input: &ClaudeInput,
    file: &str,
) -> Result<Vec<(String, Lease)>, String> {
    let home = open_home(g).map_err(|f| f.message)?;
    let mesh = home
        .select_mesh(g.mesh.as_deref())
        .map_err(|e| e.to_string())?
        .clone();
    let path = Path::new(file);
    let dir = path.parent().unwrap_or(path);
    let place = Place::of(dir, None);
    let leased = place.path(dir, file).map_err(|f| f.message)?;
    // This Claude Code's own MCP sessions: their leases are its own.
    let keys = home.load_keys(&mesh.id).map_err(|e| e.to_string())?;
    // Only when this Claude Code's servers are known for sure (found
    // through the process tree): another Claude Code in the same directory
    // is another session, whose leases do stand in the way.
    let found = own_session(home.root(), input.dir());
    let own: Vec<SessionKey> = found
        .entries
        .iter()
        .filter(|_| found.certain)
        .filter_map(|e| keys.sessions.get(&format!("mcp/{}", e.name)))
        .map(|s| SessionKey(s.public().0))
        .collect();
    // A session of its own, so it replaces no other connection.
    let opts = ConnectOptions {
        session: SessionChoice::Ephemeral,
        ..ConnectOptions::for_member(&mesh)
    };
    let client = MeshClient::connect(&home, &mesh, opts)
        .await
        .map_err(|e| e.to_string())?;
    let hits = client.lease_conflicts(&place.repo, &[leased], &own).await;
    client.close().await;
    hits.map_err(|e| e.to_string())
}

/// What Claude Code reads for `hits` on `file`: nothing when there are
/// none; a warning; under `--enforce` a refusal when one is exclusive.
pub fn decision(hits: &[(String, Lease)], file: &str, enforce: bool) -> Option<Value> {
    let first = hits.first()?;
    let said: Vec<String> = hits.iter().map(|(_, l)| describe(l)).collect();
    let holder = &first.1.holder_name;
    let text = format!(
        "claudemesh: {}. Coordinate with {holder} (send_message) or pick other work before editing {file}.",
        said.join("; ")
    );
    if enforce && hits.iter().any(|(_, l)| l.exclusive) {
        return Some(json!({"hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "deny",
            "permissionDecisionReason": format!("{text} Editing refused by claudemesh --enforce."),
        }}));
    }
    Some(json!({"hookSpecificOutput": {
        "hookEventName": "PreToolUse",
        "additionalContext": text,
    }}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use claudemesh_crypto::MemberKey;
    use claudemesh_crypto::coord::CoordId;

    fn lease(exclusive: bool) -> (String, Lease) {
        let k = claudemesh_crypto::SigningKey::generate().public();
        (
            "src/net/a.rs".into(),
            Lease {
                id: CoordId([1; 16]),
                repo: "github.com/acme/api".into(),
                paths: vec!["src/net/".into()],
                exclusive,
                reason: Some("refactoring net".into()),
                holder: MemberKey(k),
                holder_name: "bob".into(),
                holder_session: SessionKey(k),
                mine: false,
                taken_at_ms: 0,
                expires_at_ms: 0,
            },
        )
    }

    #[test]
    fn a_lease_warns_and_an_exclusive_one_refuses_under_enforce() {
        assert_eq!(decision(&[], "/r/src/net/a.rs", true), None);
        let warn = decision(&[lease(true)], "/r/src/net/a.rs", false).unwrap();
        let ctx = warn["hookSpecificOutput"]["additionalContext"]
            .as_str()
            .unwrap();
        assert!(
            ctx.contains("src/net/ is leased exclusively by bob"),
            "{ctx}"
        );
        assert!(
            warn["hookSpecificOutput"]
                .get("permissionDecision")
                .is_none()
        );
        let deny = decision(&[lease(true)], "/r/src/net/a.rs", true).unwrap();
        assert_eq!(deny["hookSpecificOutput"]["permissionDecision"], "deny");
        assert!(
            deny["hookSpecificOutput"]["permissionDecisionReason"]
                .as_str()
                .unwrap()
                .ends_with("Editing refused by claudemesh --enforce.")
        );
        // A shared lease only warns, even under --enforce.
        let shared = decision(&[lease(false)], "/r/src/net/a.rs", true).unwrap();
        assert!(
            shared["hookSpecificOutput"]
                .get("permissionDecision")
                .is_none()
        );
        assert!(unchecked("offline", false).is_none());
        assert!(unchecked("offline", true).is_some());
    }
}
