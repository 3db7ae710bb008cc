//! Property tests: payload and record round-trips, and the reader on arbitrary bytes.

use halyard_storage::codec::{Decoder, Encoder};
use halyard_storage::record::{self, Next, RecordType};
use halyard_storage::*;
use proptest::prelude::*;

fn s() -> impl Strategy<Value = String> {
    ".{0,24}"
}

fn opt_s() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(s())
}

fn message() -> impl Strategy<Value = Message> {
    (
        (s(), 0u8..4, s()),
        proptest::option::of((any::<u64>(), any::<u64>(), any::<u64>())),
        any::<u64>(),
        (opt_s(), opt_s()),
    )
        .prop_map(
            |((id, role, content), usage, created_at, (tool_calls, tool_call_id))| Message {
                id,
                role: MessageRole::ALL[role as usize],
                content,
                usage: usage.map(|(i, o, t)| Usage {
                    input_tokens: i,
                    output_tokens: o,
                    total_tokens: t,
                    latency_ms: t / 2,
                }),
                created_at,
                tool_calls,
                tool_call_id,
            },
        )
}

fn agent() -> impl Strategy<Value = Agent> {
    (
        (s(), s(), s(), opt_s(), opt_s()),
        (
            s(),
            s(),
            opt_s(),
            opt_s(),
            proptest::option::of(-1e9f64..1e9),
        ),
        (
            proptest::option::of(any::<u64>()),
            proptest::option::of((0f64..100.0, 0f64..100.0)),
        ),
        (opt_s(), any::<u64>(), any::<u64>()),
        (proptest::collection::vec(s(), 0..3), any::<u32>()),
    )
        .prop_map(
            |(
                (id, pid, name, desc, ins),
                (prov, model, base, sec, temp),
                (max, pr),
                (dsl, c, u),
                (tools, iterations),
            )| Agent {
                id,
                project_id: pid,
                name,
                description: desc,
                instructions: ins,
                model: ModelConfig {
                    provider: prov,
                    model,
                    base_url: base,
                    api_key_secret: sec,
                    temperature: temp,
                    max_tokens: max,
                    pricing: pr.map(|(i, o)| Pricing {
                        input_per_mtok: i,
                        output_per_mtok: o,
                    }),
                },
                dsl_content: dsl,
                created_at: c,
                updated_at: u,
                tools,
                max_tool_iterations: iterations,
            },
        )
}

