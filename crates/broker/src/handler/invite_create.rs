//! `invite_create`: a member appends an `invite` entry with its encrypted
//! welcome bundle (TM6). The joiner's side, before any hello, is
//! `invite_fetch` and `invite_join`.

use claudemesh_crypto::log::EntryBody;
use claudemesh_proto::ErrorCode;
use claudemesh_proto::frames::InviteCreate;
use claudemesh_proto::limits::MAX_BUNDLE_BYTES;

use super::log_append::append_and_answer;
use super::{Caller, Context, Handle, Refusal, Reply};
use crate::store::AppendExtras;

impl Handle for InviteCreate {
    async fn handle(self, caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        create(caller, self).await
    }
}

/// `invite_create`: appends the `invite` entry and stores its bundle.
async fn create(caller: Caller<'_>, f: InviteCreate) -> Result<Reply, Refusal> {
    let EntryBody::Invite { invite_key, .. } = &f.entry.body else {
        return Err(Refusal::new(
            ErrorCode::Malformed,
            "invite_create carries an invite entry",
        ));
    };
    if f.bundle.len() > MAX_BUNDLE_BYTES {
        return Err(Refusal::new(
            ErrorCode::Malformed,
            "welcome bundle is too large",
        ));
    }
    let extras = AppendExtras {
        new_invite: Some((*invite_key, f.bundle)),
        used_invite: None,
    };
    append_and_answer(caller, f.req, vec![f.entry], extras).await
}
