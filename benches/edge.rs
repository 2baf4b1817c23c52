//! The browser-facing edge on its own: verifying a token (a cache miss: signature, claims,
//! headers; and a hit: one lookup), and gzip per KiB of a JSON answer.
//!
//!     cargo bench --bench edge

#![allow(clippy::disallowed_methods)] // a bench reads the clock as it likes

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use http_body_util::{BodyExt, Full};
use jsonwebtoken::{EncodingKey, Header, encode};
use stratix_gateway::auth::jwt::Verifier;
use stratix_gateway::auth::{Authenticator, identity, token};
use stratix_gateway::config::{AuthConfig, CompressionConfig, Secret};
use stratix_gateway::proxy::compress::Compressor;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// A token shaped like the old gateway's: a student with every claim.
fn token(user: u32) -> String {
    let claims = serde_json::json!({
        "userId": format!("u{user}"), "username": "张三", "userType": "student",
        "userNumber": "2021001", "email": "zhangsan@example.edu", "phone": "13800000000",
        "collegeName": "计算机学院", "majorName": "软件工程", "className": "软件2101",
        "roles": ["student"], "permissions": ["attendance:checkin", "leave:apply"],
        "iat": 1_796_468_474u64, "exp": 4_950_068_474u64,
    });
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn authenticator() -> Authenticator {
    Authenticator::new(&AuthConfig {
        secret: Some(Secret::new(SECRET)),
        secret_file: None,
        cookie_name: "wps_jwt_token".into(),
        issuer: None,
        audience: None,
    })
    .unwrap()
}

fn verify(c: &mut Criterion) {
    let t = token(1);
    let verifier = Verifier::new(SECRET.as_bytes(), None, None);
    c.bench_function(
        "auth: verify a token (cache miss: HMAC, claims, headers)",
        |b| {
            b.iter(|| {
                let claims = verifier.verify(black_box(&t), 1_800_000_000.0).unwrap();
                black_box(identity::headers(&claims))
            })
        },
    );
    let cookie = format!(
        "theme=dark; wps_jwt_token={}",
        token::sign(&t, SECRET.as_bytes()).unwrap()
    );
    let mut with_cookie = HeaderMap::new();
    with_cookie.insert("cookie", HeaderValue::from_str(&cookie).unwrap());
    c.bench_function("auth: find and unsign the cookie", |b| {
        b.iter(|| {
            black_box(token::find(
                black_box(&with_cookie),
                "wps_jwt_token",
                SECRET.as_bytes(),
            ))
        })
    });
    let auth = authenticator();
    let mut bearer = HeaderMap::new();
    bearer.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
    );
    let now = tokio::time::Instant::now();
    auth.authenticate(&bearer, now).unwrap();
    c.bench_function("auth: authenticate a known bearer token (cache hit)", |b| {
        b.iter(|| black_box(auth.authenticate(black_box(&bearer), now).unwrap()))
    });
    c.bench_function(
        "auth: authenticate a known signed cookie (cache hit)",
        |b| {
            auth.authenticate(&with_cookie, now).unwrap();
            b.iter(|| black_box(auth.authenticate(black_box(&with_cookie), now).unwrap()))
        },
    );
    let (entries, bytes) = auth.cache_size();
    println!("cache after 1 token: {entries} entries, {bytes} bytes");
    let many = authenticator();
    for user in 0..10_000 {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {}", token(user))).unwrap(),
        );
        many.authenticate(&h, now).unwrap();
    }
    let (entries, bytes) = many.cache_size();
    println!(
        "cache after 10,000 distinct tokens on one thread: {entries} entries, {bytes} bytes ({} bytes a token)",
        bytes / entries.max(1)
    );
}

fn json(len: usize) -> Bytes {
    let mut out = Vec::with_capacity(len);
    let mut i = 0u32;
    while out.len() < len {
        out.extend_from_slice(
            format!("{{\"id\":{i},\"student\":\"2021{i:03}\",\"state\":\"checked-in\",\"at\":\"2026-12-05T08:0{}:00Z\"}},", i % 10)
                .as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    Bytes::from(out)
}

fn gzip(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let compressor = Compressor::new(&CompressionConfig::default()).unwrap();
    let mut group = c.benchmark_group("gzip a JSON answer");
    for (level, size) in [(6, 4 * 1024), (6, 64 * 1024), (1, 4 * 1024), (1, 64 * 1024)] {
        let body = json(size);
        let compressor = Compressor::new(&CompressionConfig {
            level,
            ..CompressionConfig::default()
        })
        .unwrap();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(
            format!("level {level}, {} KiB, one piece", size / 1024),
            |b| {
                b.iter(|| {
                    rt.block_on(async {
                        let out = compressor
                            .wrap(Full::new(body.clone()))
                            .collect()
                            .await
                            .unwrap()
                            .to_bytes();
                        black_box(out.len())
                    })
                })
            },
        );
    }
    group.finish();
    let body = json(64 * 1024);
    let out = rt.block_on(async {
        compressor
            .wrap(Full::new(body.clone()))
            .collect()
            .await
            .unwrap()
            .to_bytes()
    });
    println!("64 KiB of JSON -> {} bytes gzipped", out.len());
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = verify, gzip
}
criterion_main!(benches);