/// Event names from a small set, so that batches repeat names as token streams do.
fn stream_event() -> impl Strategy<Value = StreamEvent> {
    let names = prop_oneof![Just(String::new()), Just("token".to_string()), s()];
    (any::<u64>(), names, s()).prop_map(|(id, event, data)| StreamEvent { id, event, data })
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (s(), s(), any::<[u32; 4]>(), any::<bool>(), any::<u64>()).prop_map(
            |(id, name, l, d, c)| {
                Mutation::PutTenant(Tenant {
                    id,
                    name,
                    limits: Limits {
                        requests_per_second: l[0],
                        burst: l[1],
                        session_messages_per_minute: l[2],
                        max_concurrent_sessions: l[3],
                    },
                    disabled: d,
                    created_at: c,
                    updated_at: c / 2,
                })
            }
        ),
        (s(), s(), s(), 0u8..3).prop_map(|(id, email, h, r)| Mutation::PutUser(User {
            id,
            email,
            password_hash: h,
            role: [Role::Owner, Role::Developer, Role::Viewer][r as usize],
            created_at: 7,
        })),
        (
            s(),
            s(),
            any::<[u8; 32]>(),
            proptest::collection::vec(s(), 0..4),
            proptest::option::of(any::<u64>()),
            any::<bool>()
        )
            .prop_map(
                |(id, name, digest, scopes, exp, rev)| Mutation::PutApiKey(ApiKey {
                    id,
                    name,
                    digest,
                    prefix: "abl_sk-".into(),
                    last4: "abcd".into(),
                    kind: if rev { KeyKind::Service } else { KeyKind::User },
                    project_ids: scopes.clone(),
                    scopes,
                    expires_at: exp,
                    revoked: rev,
                    created_at: 3,
                })
            ),
        (s(), s(), s(), opt_s(), opt_s()).prop_map(|(id, name, slug, d, e)| Mutation::PutProject(
            Project {
                id,
                name,
                slug,
                description: d,
                entry_agent_name: e,
                created_at: 1,
                updated_at: 2,
            }
        )),
        agent().prop_map(Mutation::PutAgent),
        (s(), s(), message()).prop_map(|(p, sid, m)| Mutation::append_message(&p, &sid, &m)),
        (
            s(),
            s(),
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(id, name, v, ct, e)| Mutation::PutSecret(Secret {
                id,
                project_id: "p".into(),
                name,
                version: v,
                ciphertext: ct,
                created_at: 1,
                updated_at: 1,
                expires_at: e,
            })),
        (s(), any::<u64>(), s(), s()).prop_map(|(sid, id, ev, data)| Mutation::AppendStreamEvent {
            stream_id: sid,
            event: StreamEvent {
                id,
                event: ev,
                data
            },
        }),
        (s(), s(), any::<u64>(), s()).prop_map(|(stream_id, owner, created_at, node)| {
            Mutation::StartStream {
                stream_id,
                owner,
                created_at,
                node,
            }
        }),
        // Any ids, not only increasing ones: the encoding must be total (apply refuses).
        (s(), proptest::collection::vec(stream_event(), 0..8))
            .prop_map(|(stream_id, events)| Mutation::AppendStreamEvents { stream_id, events }),
        (s(), proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(key, value)| Mutation::SetMeta { key, value }),
        (s(), s()).prop_map(|(project_id, id)| Mutation::DeleteAgent { project_id, id }),
        (s(), s(), opt_s(), any::<bool>(), s(), s()).prop_map(|(id, name, d, mcp, p, c)| {
            Mutation::PutTool(Tool {
                id,
                project_id: "p".into(),
                name,
                description: d,
                tool_type: if mcp { ToolType::Mcp } else { ToolType::Http },
                parameters: p,
                config: c,
                created_at: 4,
                updated_at: 5,
            })
        }),
        (s(), s()).prop_map(|(project_id, id)| Mutation::DeleteTool { project_id, id }),
        s().prop_map(|id| Mutation::DeleteProject { id }),
        s().prop_map(|id| Mutation::DeleteTenant { id }),
    ]
}

proptest! {
    #[test]
    fn txn_round_trips(tenant in s(), muts in proptest::collection::vec(mutation(), 0..8)) {
        let txn = Txn { tenant, mutations: muts };
        let mut e = Encoder::default();
        txn.encode(&mut e);
        let bytes = e.into_bytes();
        prop_assert_eq!(Txn::decode(&bytes).unwrap(), txn);
    }

    /// The store sizes a record's buffer by the hint: a stream's batch must fit it, so the
    /// buffer is never grown (other mutations may grow it; they are small).
    #[test]
    fn a_stream_batch_fits_its_size_hint(stream_id in s(), events in proptest::collection::vec(stream_event(), 0..64)) {
        let m = Mutation::AppendStreamEvents { stream_id, events };
        let mut e = Encoder::default();
        m.encode(&mut e);
        prop_assert!(e.len() <= m.size_hint(), "{} > {}", e.len(), m.size_hint());
    }

    #[test]
    fn varints_round_trip(v in any::<u64>()) {
        let mut e = Encoder::default();
        e.varint(v);
        let b = e.into_bytes();
        let mut d = Decoder::new(&b);
        prop_assert_eq!(d.varint().unwrap(), v);
        prop_assert!(d.finish().is_ok());
    }

    #[test]
    fn records_round_trip(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..10)) {
        let mut buf = Vec::new();
        for p in &payloads {
            record::encode(RecordType::Txn, p, &mut buf);
        }
        let (recs, end) = record::decode(&buf);
        prop_assert_eq!(end, Next::End);
        let got: Vec<&[u8]> = recs.iter().map(|r| r.payload).collect();
        let want: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let (recs, _) = record::decode(&bytes);
        for r in recs {
            let _ = Txn::decode(r.payload);
        }
        let _ = recover_segment_bytes(&bytes);
    }

    #[test]
    fn txn_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Txn::decode(&bytes);
    }
}

