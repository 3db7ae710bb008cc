//! Criterion benchmarks of authentication as `admit` runs it: an API key (digest and
//! lookup in the sharded state) and a JWT (HS256 verification and the user lookup), on a
//! real store in a temporary directory.

use std::net::IpAddr;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use halyard_api::auth::{authenticate, Verifiers};
use halyard_api::jwt::Jwt;
use halyard_api::route::Guard;
use halyard_api::scope::Scope;
use halyard_api::sdk_token::SdkSigner;
use halyard_api::{seed, time};
use halyard_engine::request::{RequestHead, RequestId};
use halyard_storage::{ids, Mutation, Options, Role, Store, User};

fn head(auth: &str) -> RequestHead {
    let raw =
        format!("GET /api/projects HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer {auth}\r\n\r\n");
    let peer: IpAddr = [127, 0, 0, 1].into();
    RequestHead::from_bytes(raw.as_bytes(), RequestId::new(b"bench"), peer)
        .expect("valid head")
        .expect("complete head")
}

fn auth(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("halyard-bench-auth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (store, _) = Store::open(&dir, Options::default()).expect("store");
    let store = Arc::new(store);
    let (tenant, key) = seed::create_tenant(&*store, "bench").expect("tenant");
    let user = User {
        id: ids::new_id(ids::USER),
        email: "bench@example.test".into(),
        password_hash: "unused".into(),
        role: Role::Owner,
        created_at: time::now_ms(),
    };
    store
        .commit_wait(&tenant, vec![Mutation::PutUser(user.clone())])
        .expect("user");
    let jwt = Jwt::new(b"bench-secret-bench-secret-bench-", 3600, None).expect("jwt");
    let token = jwt
        .issue(&user.id, &tenant, "owner", time::now_ms() / 1000)
        .expect("token");
    let v = Verifiers {
        jwt,
        sdk: SdkSigner::new(b"sdk"),
        root: None,
    };
    let guard = Guard::Scope(Some(Scope::ProjectRead));
    let key_head = head(&key);
    let jwt_head = head(&token);
    c.bench_function("auth_api_key", |b| {
        b.iter(|| authenticate(&v, &*store, &key_head, guard, time::now_ms()).expect("ok"))
    });
    c.bench_function("auth_jwt", |b| {
        b.iter(|| authenticate(&v, &*store, &jwt_head, guard, time::now_ms()).expect("ok"))
    });
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, auth);
criterion_main!(benches);
