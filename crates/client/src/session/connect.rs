//! Opening a session: the session key and certificate to act as (renewed
//! when it expired or soon will), the verified log to start from (fetched
//! from genesis when this device has none), and each connection: open,
//! hello, welcome, start the reader, processor and writer tasks, catch up
//! (log, grants, outbox, receipts and watermarks owed), then up.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use claudemesh_proto::hello::HelloPresence;
use futures_util::SinkExt;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use super::core::{BrokerSeen, Link, Session, lock};
use super::handshake::{ConnInfo, Greeting, greet};
use super::inbound::Work;
use super::log_sync::recover_log;
use super::options::{ConnectOptions, SessionChoice};
use super::receipts::marks_loop;
use super::supervisor::{repair_loop, supervise};
use crate::error::ClientError;
use crate::home::{Home, MeshConfig};
use crate::local::LocalStore;
use crate::mesh::{MeshState, SessionProfile, ephemeral_session, recertify, session_for};
use crate::wire;
use claudemesh_proto::clock::now_ms;

/// A started session: its shared state, what its first handshake learned,
/// and the task that owns the connection's life.
pub(crate) type Started = (Arc<Session>, Arc<ConnInfo>, tokio::task::JoinHandle<()>);

impl Session {
    /// Loads the session to act as and the verified log, then connects
    /// (retrying within [`ConnectOptions::connect_timeout`]); returns once
    /// the first connection is up and caught up.
    pub(crate) async fn start(
        home: &Home,
        local: LocalStore,
        mesh: &MeshConfig,
        opts: ConnectOptions,
    ) -> Result<Started, ClientError> {
        let now_secs = now_ms() / 1000;
        let (keys, session) = match &opts.session {
            SessionChoice::Named(name) => {
                let mut keys = home.load_keys(&mesh.id)?;
                let renew_before = opts.cert_renew_before.as_secs();
                let (session, changed) =
                    session_for(&mut keys, mesh.id, name, now_secs, renew_before)?;
                if changed {
                    let s = session.clone();
                    let name = name.clone();
                    keys = home.update_keys(&mesh.id, move |k| {
                        k.sessions.insert(name, s);
                        Ok(k.clone())
                    })?;
                }
                (keys, session)
            }
            SessionChoice::Ephemeral => {
                let keys = home.load_keys(&mesh.id)?;
                let s = ephemeral_session(&keys.member, mesh.id, now_secs)?;
                (keys, s)
            }
        };
        let mut entries = local.log_entries(&mesh.id).await?;
        if entries.is_empty() {
            // Keys but no stored log: a restored backup (it carries no
            // state.db) or a lost database. Verify the log from genesis.
            tracing::info!(mesh = %mesh.name, "no stored membership log; fetching and verifying it from genesis");
            entries = recover_log(mesh, &session, &opts.client_name, opts.connect_timeout).await?;
            local.append_log(&mesh.id, &entries).await?;
        }
        let state = MeshState::new(mesh.clone(), keys, entries, session)?;
        let inner = Arc::new(Session::new(home, local, mesh, opts, state));
        tokio::spawn(repair_loop(
            Arc::downgrade(&inner),
            inner.repair_wanted.clone(),
        ));
        tokio::spawn(marks_loop(
            Arc::downgrade(&inner),
            inner.marks_wanted.clone(),
        ));
        let (first_tx, first_rx) = oneshot::channel();
        let supervisor = tokio::spawn(supervise(inner.clone(), first_tx));
        match first_rx.await {
            Ok(Ok(info)) => Ok((inner, info, supervisor)),
            Ok(Err(e)) => {
                supervisor.abort();
                inner.stop_tasks();
                Err(e)
            }
            Err(_) => {
                supervisor.abort();
                inner.stop_tasks();
                Err(ClientError::Disconnected)
            }
        }
    }