fn decode_one(bytes: &[u8]) -> Result<Mutation, codec::DecodeError> {
    let mut d = Decoder::new(bytes);
    let m = Mutation::decode(&mut d)?;
    d.finish()?;
    Ok(m)
}

#[test]
fn start_stream_tag_17_still_decodes_with_unknown_time() {
    // The bytes an earlier version wrote: tag 17, stream id, owner, no time.
    let mut e = Encoder::default();
    e.u8(17);
    e.str("str_old");
    e.str("usr_1");
    let m = decode_one(&e.into_bytes()).unwrap();
    assert_eq!(
        m,
        Mutation::StartStream {
            stream_id: "str_old".into(),
            owner: "usr_1".into(),
            created_at: 0,
            node: String::new(),
        }
    );
}

#[test]
fn start_stream_writes_tag_22_with_its_time() {
    let m = Mutation::StartStream {
        stream_id: "str_1".into(),
        owner: "usr_1".into(),
        created_at: 1_700_000_000_000,
        node: String::new(),
    };
    let mut e = Encoder::default();
    m.encode(&mut e);
    let bytes = e.into_bytes();
    assert_eq!(bytes[0], 22);
    assert_eq!(decode_one(&bytes).unwrap(), m);
}

#[test]
fn start_stream_on_a_node_writes_tag_33_with_the_node_last() {
    let m = Mutation::StartStream {
        stream_id: "str_1".into(),
        owner: "usr_1".into(),
        created_at: 5,
        node: "node_a".into(),
    };
    let mut e = Encoder::default();
    m.encode(&mut e);
    let bytes = e.into_bytes();
    assert_eq!(bytes[0], 33);
    assert!(bytes.ends_with(b"\x06node_a"));
    assert_eq!(decode_one(&bytes).unwrap(), m);
}

#[test]
fn stream_event_batch_encodes_ids_as_deltas_and_repeated_names_by_reference() {
    let ev = |id: u64, event: &str, data: &str| StreamEvent {
        id,
        event: event.into(),
        data: data.into(),
    };
    let events = vec![
        ev(300, "token", "a"),
        ev(301, "token", "b"),
        ev(305, "done", ""),
    ];
    let m = Mutation::AppendStreamEvents {
        stream_id: "s".into(),
        events,
    };
    let mut e = Encoder::default();
    m.encode(&mut e);
    let bytes = e.into_bytes();
    #[rustfmt::skip]
    let want: &[u8] = &[
        23, 1, b's', 3,
        0xac, 0x02, 6, b't', b'o', b'k', b'e', b'n', 1, b'a', // id 300, name "token"
        1, 0, 1, b'b',                                       // +1, same name
        4, 5, b'd', b'o', b'n', b'e', 0,                     // +4, "done", empty data
    ];
    assert_eq!(bytes, want);
    assert_eq!(decode_one(&bytes).unwrap(), m);
}

#[test]
fn stream_event_batch_with_a_damaged_count_is_refused_without_allocating() {
    let mut e = Encoder::default();
    e.u8(23);
    e.str("s");
    e.varint(u64::MAX / 2);
    e.raw(&[1, 0, 0]);
    assert_eq!(
        decode_one(&e.into_bytes()),
        Err(codec::DecodeError::BadLength)
    );
}

