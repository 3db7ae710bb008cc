//! Typed mutations and the transaction payload that carries them in the log.
//!
//! Responsible for: the closed set of changes the API can make ([`Mutation`]), and the
//! encoding of a [`Txn`] (one tenant, several mutations, applied all or nothing) as a record
//! payload. Not responsible for: validating a mutation against the state or applying it
//! (`state`), or framing (`record`).

use crate::codec::{DecodeError, Decoder, Encoder};
use crate::model::{
    Agent, ApiKey, Message, Project, PublicKey, Secret, Session, StoredMessage, StreamEvent,
    Tenant, User,
};

/// One change to the state. `Put*` creates or replaces a whole resource by id; `Delete*`
/// removes one. Uniqueness and existence are checked when the mutation is committed.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    /// Create or replace the transaction's tenant (its id must equal the transaction's).
    PutTenant(Tenant),
    /// Create or replace a user (email unique within the tenant).
    PutUser(User),
    /// Remove a user.
    DeleteUser {
        /// User id.
        id: String,
    },
    /// Create or replace an API key (name unique among the tenant's keys not revoked).
    PutApiKey(ApiKey),
    /// Remove an API key for good.
    DeleteApiKey {
        /// Key id.
        id: String,
    },
    /// Create or replace a project (slug unique within the tenant).
    PutProject(Project),
    /// Remove a project with its agents, sessions, messages, secrets and public keys.
    DeleteProject {
        /// Project id.
        id: String,
    },
    /// Create or replace an agent (name unique within its project; the project must exist).
    PutAgent(Agent),
    /// Remove an agent.
    DeleteAgent {
        /// Project id.
        project_id: String,
        /// Agent id.
        id: String,
    },
    /// Create or replace a session (the project must exist). Replacing keeps the messages.
    PutSession(Session),
    /// Append a message to a session and update its counters: `message_count + 1`,
    /// `token_count + usage.total_tokens`, `last_activity_at = created_at`.
    AppendMessage {
        /// Project id.
        project_id: String,
        /// Session id.
        session_id: String,
        /// The message, encoded.
        message: StoredMessage,
    },
    /// Drop a session's messages (reset): `message_count` becomes 0, `token_count` stays.
    ClearMessages {
        /// Project id.
        project_id: String,
        /// Session id.
        session_id: String,
    },
    /// Create or replace a secret by id (name unique within the project).
    PutSecret(Secret),
    /// Remove a secret by name.
    DeleteSecret {
        /// Project id.
        project_id: String,
        /// Secret name.
        name: String,
    },
    /// Create or replace a widget public key.
    PutPublicKey(PublicKey),
    /// Remove a widget public key.
    DeletePublicKey {
        /// Project id.
        project_id: String,
        /// Key id.
        id: String,
    },
    /// Open a resumable stream owned by a principal (the only one allowed to resume it).
    /// Starting an existing id replaces that stream and drops its events.
    StartStream {
        /// Stream id.
        stream_id: String,
        /// Principal id of the creator.
        owner: String,
        /// Start time, ms since the epoch; streams expire a retention after it. 0 means
        /// unknown: the stream was started by a version that did not record it (tag 17).
        created_at: u64,
    },
    /// Store one SSE event of a stream (the stream must have been started). Kept for logs
    /// written before [`Mutation::AppendStreamEvents`]; the same id rule applies.
    AppendStreamEvent {
        /// Stream id.
        stream_id: String,
        /// The event.
        event: StreamEvent,
    },
    /// Store a batch of SSE events of a stream in one record (the stream must have been
    /// started). Ids must be strictly increasing and greater than the stream's last stored
    /// id, or the commit is refused and nothing is applied. An empty batch changes nothing.
    AppendStreamEvents {
        /// Stream id.
        stream_id: String,
        /// The events, in id order.
        events: Vec<StreamEvent>,
    },
    /// Drop a stream and its events.
    DeleteStream {
        /// Stream id.
        stream_id: String,
    },
    /// Set a server-wide key (e.g. the generated JWT secret). Tenant-independent.
    SetMeta {
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
    },
    /// Snapshot-only: append a message without touching the session's counters (the
    /// snapshot's `PutSession` already carries them).
    RestoreMessage {
        /// Project id.
        project_id: String,
        /// Session id.
        session_id: String,
        /// The message, encoded.
        message: StoredMessage,
    },
}

impl Mutation {
    /// Convenience: an `AppendMessage` from a decoded message.
    pub fn append_message(project_id: &str, session_id: &str, message: &Message) -> Mutation {
        Mutation::AppendMessage {
            project_id: project_id.to_owned(),
            session_id: session_id.to_owned(),
            message: StoredMessage::new(message),
        }
    }

