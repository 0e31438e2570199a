//! Acting on what other brokers said: a batch of wake-ups at a time, per
//! mesh: adopt their log entries and grant sets, refresh their sessions, and
//! push the messages they stored to recipients connected here, by the same
//! rule as a local delivery ([`crate::route`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use claudemesh_crypto::envelope::Target;
use claudemesh_crypto::{MeshId, PublicKey};
use tokio::sync::mpsc;

use super::replica::Replication;
use super::wake::{Incoming, Wake, merge};
use crate::delivery::{deliver_live, wake_drain};
use crate::mesh::MeshHub;
use crate::metrics as m;
use crate::route;
use crate::state::BrokerState;
use crate::store::StoreError;
use crate::wire::deliver_text;

/// Acts on notifications, a batch at a time.
pub(super) async fn process_loop(
    state: Arc<BrokerState>,
    rep: Arc<Replication>,
    mut rx: mpsc::Receiver<Wake>,
) {
    while let Some(first) = rx.recv().await {
        let mut all = false;
        let mut meshes: HashMap<MeshId, Incoming> = HashMap::new();
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(w) = next.take() {
            all |= w.all;
            for mw in w.m {
                merge(&mut meshes, mw);
            }
            taken += 1;
            if taken < 256 {
                next = rx.try_recv().ok();
            }
        }
        if all {
            for mesh in state.hub.loaded_meshes() {
                recheck(&state, &rep, &mesh).await;
            }
            continue;
        }
        for (id, inc) in meshes {
            let Some(mesh) = state.hub.loaded(&id) else {
                continue;
            };
            if let Err(e) = handle(&state, &rep, &mesh, inc).await {
                metrics::counter!(m::STORE_ERRORS).increment(1);
                tracing::warn!(error = %e, "acting on a wake-up failed; rechecking the mesh");
                recheck(&state, &rep, &mesh).await;
            }
        }
    }
}

/// Everything about a mesh, from the tables: log, grants, the other
/// replicas' sessions, and a drain of every session here.
pub(super) async fn recheck(state: &Arc<BrokerState>, rep: &Replication, mesh: &Arc<MeshHub>) {
    if let Err(e) = rep.refresh_mesh(mesh).await {
        tracing::warn!(error = %e, "could not recheck a mesh");
    }
    for s in mesh.sessions().all() {
        wake_drain(state.clone(), mesh.clone(), s);
    }
}

/// Acts on what arrived for one mesh.
async fn handle(
    state: &Arc<BrokerState>,
    rep: &Replication,
    mesh: &Arc<MeshHub>,
    inc: Incoming,
) -> Result<(), StoreError> {
    if inc.recheck {
        recheck(state, rep, mesh).await;
        return Ok(());
    }
    if inc.log_len > mesh.read_log(|l| l.roster.len()) {
        rep.catch_up_log(mesh).await;
    }
    if !inc.grants.is_empty() {
        let members: Vec<PublicKey> = inc.grants.into_iter().collect();
        let stored = rep.store.grants_of(&mesh.id, &members).await?;
        mesh.reload_grants(&members, stored);
    }
    if !inc.presence.is_empty() {
        let members: Vec<PublicKey> = inc.presence.into_iter().collect();
        rep.refresh_presence(mesh, Some(&members)).await?;
    }
    if !inc.coord.is_empty() {
        let kinds: Vec<_> = inc.coord.into_iter().collect();
        mesh.coord_changed(&kinds, None);
    }
    deliver_direct(rep, mesh, inc.direct).await?;
    deliver_fanout(rep, mesh, inc.fanout).await
}

/// Whether a recipient key (member or session) has a connection here.
fn is_here(mesh: &MeshHub, key: &PublicKey) -> bool {
    mesh.sessions().get(key).is_some() || !mesh.sessions().of_member(key).is_empty()
}

/// Pushes direct messages stored elsewhere to their recipients connected
/// here, as a live delivery would.
async fn deliver_direct(
    rep: &Replication,
    mesh: &MeshHub,
    direct: Vec<(u64, Vec<PublicKey>)>,
) -> Result<(), StoreError> {
    let mut seqs = Vec::new();
    let mut here = BTreeSet::new();
    for (seq, recipients) in direct {
        let mut any = false;
        for r in recipients {
            if is_here(mesh, &r) {
                here.insert(r);
                any = true;
            }
        }
        if any {
            seqs.push(seq);
        }
    }
    if seqs.is_empty() {
        return Ok(());
    }
    let here: Vec<PublicKey> = here.into_iter().collect();
    let rows = rep.store.direct_rows(&mesh.id, &seqs, &here).await?;
    let mut i = 0;
    while i < rows.len() {
        let first = &rows[i];
        let mut recipients = vec![first.recipient];
        let mut j = i + 1;
        while j < rows.len() && rows[j].seq == first.seq {
            recipients.push(rows[j].recipient);
            j += 1;
        }
        let frame = deliver_text(
            first.seq,
            &first.envelope_json,
            first.queued_at_ms,
            None,
            first.deadline_ms,
        );
        let n = deliver_live(mesh, &recipients, first.priority, &frame);
        metrics::counter!(m::PUSHED).increment(n as u64);
        i = j;
    }
    Ok(())
}

/// Pushes fan-out messages stored elsewhere to the members connected here
/// that were recipients as of send time.
async fn deliver_fanout(
    rep: &Replication,
    mesh: &MeshHub,
    fanout: Vec<(u64, String)>,
) -> Result<(), StoreError> {
    if fanout.is_empty() {
        return Ok(());
    }
    let members: BTreeSet<PublicKey> = mesh.sessions().all().iter().map(|s| s.member).collect();
    if members.is_empty() {
        return Ok(());
    }
    let seqs: Vec<u64> = fanout.iter().map(|(s, _)| *s).collect();
    let rows = rep.store.fanout_rows(&mesh.id, &seqs).await?;
    if rows
        .iter()
        .any(|r| r.at_len > mesh.read_log(|l| l.roster.len()))
    {
        rep.catch_up_log(mesh).await;
    }
    for row in rows {
        let Ok(target) = row.target.parse::<Target>() else {
            continue;
        };
        // Recipients as of send time, by the same rule as a drain.
        let recipients: Vec<PublicKey> = mesh.read_log(|l| {
            members
                .iter()
                .filter(|m| {
                    route::receives(&l.roster, m, &row.sender, &target, row.at_len, || {
                        route::grants_let(mesh, m, &row.sender, &target)
                    })
                })
                .copied()
                .collect()
        });
        if recipients.is_empty() {
            continue;
        }
        let frame = deliver_text(
            row.seq,
            &row.envelope_json,
            row.queued_at_ms,
            row.tseq,
            row.deadline_ms,
        );
        let n = deliver_live(mesh, &recipients, row.priority, &frame);
        metrics::counter!(m::PUSHED).increment(n as u64);
    }
    Ok(())
}