#[test]
fn fsync_policy_parses() {
    use std::time::Duration;
    assert_eq!("always".parse(), Ok(FsyncPolicy::Always));
    assert_eq!("never".parse(), Ok(FsyncPolicy::Never));
    assert_eq!(
        "interval:250".parse(),
        Ok(FsyncPolicy::Interval(Duration::from_millis(250)))
    );
    assert!(matches!(
        "interval:x".parse::<FsyncPolicy>(),
        Err(ParseFsyncPolicyError::BadInterval(_))
    ));
    assert!(matches!(
        "interval:0".parse::<FsyncPolicy>(),
        Err(ParseFsyncPolicyError::BadInterval(_))
    ));
    assert!(matches!(
        "sometimes".parse::<FsyncPolicy>(),
        Err(ParseFsyncPolicyError::Unknown(_))
    ));
    assert_eq!(
        FsyncPolicy::Interval(Duration::from_millis(5)).to_string(),
        "interval:5"
    );
}

#[test]
fn ids_are_prefixed_and_unique() {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10_000 {
        let id = ids::new_id(ids::SESSION);
        assert!(id.starts_with("ses_") && id.len() == 24);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        assert!(seen.insert(id));
    }
}

fn encoded<'a, T: Codec<'a>>(v: &T) -> Vec<u8> {
    let mut e = Encoder::default();
    v.encode(&mut e);
    e.into_bytes()
}

#[test]
fn option_is_a_presence_byte_then_the_value() {
    assert_eq!(encoded(&None::<u64>), [0]);
    assert_eq!(encoded(&Some(300u64)), [1, 0xac, 0x02]);
    let mut d = Decoder::new(&[2, 7]);
    assert_eq!(
        <Option<u64>>::decode(&mut d),
        Err(codec::DecodeError::BadTag {
            what: "bool",
            tag: 2
        })
    );
}

#[test]
fn vec_is_a_count_then_the_items_and_bytes_are_a_byte_string() {
    let v = vec!["a".to_string(), String::new()];
    assert_eq!(encoded(&v), [2, 1, b'a', 0]);
    // Vec<u8> is the same as a length-prefixed byte string.
    let mut e = Encoder::default();
    e.bytes(b"xyz");
    assert_eq!(encoded(&b"xyz".to_vec()), e.into_bytes());
    let bytes = encoded(&v);
    let mut d = Decoder::new(&bytes);
    assert_eq!(<Vec<String>>::decode(&mut d).unwrap(), v);
    d.finish().unwrap();
}

#[test]
fn a_count_larger_than_the_bytes_left_is_refused_before_allocating() {
    // A count of 2^62 items with 1 byte after it.
    let mut e = Encoder::default();
    e.varint(1 << 62);
    e.u8(0);
    let bytes = e.into_bytes();
    let mut d = Decoder::new(&bytes);
    assert_eq!(
        <Vec<u64>>::decode(&mut d),
        Err(codec::DecodeError::BadLength)
    );
}

#[test]
fn tag_enums_have_distinct_tags_and_refuse_unknown_ones() {
    let tags: Vec<u8> = mutation::MutationTag::ALL.iter().map(|t| t.tag()).collect();
    let known: Vec<u8> = (1..=33).collect();
    assert_eq!(tags, known, "mutation tags in order");
    for t in mutation::MutationTag::ALL {
        assert_eq!(mutation::MutationTag::from_tag(t.tag()), Some(*t));
    }
    assert_eq!(
        Role::decode(&mut Decoder::new(&[3])),
        Err(codec::DecodeError::BadTag {
            what: "role",
            tag: 3
        })
    );
    assert_eq!(
        Mutation::decode(&mut Decoder::new(&[0])),
        Err(codec::DecodeError::BadTag {
            what: "mutation",
            tag: 0
        })
    );
    assert_eq!(RecordType::from_tag(4), None);
    assert_eq!(encoded(&Channel::Sdk), [1]);
}