    /// Writes the mutation: a tag byte, then its fields.
    pub fn encode(&self, e: &mut Encoder) {
        match self {
            Mutation::PutTenant(t) => {
                e.u8(1);
                t.encode(e)
            }
            Mutation::PutUser(u) => {
                e.u8(2);
                u.encode(e)
            }
            Mutation::DeleteUser { id } => {
                e.u8(3);
                e.str(id)
            }
            Mutation::PutApiKey(k) => {
                e.u8(4);
                k.encode(e)
            }
            Mutation::DeleteApiKey { id } => {
                e.u8(5);
                e.str(id)
            }
            Mutation::PutProject(p) => {
                e.u8(6);
                p.encode(e)
            }
            Mutation::DeleteProject { id } => {
                e.u8(7);
                e.str(id)
            }
            Mutation::PutAgent(a) => {
                e.u8(8);
                a.encode(e)
            }
            Mutation::DeleteAgent { project_id, id } => {
                e.u8(9);
                e.str(project_id);
                e.str(id)
            }
            Mutation::PutSession(s) => {
                e.u8(10);
                s.encode(e)
            }
            Mutation::AppendMessage {
                project_id,
                session_id,
                message,
            } => encode_message(e, 11, project_id, session_id, message),
            Mutation::ClearMessages {
                project_id,
                session_id,
            } => {
                e.u8(12);
                e.str(project_id);
                e.str(session_id)
            }
            Mutation::PutSecret(s) => {
                e.u8(13);
                s.encode(e)
            }
            Mutation::DeleteSecret { project_id, name } => {
                e.u8(14);
                e.str(project_id);
                e.str(name)
            }
            Mutation::PutPublicKey(k) => {
                e.u8(15);
                k.encode(e)
            }
            Mutation::DeletePublicKey { project_id, id } => {
                e.u8(16);
                e.str(project_id);
                e.str(id)
            }
            // Always the newer tag 22; tag 17 (no start time) is only ever decoded.
            Mutation::StartStream {
                stream_id,
                owner,
                created_at,
            } => {
                e.u8(22);
                e.str(stream_id);
                e.str(owner);
                e.varint(*created_at)
            }
            Mutation::AppendStreamEvent { stream_id, event } => {
                e.u8(18);
                e.str(stream_id);
                event.encode(e)
            }
            Mutation::DeleteStream { stream_id } => {
                e.u8(19);
                e.str(stream_id)
            }
            Mutation::SetMeta { key, value } => {
                e.u8(20);
                e.str(key);
                e.bytes(value)
            }
            Mutation::RestoreMessage {
                project_id,
                session_id,
                message,
            } => encode_message(e, 21, project_id, session_id, message),
            Mutation::AppendStreamEvents { stream_id, events } => {
                e.u8(23);
                encode_events(e, stream_id, events)
            }
        }
    }

    /// Reads one mutation.
    pub fn decode(d: &mut Decoder<'_>) -> Result<Mutation, DecodeError> {
        let tag = d.u8()?;
        Ok(match tag {
            1 => Mutation::PutTenant(Tenant::decode(d)?),
            2 => Mutation::PutUser(User::decode(d)?),
            3 => Mutation::DeleteUser { id: d.string()? },
            4 => Mutation::PutApiKey(ApiKey::decode(d)?),
            5 => Mutation::DeleteApiKey { id: d.string()? },
            6 => Mutation::PutProject(Project::decode(d)?),
            7 => Mutation::DeleteProject { id: d.string()? },
            8 => Mutation::PutAgent(Agent::decode(d)?),
            9 => Mutation::DeleteAgent {
                project_id: d.string()?,
                id: d.string()?,
            },
            10 => Mutation::PutSession(Session::decode(d)?),
            11 => {
                let (project_id, session_id, message) = decode_message(d)?;
                Mutation::AppendMessage {
                    project_id,
                    session_id,
                    message,
                }
            }
            12 => Mutation::ClearMessages {
                project_id: d.string()?,
                session_id: d.string()?,
            },
            13 => Mutation::PutSecret(Secret::decode(d)?),
            14 => Mutation::DeleteSecret {
                project_id: d.string()?,
                name: d.string()?,
            },
            15 => Mutation::PutPublicKey(PublicKey::decode(d)?),
            16 => Mutation::DeletePublicKey {
                project_id: d.string()?,
                id: d.string()?,
            },
            17 => Mutation::StartStream {
                stream_id: d.string()?,
                owner: d.string()?,
                created_at: 0,
            },
            18 => Mutation::AppendStreamEvent {
                stream_id: d.string()?,
                event: StreamEvent::decode(d)?,
            },
            19 => Mutation::DeleteStream {
                stream_id: d.string()?,
            },
            20 => Mutation::SetMeta {
                key: d.string()?,
                value: d.bytes()?.to_vec(),
            },
            21 => {
                let (project_id, session_id, message) = decode_message(d)?;
                Mutation::RestoreMessage {
                    project_id,
                    session_id,
                    message,
                }
            }
            22 => Mutation::StartStream {
                stream_id: d.string()?,
                owner: d.string()?,
                created_at: d.varint()?,
            },
            23 => {
                let (stream_id, events) = decode_events(d)?;
                Mutation::AppendStreamEvents { stream_id, events }
            }
            t => {
                return Err(DecodeError::BadTag {
                    what: "mutation",
                    tag: t as u64,
                })
            }
        })
    }
}

