//! Writes the seed corpora of the fuzz targets under `fuzz/corpus/<target>/`:
//! `cargo run --example write_fuzz_seeds`. Seeds are committed; rerun after changing a
//! format. `tests/fuzz_corpus.rs` replays them in every `cargo test`.

use std::path::{Path, PathBuf};

#[path = "../fuzz/harness/mod.rs"]
mod harness;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn main() {
    write_seeds();
    println!(
        "seeds written under {}",
        fuzz_dir().join("corpus").display()
    );
}

/// Writes the seed corpora:
/// hand-written requests, chunk streams, JSON bodies and header values, credentials minted
/// by the real signers for the harness fixture, and log segments written by the real store.
/// Seeds are committed; rerun after changing the formats.
fn write_seeds() {
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        std::fs::write(dir.join(name), bytes).expect("write seed");
    };
    let heads: &[(&str, &[u8])] = &[
        ("get", b"GET /health/live HTTP/1.1\r\nHost: h\r\n\r\n"),
        ("get-query-id", b"GET /api/projects?limit=5&offset=10 HTTP/1.1\r\nHost: h\r\nX-Request-Id: req-1.2:3\r\nAccept: */*\r\n\r\n"),
        ("post-length", b"POST /api/v1/auth/login HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"),
        ("post-chunked", b"POST /api/v1/chat/send HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n2\r\n{}\r\n0\r\n\r\n"),
        ("http10-keepalive", b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
        ("options-star", b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"),
        ("pipelined", b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
        ("cl-te", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("te-cl", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
        ("te-list", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n"),
        ("te-space-colon", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n"),
        ("te-tab", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\tchunked\t\r\n\r\n"),
        ("te-vtab", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \x0bchunked\r\n\r\n"),
        ("te-dup", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("te-http10", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("cl-dup", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
        ("cl-list", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n"),
        ("cl-plus", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n"),
        ("cl-huge", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4294967296\r\n\r\n"),
        ("cl-overflow", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n"),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n"),
        ("bare-lf", b"GET / HTTP/1.1\nHost: h\n\n"),
        ("bare-cr", b"GET / HTTP/1.1\rHost: h\r\n\r\n"),
        ("nul", b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n"),
        ("no-host", b"GET / HTTP/1.1\r\n\r\n"),
        ("two-hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        ("absolute-form", b"GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n"),
        ("utf8-path", "GET /api/agents/\u{e9}t\u{e9} HTTP/1.1\r\nHost: h\r\n\r\n".as_bytes()),
        ("bad-utf8-path", b"GET /api/\xff\xfe HTTP/1.1\r\nHost: h\r\n\r\n"),
        ("bad-utf8-header", b"GET / HTTP/1.1\r\nHost: h\r\nX-API-Key: \xc3\x28\r\n\r\n"),
        ("partial", b"GET /health/live HTTP/1.1\r\nHo"),
    ];
    for (name, bytes) in heads {
        write("http_head", name, bytes);
    }
    let chunks: &[(&str, &[u8])] = &[
        ("simple", b"\x405\r\nhello\r\n0\r\n\r\n"),
        (
            "ext-trailer",
            b"\x803;ext=1;q=\"x\"\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-T: y\r\n\r\nGET /",
        ),
        ("upper-hex", b"\x10A\r\n0123456789\r\n0\r\n\r\n"),
        ("lf-only", b"\x205\nhello\n0\n\n"),
        ("overflow", b"\x0010000000000000000\r\n"),
        ("max-size", b"\x00ffffffffffffffff\r\nab"),
        ("empty-size", b"\x00\r\n\r\n"),
        ("0x-size", b"\x000x5\r\nhello\r\n"),
        ("space-size", b"\x00 5\r\nhello\r\n"),
        ("data-overrun", b"\x905\r\nhelloXY\r\n"),
    ];
    for (name, bytes) in chunks {
        write("chunked", name, bytes);
    }
    let mut long_ext = b"\x02".to_vec();
    long_ext.extend_from_slice(b"5;");
    long_ext.extend(std::iter::repeat_n(b'x', 5000));
    write("chunked", "long-extension", &long_ext);

    let bodies: &[(&str, &[u8])] = &[
        ("agent", br#"{"name":"my-agent","description":"d","instructions":"be brief","model":{"provider":"openai","model":"gpt-4o","baseUrl":"https://api.example/v1","temperature":0.5,"maxTokens":100,"pricing":{"inputPerMTok":1.5,"outputPerMTok":2}},"dslContent":"agent x {}"}"#),
        ("import", br#"{"manifest":{"version":1,"project":{"description":null,"entryAgentName":"a"}},"agents":[{"name":"a"},{"name":"a"},{"name":"B"}]}"#),
        ("tenant", br#"{"name":"acme","limits":{"requestsPerSecond":5,"burst":10},"ownerEmail":"a@b.c","ownerPassword":"long enough pw"}"#),
        ("key", br#"{"name":"ci","kind":"service","scopes":["project:read"],"projectIds":["proj_1"],"expiresAt":"2030-01-01T00:00:00Z"}"#),
        ("public-key", br#"{"name":"site","allowedOrigins":["https://a.example","ftp://x","https://a/path"]}"#),
        ("chat", br#"{"projectId":"proj_1","message":"hi","metadata":{"a":[1,2,{"b":null}]},"attachmentIds":[]}"#),
        ("wrong-types", br#"{"name":5,"description":[],"maxTokens":-1,"temperature":"hot","scopes":"all","metadata":"x"}"#),
        ("huge-numbers", br#"{"maxTokens":1e400,"temperature":-0.0,"n":123456789012345678901234567890,"f":1.7976931348623157e309}"#),
        ("unicode", "{\"name\":\"caf\u{e9}\",\"s\":\"\\ud83d\\ude00\",\"t\":\"\\u0000\"}".as_bytes()),
        ("lone-surrogate", br#"{"name":"\ud800"}"#),
        ("duplicate-keys", br#"{"name":"a","name":"b"}"#),
        ("not-object", b"[1,2,3]"),
        ("invalid-utf8", b"{\"name\":\"\xff\"}"),
        ("truncated", b"{\"name\":"),
        ("trailing", b"{} {}"),
        ("bom", b"\xef\xbb\xbf{}"),
        ("deep-129", &[b'['; 129]),
    ];
    for (name, bytes) in bodies {
        write("json_body", name, bytes);
    }
    let mut deep = "[".repeat(128);
    deep.push_str(&"]".repeat(128));
    write("json_body", "deep-128", deep.as_bytes());

    let jwt = harness::fixture_jwt();
    let sdk = harness::fixture_sdk_token();
    let creds: Vec<(&str, String)> = vec![
        ("bearer-user-key", format!("Authorization: Bearer {}", harness::USER_KEY)),
        ("x-api-key-service", format!("X-API-Key: {}", harness::SERVICE_KEY)),
        ("bearer-service", format!("Authorization: bearer  {} ", harness::SERVICE_KEY)),
        ("revoked", format!("X-API-Key: {}", harness::REVOKED_KEY)),
        ("expired", format!("X-API-Key: {}", harness::EXPIRED_KEY)),
        ("jwt", format!("Authorization: Bearer {jwt}")),
        ("jwt-raw", jwt.clone()),
        ("jwt-alg-none", "Authorization: Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1c3JfZnV6eiIsInRpZCI6InRlbl9mdXp6IiwiZXhwIjo0MTAyNDQ0ODAwfQ.".into()),
        ("jwt-es256", "Authorization: Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.AAAA".into()),
        ("sdk-token", format!("X-SDK-Token: {sdk}\r\nOrigin: {}", harness::ORIGIN)),
        ("sdk-token-raw", sdk.clone()),
        ("sdk-wrong-origin", format!("X-SDK-Token: {sdk}\r\nOrigin: https://evil.example")),
        ("public-key", format!("X-Public-Key: {}\r\nOrigin: {}", harness::PUBLIC_KEY, harness::ORIGIN)),
        ("public-key-as-api-key", format!("X-API-Key: {}\r\nOrigin: {}", harness::PUBLIC_KEY, harness::ORIGIN)),
        ("root", format!("Authorization: Bearer {}", harness::ROOT_KEY)),
        ("two-credentials", format!("X-API-Key: {}\r\nAuthorization: Basic dXNlcjpwdw==", harness::USER_KEY)),
        ("empty-bearer", "Authorization: Bearer ".into()),
        ("non-utf8", "X-API-Key: abl_sk-\u{fffd}".into()),
    ];
    for (name, text) in &creds {
        write("credentials", name, text.as_bytes());
    }
    write(
        "credentials",
        "non-utf8-bytes",
        b"X-API-Key: abl_sk-\xff\xfe",
    );

    for (name, bytes) in [
        ("digits", &b"42"[..]),
        ("spaces", b" \t7 "),
        ("max", b"18446744073709551615"),
        ("overflow", b"18446744073709551616"),
        ("plus", b"+1"),
        ("negative", b"-1"),
        ("hex", b"0x10"),
        ("empty", b""),
        ("unicode-digits", "\u{0661}\u{0662}".as_bytes()),
    ] {
        write("last_event_id", name, bytes);
    }

    // Log segments written by the real store: the fixture's tenant, then a session with
    // messages, a secret, a stream with events, deletions and server metadata.
    let dir = std::env::temp_dir().join(format!("halyard-seeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        use halyard_storage::*;
        let (store, _) = Store::open(&dir, Options::default()).expect("open");
        store
            .commit_wait(harness::TENANT, harness::fixture_mutations())
            .unwrap();
        let session = Session {
            id: "ses_1".into(),
            project_id: harness::PROJECT.into(),
            agent_id: "agt_fuzz".into(),
            agent_name: "assistant".into(),
            status: SessionStatus::Active,
            channel: Channel::Api,
            message_count: 0,
            token_count: 0,
            created_at: 1,
            last_activity_at: 1,
            metadata: "{\"k\":1}".into(),
            created_by_token: None,
        };
        let message = |id: &str, role, content: &str| Message {
            id: id.into(),
            role,
            content: content.into(),
            usage: Some(Usage {
                input_tokens: 3,
                output_tokens: 4,
                total_tokens: 7,
                latency_ms: 5,
            }),
            created_at: 2,
            tool_calls: None,
            tool_call_id: None,
        };
        store
            .commit_wait(
                harness::TENANT,
                vec![
                    Mutation::PutSession(session),
                    Mutation::append_message(
                        harness::PROJECT,
                        "ses_1",
                        &message("msg_1", MessageRole::User, "hello"),
                    ),
                    Mutation::append_message(
                        harness::PROJECT,
                        "ses_1",
                        &message("msg_2", MessageRole::Assistant, "hello \u{e9}"),
                    ),
                    Mutation::PutSecret(Secret {
                        id: "sec_1".into(),
                        project_id: harness::PROJECT.into(),
                        name: "OPENAI_API_KEY".into(),
                        version: 1,
                        ciphertext: vec![9; 40],
                        created_at: 3,
                        updated_at: 3,
                        expires_at: Some(4),
                    }),
                    Mutation::StartStream {
                        stream_id: "str_1".into(),
                        owner: "key_owner".into(),
                        created_at: 1,
                        node: String::new(),
                    },
                ],
            )
            .unwrap();
        store
            .commit_wait(
                harness::TENANT,
                vec![
                    Mutation::ClearMessages {
                        project_id: harness::PROJECT.into(),
                        session_id: "ses_1".into(),
                    },
                    Mutation::DeleteSecret {
                        project_id: harness::PROJECT.into(),
                        name: "OPENAI_API_KEY".into(),
                    },
                    Mutation::DeleteApiKey {
                        id: "key_revoked".into(),
                    },
                ],
            )
            .unwrap();
        store
            .commit_wait(
                "",
                vec![Mutation::SetMeta {
                    key: "jwt_secret".into(),
                    value: vec![1; 32],
                }],
            )
            .unwrap();
    }
    let mut segs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segs.sort();
    let seg = std::fs::read(&segs[0]).expect("segment");
    let _ = std::fs::remove_dir_all(&dir);
    let header = halyard_storage::header::HEADER_LEN;
    write("log_records", "segment", &seg);
    write("log_records", "records", &seg[header..]);
    write("log_records", "torn", &seg[..seg.len() - 5]);
    let mut corrupt = seg.clone();
    corrupt[header + 20] ^= 0xff;
    write("log_records", "corrupt-middle", &corrupt);
    // Each record's payload alone (the fuzzer reaches the Txn decoder without checksums).
    let (records, _) = halyard_storage::record::decode(&seg[header..]);
    for (i, r) in records.iter().enumerate() {
        write("log_records", &format!("payload-{i}"), r.payload);
    }

    // api_request: [route index, credential mode, body or query...] for every route.
    for (i, def) in halyard_api::route::ROUTES.iter().enumerate() {
        let body: &[u8] = match def.id {
            halyard_api::route::RouteId::AgentCreate | halyard_api::route::RouteId::AgentPut => {
                br#"{"name":"agent-2","model":{"provider":"echo"}}"#
            }
            halyard_api::route::RouteId::ProjectCreate => br#"{"name":"p","slug":"p"}"#,
            halyard_api::route::RouteId::ChatAgent
            | halyard_api::route::RouteId::ChatAgentStream => {
                br#"{"projectId":"proj_fuzz","message":"hi"}"#
            }
            halyard_api::route::RouteId::Import | halyard_api::route::RouteId::ImportPreview => {
                br#"{"manifest":{"version":1},"agents":[{"name":"assistant"}]}"#
            }
            halyard_api::route::RouteId::SecretCreate => br#"{"name":"K","value":"v"}"#,
            halyard_api::route::RouteId::DeployedChat
            | halyard_api::route::RouteId::DeployedStream => br#"{"message":"hi"}"#,
            halyard_api::route::RouteId::DeploymentCreate => {
                br#"{"environment":"staging","agentVersionManifest":{"assistant":1},"entryAgentName":"assistant"}"#
            }
            _ if matches!(
                def.method,
                halyard_engine::Method::Get | halyard_engine::Method::Delete
            ) =>
            {
                b"limit=2&offset=0"
            }
            _ => b"{}",
        };
        let mut input = vec![i as u8, 0];
        input.extend_from_slice(body);
        write("api_request", &format!("route-{i:02}"), &input);
    }

    // http_response: [flags (bit 0 HEAD request, bit 1 small limits), split a, split b,
    // the bytes of the connection...].
    let sse_chunks = [
        "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
        ": keep-alive\r\n\r\nevent: delta\r\nid: 2\r\ndata: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\r\n",
        "\r\ndata: [DONE]\n\n",
    ];
    let mut sse = b"\x00\x40\xc0HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for (i, chunk) in sse_chunks.iter().enumerate() {
        let ext = if i == 1 { ";n=1" } else { "" };
        sse.extend_from_slice(format!("{:x}{ext}\r\n{chunk}\r\n", chunk.len()).as_bytes());
    }
    sse.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
    write("http_response", "sse-chat-chunked", &sse);
    let responses: &[(&str, &[u8])] = &[
        ("content-length", b"\x00\x20\x90HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"ok\":\"yes\"}"),
        ("close-delimited", b"\x00\x30\xa0HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n\xef\xbb\xbfdata: a\rdata: b\r\rdata: c\n\n"),
        ("continue-then-ok", b"\x00\x10\x50HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"),
        ("head-request", b"\x01\x08\x80HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
        ("no-content-extra", b"\x00\x80\xf0HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"),
        ("te-and-length", b"\x00\x60\x70HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
        ("bad-chunk", b"\x00\x50\xb0HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXY0\r\n\r\n"),
        ("length-mismatch", b"\x00\x40\x41HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        ("small-limits", b"\x02\x20\xe0HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n0123456789012345678901234567890123456789012345678901234567890123456789"),
    ];
    for (name, bytes) in responses {
        write("http_response", name, bytes);
    }

    // route_path: [method, path]: every route's pattern with sample captures (the
    // deployment-scoped runtime routes' slugs among them), and paths near them.
    for (i, def) in halyard_api::route::ROUTES.iter().enumerate() {
        let path: Vec<&str> = def
            .pattern
            .split('/')
            .map(|seg| match seg {
                ":projectSlug" => "shop",
                ":env" => "production",
                ":agentSlug" => "support",
                s if s.starts_with(':') => "id_1",
                s => s,
            })
            .collect();
        // The harness's method order: GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS.
        use halyard_engine::Method as M;
        let method = match def.method {
            M::Get => 0u8,
            M::Post => 1,
            M::Put => 2,
            M::Patch => 3,
            M::Delete => 4,
            M::Head => 5,
            _ => 6,
        };
        let mut input = vec![method];
        input.extend_from_slice(path.join("/").as_bytes());
        write("route_path", &format!("route-{i:02}"), &input);
    }
    for (name, path) in [
        ("ten-segments", "/api/v1/project/a/b/agent/c/stream/x/y"),
        ("empty-captures", "/api/v1/project//production/agent//chat"),
        (
            "unicode",
            "/api/v1/project/\u{e9}t\u{e9}/dev/agent/\u{1F600}/chat",
        ),
        ("root", "/"),
    ] {
        let mut input = vec![1u8];
        input.extend_from_slice(path.as_bytes());
        write("route_path", name, &input);
    }

    // tool_schema: `schema \0 arguments`.
    let schemas: &[(&str, &[u8])] = &[
        ("weather", b"{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":5},\"days\":{\"type\":\"integer\",\"minimum\":1}},\"required\":[\"city\"],\"additionalProperties\":false}\0{\"city\":\"Oslo\",\"days\":0,\"x\":1}"),
        ("nested", b"{\"type\":\"object\",\"properties\":{\"items\":{\"type\":\"array\",\"items\":{\"anyOf\":[{\"type\":\"string\"},{\"enum\":[1,2]}]},\"minItems\":1}}}\0{\"items\":[\"a\",3,null]}"),
        ("bare", b"{\"type\":\"object\"}\0[]"),
        ("refused", b"{\"type\":\"object\",\"properties\":{\"a\":{\"pattern\":\"x\"}}}\0{}"),
    ];
    for (name, bytes) in schemas {
        write("tool_schema", name, bytes);
    }

    // openai_chunk: chunks as upstreams stream them, and shapes the one-pass reader leaves
    // to serde.
    let chunks: &[(&str, &str)] = &[
        (
            "usual",
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_4","usage":null,"choices":[{"index":0,"delta":{"role":"assistant","content":"Hello","refusal":null},"logprobs":null,"finish_reason":null}]}"#,
        ),
        (
            "fake-upstream",
            r#"{"id":"chatcmpl-fake","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" w1"},"finish_reason":null}]}"#,
        ),
        (
            "escapes",
            r#"{"choices":[{"delta":{"content":"a\n\"b\" \u00e9\ud83d\ude00"},"finish_reason":"st\u006fp"}]}"#,
        ),
        (
            "stop",
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        ),
        (
            "usage",
            r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":3,"total_tokens":4}}"#,
        ),
        (
            "tool-call",
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":"{\"a\":1}"}}]}}]}"#,
        ),
        ("error", r#"{"error":{"message":"overloaded"}}"#),
        (
            "two-choices",
            r#"{"choices":[{"delta":{"content":"a"}},{"delta":{"content":"b"}}]}"#,
        ),
        ("duplicate", r#"{"choices":[],"choices":null}"#),
        (
            "numbers",
            r#"{"n":-0.5e+10,"m":0,"bad":01,"choices":[{"index":12,"delta":{"content":null}}]}"#,
        ),
    ];
    for (name, text) in chunks {
        write("openai_chunk", name, text.as_bytes());
    }
}
