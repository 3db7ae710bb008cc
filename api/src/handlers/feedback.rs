//! `POST /api/v1/feedback`: a rating of one message of a session, one per message and
//! rater (a second from the same rater replaces the first, keeping its id). A widget's SDK
//! token rates the messages of its own sessions only, like it reads them.

use halyard_engine::Reply;
use halyard_storage::{ids, Feedback, Mutation, Page, Rating};
use serde_json::{json, Value};

use super::sessions::sees_session;
use super::Call;
use crate::body::{Field, Fields};
use crate::error::{ApiError, ApiResult};
use crate::{reply, time};

/// The longest comment.
pub const MAX_COMMENT: usize = 2000;

/// The body of `POST /api/v1/feedback`.
pub(super) const BODY: &[Field] = &[
    Field::text("sessionId", 1, 64).required(),
    Field::text("messageId", 1, 64).required(),
    Field::one_of("rating", &["positive", "negative"]).required(),
    Field::text("comment", 0, MAX_COMMENT),
];

/// A rating's name.
pub fn rating_name(r: Rating) -> &'static str {
    match r {
        Rating::Positive => "positive",
        Rating::Negative => "negative",
    }
}

/// Feedback as the API shows it.
pub fn view(f: &Feedback) -> Value {
    json!({
        "id": f.id,
        "sessionId": f.session_id,
        "messageId": f.message_id,
        "rating": rating_name(f.rating),
        "comment": f.comment,
        "createdAt": time::iso(f.created_at),
        "updatedAt": time::iso(f.updated_at),
    })
}

/// `POST /api/v1/feedback` (`201` with the feedback as stored).
pub fn give(c: &Call<'_>) -> ApiResult<Reply> {
    let body = c.body()?;
    let mut f = Fields::of(&body, BODY)?;
    let session_id = f.str("sessionId").unwrap_or_default();
    let message_id = f.str("messageId").unwrap_or_default();
    let rating = match f.str("rating") {
        Some("negative") => Rating::Negative,
        _ => Rating::Positive,
    };
    let comment = f.str("comment").map(String::from);
    f.finish()?;
    let p = c.principal()?;
    let store = &c.api.store;
    let not_found = || ApiError::NotFound(format!("Session not found: {session_id}"));
    let (_, project_id) = store
        .locate_session(session_id)
        .filter(|(t, _)| *t == p.tenant)
        .ok_or_else(not_found)?;
    store
        .session(&p.tenant, &project_id, session_id)
        .filter(|s| sees_session(p, s))
        .ok_or_else(not_found)?;
    let messages = store.messages(&p.tenant, &project_id, session_id, Page::ALL);
    if !messages.is_some_and(|m| m.items.iter().any(|m| m.id == message_id)) {
        return Err(ApiError::NotFound(format!(
            "Message not found: {message_id}"
        )));
    }
    let now = time::now_ms();
    let earlier = store
        .feedback(&p.tenant, &project_id, session_id)
        .into_iter()
        .find(|f| f.message_id == message_id && f.author == p.id);
    let fb = Feedback {
        id: earlier
            .as_ref()
            .map_or_else(|| ids::new_id(ids::FEEDBACK), |e| e.id.clone()),
        project_id,
        session_id: session_id.to_string(),
        message_id: message_id.to_string(),
        author: p.id.clone(),
        rating,
        comment,
        created_at: earlier.as_ref().map_or(now, |e| e.created_at),
        updated_at: now,
    };
    let resp = reply::created(vec![("feedback", view(&fb))]);
    c.commit(vec![Mutation::PutFeedback(fb)], resp)
}