    /// Renews this session's certificate (the member key on this device
    /// signs a new one for the same session key) when it has expired or
    /// expires within [`ConnectOptions::cert_renew_before`], or whatever the
    /// clock says after the broker refused or ended it as `cert_expired`.
    /// A named session's renewed certificate is stored (another process
    /// of this device may have renewed it already: that one is used).
    pub(super) fn renew_session_if_due(&self) -> Result<(), ClientError> {
        let now = now_ms() / 1000;
        let force = self.renew_cert.swap(false, Ordering::SeqCst);
        let renew_before = self.opts.cert_renew_before.as_secs();
        let due = self.read_state(|s| {
            let c = &s.session().cert;
            force || c.expires_at <= now.saturating_add(renew_before) || c.issued_at > now + 300
        });
        if !due {
            return Ok(());
        }
        let fresh = match &self.opts.session {
            SessionChoice::Named(name) => {
                let (name, mesh_id) = (name.clone(), self.mesh.id);
                self.home.update_keys(&self.mesh.id, move |k| {
                    if force {
                        crate::mesh::renew_session(k, mesh_id, &name, now)
                    } else {
                        session_for(k, mesh_id, &name, now, renew_before).map(|(s, _)| s)
                    }
                })?
            }
            SessionChoice::Ephemeral => {
                self.read_state(|s| recertify(s.member_key(), self.mesh.id, s.session(), now))?
            }
        };
        tracing::info!(
            expires_at = fresh.cert.expires_at,
            "renewed this session's certificate"
        );
        self.state
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .set_session(fresh);
        Ok(())
    }

    /// One connection: open, hello, welcome, start the tasks, catch up.
    pub(super) async fn establish(
        self: &Arc<Self>,
    ) -> Result<(Arc<ConnInfo>, tokio::task::JoinHandle<ClientError>), ClientError> {
        let mut opened = wire::open_with_ca(
            &self.mesh.broker_url,
            self.mesh.ca.as_deref(),
            self.opts.connect_timeout,
        )
        .await?;
        self.renew_session_if_due()?;
        let (status, profile) = lock(&self.presence).clone();
        let (session, log_head, summary, local_len) = self.read_state(|s| {
            let summary = if profile == SessionProfile::default() {
                None
            } else {
                s.seal_presence(&profile)
            };
            (
                s.session().clone(),
                s.roster().head(),
                summary,
                s.roster().len(),
            )
        });
        let greeting = Greeting {
            session: &session,
            log_head: Some(log_head),
            presence: HelloPresence {
                status,
                peer_type: self.opts.peer_type,
                summary,
            },
            client_name: &self.opts.client_name,
        };
        let info = greet(&mut opened, greeting, self.opts.connect_timeout).await?;
        if info.welcome.log_len < local_len {
            return Err(ClientError::LogFork(info.welcome.log_len));
        }
        // Before the outbox is resent below: a message to deliver later
        // goes only to a broker that holds it.
        *lock(&self.broker) = BrokerSeen {
            schedules: info.welcome.limits.scheduled,
            skew_ms: info.skew_ms,
        };
        let info = Arc::new(info);
        let (tx, mut rx) = mpsc::channel::<Message>(1024);
        let mut sink = opened.sink;
        let socket_writer = tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                let closing = matches!(m, Message::Close(_));
                if sink.send(m).await.is_err() || closing {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        *lock(&self.socket_writer) = Some(socket_writer);
        *lock(&self.writer) = Some(tx);
        let (work_tx, work_rx) = mpsc::channel::<Work>(4096);
        tokio::spawn(self.clone().process_loop(work_rx));
        let reader = tokio::spawn(self.clone().read_loop(opened.stream, work_tx));
        let caught_up = async {
            self.sync_log().await?;
            // The broker enforces the grants: hand it this device's copy on
            // every connect (it keeps the newest version it has seen).
            if let Some(set) = self.local_grants()
                && let Err(e) = self.push_grants(&set).await
            {
                tracing::warn!(error = %e, "the broker did not take the grants");
            }
            for pending in self.local.outbox_pending_sends(&self.mesh.id).await? {
                let env = &pending.envelope;
                self.note_reply(env.id, env.reply_to, &env.target);
                self.resend(pending).await?;
            }
            // What the last connection may have lost: the watermarks, and
            // the receipts still owed. Retried on the next connection if
            // this fails; the connection itself is fine.
            if let Err(e) = self.resend_receipts().await {
                tracing::warn!(error = %e, "could not send the receipts owed");
            }
            Ok::<(), ClientError>(())
        };
        if let Err(e) = caught_up.await {
            reader.abort();
            lock(&self.writer).take();
            return Err(e);
        }
        let _ = self.link.send_replace(Link::Up);
        Ok((info, reader))
    }
}
