//! Typed mutations and the transaction payload that carries them in the log.
//!
//! Responsible for: the closed set of changes the API can make ([`Mutation`]), and the
//! encoding of a [`Txn`] (one tenant, several mutations, applied all or nothing) as a record
//! payload. Not responsible for: validating a mutation against the state or applying it
//! (`state`), or framing (`record`).

use crate::codec::{codec_enum, encode_list, Codec, DecodeError, Decoder, Encoder};
use crate::model::{
    Agent, AgentV0, AgentVersion, ApiKey, Deployment, Feedback, Message, Project, PublicKey,
    Secret, Session, StoredMessage, StreamEvent, Tenant, Tool, TraceEvent, User,
};

codec_enum! {
    /// The byte before each mutation in a payload. A tag keeps its meaning forever; tags
    /// only older code writes are still read.
    pub enum MutationTag ("mutation") {
        /// [`Mutation::PutTenant`].
        PutTenant = 1,
        /// [`Mutation::PutUser`].
        PutUser = 2,
        /// [`Mutation::DeleteUser`].
        DeleteUser = 3,
        /// [`Mutation::PutApiKey`].
        PutApiKey = 4,
        /// [`Mutation::DeleteApiKey`].
        DeleteApiKey = 5,
        /// [`Mutation::PutProject`].
        PutProject = 6,
        /// [`Mutation::DeleteProject`].
        DeleteProject = 7,
        /// [`Mutation::PutAgent`] as written before tools (read only, see [`AgentV0`]).
        PutAgentV0 = 8,
        /// [`Mutation::DeleteAgent`].
        DeleteAgent = 9,
        /// [`Mutation::PutSession`].
        PutSession = 10,
        /// [`Mutation::AppendMessage`].
        AppendMessage = 11,
        /// [`Mutation::ClearMessages`].
        ClearMessages = 12,
        /// [`Mutation::PutSecret`].
        PutSecret = 13,
        /// [`Mutation::DeleteSecret`].
        DeleteSecret = 14,
        /// [`Mutation::PutPublicKey`].
        PutPublicKey = 15,
        /// [`Mutation::DeletePublicKey`].
        DeletePublicKey = 16,
        /// [`Mutation::StartStream`] without a start time (read only; read as 0).
        StartStreamUntimed = 17,
        /// [`Mutation::AppendStreamEvent`] (one event, from before batches).
        AppendStreamEvent = 18,
        /// [`Mutation::DeleteStream`].
        DeleteStream = 19,
        /// [`Mutation::SetMeta`].
        SetMeta = 20,
        /// [`Mutation::RestoreMessage`].
        RestoreMessage = 21,
        /// [`Mutation::StartStream`] with its start time.
        StartStream = 22,
        /// [`Mutation::AppendStreamEvents`].
        AppendStreamEvents = 23,
        /// [`Mutation::DeleteTenant`].
        DeleteTenant = 24,
        /// [`Mutation::PutAgent`] with the agent's tools.
        PutAgent = 25,
        /// [`Mutation::PutTool`].
        PutTool = 26,
        /// [`Mutation::DeleteTool`].
        DeleteTool = 27,
        /// [`Mutation::AppendTraces`].
        AppendTraces = 28,
        /// [`Mutation::PutAgentVersion`].
        PutAgentVersion = 29,
        /// [`Mutation::PutDeployment`].
        PutDeployment = 30,
        /// [`Mutation::SetSessionDeployment`].
        SetSessionDeployment = 31,
        /// [`Mutation::PutFeedback`].
        PutFeedback = 32,
        /// [`Mutation::StartStream`] with the node that runs it (a shared store).
        StartStreamOnNode = 33,
    }
}

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
    /// Create or replace a tool (name unique within its project; the project must exist).
    PutTool(Tool),
    /// Remove a tool.
    DeleteTool {
        /// Project id.
        project_id: String,
        /// Tool id.
        id: String,
    },
    /// Add an agent version (the project must exist; its number must follow the agent
    /// name's last, starting at 1).
    PutAgentVersion(AgentVersion),
    /// Create or replace a deployment (the project must exist; at most one active per
    /// environment: supersede the old one earlier in the same transaction).
    PutDeployment(Deployment),
    /// Bind a session to the deployment whose pinned versions it runs, for its life (the
    /// session must exist).
    SetSessionDeployment {
        /// Project id.
        project_id: String,
        /// Session id.
        session_id: String,
        /// Deployment id.
        deployment_id: String,
    },
    /// Create or replace a rater's feedback on a message (the session must exist; one per
    /// message and author: the same pair replaces).
    PutFeedback(Feedback),
    /// Append events to a session's trace (the session must exist).
    AppendTraces {
        /// Project id.
        project_id: String,
        /// Session id.
        session_id: String,
        /// The events, in order.
        events: Vec<TraceEvent>,
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
        /// Id of the node that runs it on a shared store, so that another node can tell
        /// once it is gone; empty on the embedded store (written with tag 22, not 33).
        node: String,
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
    /// Remove the transaction's tenant (its id must equal the transaction's) and everything
    /// it owns: users, API keys, projects with their agents, sessions, messages, secrets
    /// and public keys, and streams, with every cross-tenant index entry that points at
    /// them. Snapshots leave the tenant out, so compaction reclaims its bytes.
    DeleteTenant {
        /// Tenant id.
        id: String,
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

    /// About how many bytes the encoding takes (a first capacity for the record's buffer):
    /// a stream's batch of events by their text, any other mutation a small record.
    pub fn size_hint(&self) -> usize {
        const SMALL: usize = 256;
        match self {
            Mutation::AppendStreamEvents { stream_id, events } => {
                // Per event: its id and two length prefixes, at most 10 bytes each; the tag,
                // the id's prefix and the count at most 21 in all.
                let text: usize = events
                    .iter()
                    .map(|e| e.event.len() + e.data.len() + 30)
                    .sum();
                stream_id.len() + text + 32
            }
            _ => SMALL,
        }
    }

    /// The tag this mutation is written with (a `StartStream` gets 22, or 33 with a node).
    pub fn tag(&self) -> MutationTag {
        match self {
            Mutation::PutTenant(_) => MutationTag::PutTenant,
            Mutation::PutUser(_) => MutationTag::PutUser,
            Mutation::DeleteUser { .. } => MutationTag::DeleteUser,
            Mutation::PutApiKey(_) => MutationTag::PutApiKey,
            Mutation::DeleteApiKey { .. } => MutationTag::DeleteApiKey,
            Mutation::PutProject(_) => MutationTag::PutProject,
            Mutation::DeleteProject { .. } => MutationTag::DeleteProject,
            Mutation::PutAgent(_) => MutationTag::PutAgent,
            Mutation::DeleteAgent { .. } => MutationTag::DeleteAgent,
            Mutation::PutSession(_) => MutationTag::PutSession,
            Mutation::AppendMessage { .. } => MutationTag::AppendMessage,
            Mutation::ClearMessages { .. } => MutationTag::ClearMessages,
            Mutation::PutSecret(_) => MutationTag::PutSecret,
            Mutation::DeleteSecret { .. } => MutationTag::DeleteSecret,
            Mutation::PutPublicKey(_) => MutationTag::PutPublicKey,
            Mutation::DeletePublicKey { .. } => MutationTag::DeletePublicKey,
            Mutation::StartStream { node, .. } if !node.is_empty() => {
                MutationTag::StartStreamOnNode
            }
            Mutation::StartStream { .. } => MutationTag::StartStream,
            Mutation::AppendStreamEvent { .. } => MutationTag::AppendStreamEvent,
            Mutation::DeleteStream { .. } => MutationTag::DeleteStream,
            Mutation::SetMeta { .. } => MutationTag::SetMeta,
            Mutation::RestoreMessage { .. } => MutationTag::RestoreMessage,
            Mutation::AppendStreamEvents { .. } => MutationTag::AppendStreamEvents,
            Mutation::DeleteTenant { .. } => MutationTag::DeleteTenant,
            Mutation::PutTool(_) => MutationTag::PutTool,
            Mutation::DeleteTool { .. } => MutationTag::DeleteTool,
            Mutation::AppendTraces { .. } => MutationTag::AppendTraces,
            Mutation::PutAgentVersion(_) => MutationTag::PutAgentVersion,
            Mutation::PutDeployment(_) => MutationTag::PutDeployment,
            Mutation::SetSessionDeployment { .. } => MutationTag::SetSessionDeployment,
            Mutation::PutFeedback(_) => MutationTag::PutFeedback,
        }
    }
}

/// Encodes a mutation's fields one after another, in the order given.
macro_rules! fields {
    ($e:expr; $($f:expr),+) => {{
        $( Codec::encode($f, $e); )+
    }};
}

/// A tag byte, then the fields in declaration order (the crate doc's table).
impl Codec<'_> for Mutation {
    fn encode(&self, e: &mut Encoder) {
        self.tag().encode(e);
        match self {
            Mutation::PutTenant(t) => t.encode(e),
            Mutation::PutUser(u) => u.encode(e),
            Mutation::PutApiKey(k) => k.encode(e),
            Mutation::PutProject(p) => p.encode(e),
            Mutation::PutAgent(a) => a.encode(e),
            Mutation::PutSession(s) => s.encode(e),
            Mutation::PutSecret(s) => s.encode(e),
            Mutation::PutPublicKey(k) => k.encode(e),
            Mutation::PutTool(t) => t.encode(e),
            Mutation::PutAgentVersion(v) => v.encode(e),
            Mutation::PutDeployment(d) => d.encode(e),
            Mutation::PutFeedback(f) => f.encode(e),
            Mutation::SetSessionDeployment {
                project_id,
                session_id,
                deployment_id,
            } => fields!(e; project_id, session_id, deployment_id),
            Mutation::DeleteUser { id }
            | Mutation::DeleteApiKey { id }
            | Mutation::DeleteProject { id }
            | Mutation::DeleteTenant { id } => id.encode(e),
            Mutation::DeleteAgent { project_id, id }
            | Mutation::DeletePublicKey { project_id, id }
            | Mutation::DeleteTool { project_id, id } => fields!(e; project_id, id),
            Mutation::AppendMessage {
                project_id,
                session_id,
                message,
            }
            | Mutation::RestoreMessage {
                project_id,
                session_id,
                message,
            } => fields!(e; project_id, session_id, message),
            Mutation::ClearMessages {
                project_id,
                session_id,
            } => fields!(e; project_id, session_id),
            Mutation::DeleteSecret { project_id, name } => fields!(e; project_id, name),
            Mutation::StartStream {
                stream_id,
                owner,
                created_at,
                node,
            } if !node.is_empty() => fields!(e; stream_id, owner, created_at, node),
            Mutation::StartStream {
                stream_id,
                owner,
                created_at,
                node: _,
            } => fields!(e; stream_id, owner, created_at),
            Mutation::AppendStreamEvent { stream_id, event } => fields!(e; stream_id, event),
            Mutation::DeleteStream { stream_id } => stream_id.encode(e),
            Mutation::SetMeta { key, value } => fields!(e; key, value),
            Mutation::AppendTraces {
                project_id,
                session_id,
                events,
            } => fields!(e; project_id, session_id, events),
            Mutation::AppendStreamEvents { stream_id, events } => {
                encode_events(e, stream_id, events)
            }
        }
    }

    fn decode(d: &mut Decoder<'_>) -> Result<Mutation, DecodeError> {
        use Codec as C;
        Ok(match MutationTag::decode(d)? {
            MutationTag::PutTenant => Mutation::PutTenant(C::decode(d)?),
            MutationTag::PutUser => Mutation::PutUser(C::decode(d)?),
            MutationTag::DeleteUser => Mutation::DeleteUser { id: C::decode(d)? },
            MutationTag::PutApiKey => Mutation::PutApiKey(C::decode(d)?),
            MutationTag::DeleteApiKey => Mutation::DeleteApiKey { id: C::decode(d)? },
            MutationTag::PutProject => Mutation::PutProject(C::decode(d)?),
            MutationTag::DeleteProject => Mutation::DeleteProject { id: C::decode(d)? },
            MutationTag::PutAgentV0 => Mutation::PutAgent(AgentV0::decode(d)?.0),
            MutationTag::PutAgent => Mutation::PutAgent(C::decode(d)?),
            MutationTag::DeleteAgent => Mutation::DeleteAgent {
                project_id: C::decode(d)?,
                id: C::decode(d)?,
            },
            MutationTag::PutSession => Mutation::PutSession(C::decode(d)?),
            MutationTag::AppendMessage => Mutation::AppendMessage {
                project_id: C::decode(d)?,
                session_id: C::decode(d)?,
                message: C::decode(d)?,
            },
            MutationTag::ClearMessages => Mutation::ClearMessages {
                project_id: C::decode(d)?,
                session_id: C::decode(d)?,
            },
            MutationTag::PutSecret => Mutation::PutSecret(C::decode(d)?),
            MutationTag::DeleteSecret => Mutation::DeleteSecret {
                project_id: C::decode(d)?,
                name: C::decode(d)?,
            },
            MutationTag::PutPublicKey => Mutation::PutPublicKey(C::decode(d)?),
            MutationTag::DeletePublicKey => Mutation::DeletePublicKey {
                project_id: C::decode(d)?,
                id: C::decode(d)?,
            },
            MutationTag::StartStreamUntimed => Mutation::StartStream {
                stream_id: C::decode(d)?,
                owner: C::decode(d)?,
                created_at: 0,
                node: String::new(),
            },
            MutationTag::AppendStreamEvent => Mutation::AppendStreamEvent {
                stream_id: C::decode(d)?,
                event: C::decode(d)?,
            },
            MutationTag::DeleteStream => Mutation::DeleteStream {
                stream_id: C::decode(d)?,
            },
            MutationTag::SetMeta => Mutation::SetMeta {
                key: C::decode(d)?,
                value: C::decode(d)?,
            },
            MutationTag::RestoreMessage => Mutation::RestoreMessage {
                project_id: C::decode(d)?,
                session_id: C::decode(d)?,
                message: C::decode(d)?,
            },
            MutationTag::StartStream => Mutation::StartStream {
                stream_id: C::decode(d)?,
                owner: C::decode(d)?,
                created_at: C::decode(d)?,
                node: String::new(),
            },
            MutationTag::StartStreamOnNode => Mutation::StartStream {
                stream_id: C::decode(d)?,
                owner: C::decode(d)?,
                created_at: C::decode(d)?,
                node: C::decode(d)?,
            },
            MutationTag::PutTool => Mutation::PutTool(C::decode(d)?),
            MutationTag::PutAgentVersion => Mutation::PutAgentVersion(C::decode(d)?),
            MutationTag::PutDeployment => Mutation::PutDeployment(C::decode(d)?),
            MutationTag::PutFeedback => Mutation::PutFeedback(C::decode(d)?),
            MutationTag::SetSessionDeployment => Mutation::SetSessionDeployment {
                project_id: C::decode(d)?,
                session_id: C::decode(d)?,
                deployment_id: C::decode(d)?,
            },
            MutationTag::AppendTraces => Mutation::AppendTraces {
                project_id: C::decode(d)?,
                session_id: C::decode(d)?,
                events: C::decode(d)?,
            },
            MutationTag::DeleteTool => Mutation::DeleteTool {
                project_id: C::decode(d)?,
                id: C::decode(d)?,
            },
            MutationTag::AppendStreamEvents => {
                let (stream_id, events) = decode_events(d)?;
                Mutation::AppendStreamEvents { stream_id, events }
            }
            MutationTag::DeleteTenant => Mutation::DeleteTenant { id: C::decode(d)? },
        })
    }
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
        tenant.encode(e);
        encode_list(mutations, e);
    }

    /// Writes the payload.
    pub fn encode(&self, e: &mut Encoder) {
        Txn::encode_parts(&self.tenant, &self.mutations, e)
    }

    /// Reads a whole payload; trailing bytes are an error.
    pub fn decode(payload: &[u8]) -> Result<Txn, DecodeError> {
        let mut d = Decoder::new(payload);
        let txn = Txn {
            tenant: Codec::decode(&mut d)?,
            mutations: Codec::decode(&mut d)?,
        };
        d.finish()?;
        Ok(txn)
    }
}
