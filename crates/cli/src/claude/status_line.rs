//! `claudemesh status-line`: the line Claude Code shows in its status bar
//! (install puts it in `settings.json` with `--status-line`), read from
//! the running server's entry in `<home>/run/` or from the home alone,
//! never from the network.

use crate::claude::input::claude_input;
use crate::claude::sessions::own_entries;
use crate::exit::Outcome;
use crate::global::{Global, open_home};

/// `claudemesh status-line`: one line for Claude Code's status bar, from
/// the running server's entry (mesh · session · peers online · unread), or
/// from the home alone when no server runs. Never fails, never touches the
/// network.
pub async fn status_line(g: &Global) -> Outcome {
    let input = claude_input();
    println!("{}", status_line_text(g, input.dir()).await);
    Ok(())
}

async fn status_line_text(g: &Global, dir: Option<&str>) -> String {
    let home = match open_home(g) {
        Ok(h) => h,
        Err(_) => return "claudemesh: no home (run `claudemesh join <invite>`)".into(),
    };
    if let Some(e) = own_entries(home.root(), dir).into_iter().next() {
        if e.link == "no-mesh" {
            return "claudemesh: not in a mesh (`claudemesh join <invite>`)".into();
        }
        let link = match e.link.as_str() {
            "up" => format!("{} online", e.peers_online),
            "connecting" => "connecting".into(),
            _ => "offline".into(),
        };
        return format!("◆ {} · {} · {link} · {} unread", e.mesh, e.name, e.unread);
    }
    let Ok(mesh) = home.select_mesh(g.mesh.as_deref()).cloned() else {
        return "claudemesh: not in a mesh (`claudemesh join <invite>`)".into();
    };
    let unread = match claudemesh_client::local::LocalStore::open(&home.state_db_path()).await {
        Ok(store) => store.unread_count(&mesh.id).await.unwrap_or(0),
        Err(_) => 0,
    };
    format!("◆ {} · no session · {unread} unread", mesh.name)
}