fn encode_message(e: &mut Encoder, tag: u8, pid: &str, sid: &str, m: &StoredMessage) {
    e.u8(tag);
    e.str(pid);
    e.str(sid);
    // Length-prefixed so that replay can copy the message bytes without re-encoding them.
    e.bytes(m.as_bytes());
}

fn decode_message(d: &mut Decoder<'_>) -> Result<(String, String, StoredMessage), DecodeError> {
    let pid = d.string()?;
    let sid = d.string()?;
    let msg = StoredMessage::from_bytes(d.bytes()?)?;
    Ok((pid, sid, msg))
}

/// Writes a batch of stream events (see the crate doc's table for the layout). A token
/// event repeats its name and differs from the previous one by 1 in id, so the name
/// back-reference and the id delta make both one byte; the deltas wrap, so that any id
/// sequence (even one that `apply` will refuse) encodes and decodes to itself.
fn encode_events(e: &mut Encoder, stream_id: &str, events: &[StreamEvent]) {
    e.str(stream_id);
    e.varint(events.len() as u64);
    let (mut prev_id, mut prev_name) = (0u64, "");
    for ev in events {
        e.varint(ev.id.wrapping_sub(prev_id));
        if ev.event == prev_name {
            e.varint(0);
        } else {
            e.varint(ev.event.len() as u64 + 1);
            e.raw(ev.event.as_bytes());
        }
        e.str(&ev.data);
        (prev_id, prev_name) = (ev.id, &ev.event);
    }
}

/// Smallest encoded event: a one-byte id delta, name reference and data length.
const MIN_EVENT_BYTES: usize = 3;

fn decode_events(d: &mut Decoder<'_>) -> Result<(String, Vec<StreamEvent>), DecodeError> {
    let stream_id = d.string()?;
    let n = d.varint()?;
    // Checked before allocating, so that a damaged count cannot reserve gigabytes.
    if n > (d.remaining() / MIN_EVENT_BYTES) as u64 {
        return Err(DecodeError::BadLength);
    }
    let mut events: Vec<StreamEvent> = Vec::with_capacity(n as usize);
    let mut prev_id = 0u64;
    for _ in 0..n {
        let id = prev_id.wrapping_add(d.varint()?);
        let event = match d.varint()? {
            0 => events.last().map_or_else(String::new, |p| p.event.clone()),
            k => {
                let len = usize::try_from(k - 1).map_err(|_| DecodeError::BadLength)?;
                let name = std::str::from_utf8(d.take(len)?);
                name.map_err(|_| DecodeError::InvalidUtf8)?.to_owned()
            }
        };
        let data = d.string()?;
        events.push(StreamEvent { id, event, data });
        prev_id = id;
    }
    Ok((stream_id, events))
}

/// A transaction: the mutations of one commit, for one tenant. It is one log record, so a
/// crash leaves either all of it or none of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Txn {
    /// Tenant id (empty for server-wide `SetMeta`).
    pub tenant: String,
    /// The mutations, applied in order.
    pub mutations: Vec<Mutation>,
}

impl Txn {
    /// Writes the payload: tenant, count, mutations.
    pub fn encode_parts(tenant: &str, mutations: &[Mutation], e: &mut Encoder) {
        e.str(tenant);
        e.varint(mutations.len() as u64);
        for m in mutations {
            m.encode(e);
        }
    }

    /// Writes the payload.
    pub fn encode(&self, e: &mut Encoder) {
        Txn::encode_parts(&self.tenant, &self.mutations, e)
    }

    /// Reads a whole payload; trailing bytes are an error.
    pub fn decode(payload: &[u8]) -> Result<Txn, DecodeError> {
        let mut d = Decoder::new(payload);
        let tenant = d.string()?;
        let n = d.varint()?;
        // Every mutation takes at least one byte: a larger count is damage.
        if n > payload.len() as u64 {
            return Err(DecodeError::BadLength);
        }
        let mut mutations = Vec::with_capacity(n as usize);
        for _ in 0..n {
            mutations.push(Mutation::decode(&mut d)?);
        }
        d.finish()?;
        Ok(Txn { tenant, mutations })
    }
}
