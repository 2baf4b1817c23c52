//! A token verified as the old gateway's `jsonwebtoken` (Node, v9) verifies it: HS256, HS384
//! or HS512 with the secret, then `nbf`, then `exp`, then audience and issuer when configured,
//! in that order, with no clock tolerance. The signature and the token's syntax are checked by
//! the `jsonwebtoken` crate (constant-time HMAC comparison, strict base64url); the claims are
//! checked here, because the two libraries differ at the edges: the Rust one counts a token
//! as expired one second later (`exp < now` against Node's `now >= exp`), has a default
//! leeway, and checks the audience before the expiry, which would turn an expired token into
//! "Malformed token" where the old gateway said "Token has expired".

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// A token's claims, its signature verified and its times checked.
pub type Claims = Map<String, Value>;

/// Why a token was refused, in the two kinds the old gateway told clients apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the token has expired")]
    Expired,
    /// Everything else: not a JWT, another algorithm or secret, tampered, not yet valid, the
    /// wrong audience or issuer.
    #[error("the token is malformed or does not verify: {0}")]
    Malformed(String),
}

#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    pub fn new(secret: &[u8], issuer: Option<String>, audience: Option<String>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
        // Every claim is checked below, with Node's rules.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        Self {
            key: DecodingKey::from_secret(secret),
            validation,
            issuer,
            audience,
        }
    }

    /// The token's claims if it verifies at `now` (seconds since the Unix epoch).
    pub fn verify(&self, token: &str, now: f64) -> Result<Claims, Refused> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| Refused::Malformed(e.to_string()))?;
        let claims = data.claims;
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf
                .as_f64()
                .ok_or_else(|| Refused::Malformed("nbf is not a number".into()))?;
            if nbf > now {
                return Err(Refused::Malformed("not valid before its nbf".into()));
            }
        }
        if let Some(exp) = claims.get("exp") {
            let exp = exp
                .as_f64()
                .ok_or_else(|| Refused::Malformed("exp is not a number".into()))?;
            if now >= exp {
                return Err(Refused::Expired);
            }
        }
        if let Some(want) = &self.audience {
            let ok = match claims.get("aud") {
                Some(Value::String(aud)) => aud == want,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(want)),
                _ => false,
            };
            if !ok {
                return Err(Refused::Malformed("audience does not match".into()));
            }
        }
        if let Some(want) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(want)
        {
            return Err(Refused::Malformed("issuer does not match".into()));
        }
        Ok(claims)
    }
}

/// When the claims stop being valid, if they say (seconds since the Unix epoch).
pub fn expiry(claims: &Claims) -> Option<f64> {
    claims.get("exp").and_then(Value::as_f64)
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: f64 = 1_800_000_000.0;

    fn token(alg: Algorithm, claims: Value) -> String {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn v() -> Verifier {
        Verifier::new(SECRET, None, None)
    }

    #[test]
    fn hs256_384_512_verify_and_others_do_not() {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let t = token(alg, json!({"userId": "u1"}));
            assert_eq!(v().verify(&t, NOW).unwrap()["userId"], "u1", "{alg:?}");
        }
        let other = encode(
            &Header::new(Algorithm::HS256),
            &json!({"userId": "u1"}),
            &EncodingKey::from_secret(b"another secret"),
        )
        .unwrap();
        assert!(matches!(
            v().verify(&other, NOW),
            Err(Refused::Malformed(_))
        ));
        for bad in ["", "abc.def", "a.b.c", "eyJhbGciOiJub25lIn0.eyJ1IjoxfQ."] {
            assert!(
                matches!(v().verify(bad, NOW), Err(Refused::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn times_follow_nodes_rules() {
        let at = |claims: Value| v().verify(&token(Algorithm::HS256, claims), NOW);
        assert!(at(json!({})).is_ok(), "no exp: accepted");
        assert!(at(json!({"exp": NOW + 1.0})).is_ok());
        assert_eq!(
            at(json!({"exp": NOW})),
            Err(Refused::Expired),
            "expired at exp itself"
        );
        assert_eq!(at(json!({"exp": NOW - 60.0})), Err(Refused::Expired));
        assert!(matches!(
            at(json!({"exp": "soon"})),
            Err(Refused::Malformed(_))
        ));
        assert!(at(json!({"nbf": NOW})).is_ok());
        assert!(matches!(
            at(json!({"nbf": NOW + 1.0})),
            Err(Refused::Malformed(_))
        ));
        // nbf is checked before exp, as Node does.
        assert!(matches!(
            at(json!({"nbf": NOW + 1.0, "exp": NOW - 1.0})),
            Err(Refused::Malformed(_))
        ));
    }

    #[test]
    fn audience_and_issuer_only_when_configured_and_after_the_expiry() {
        let t = token(Algorithm::HS256, json!({"aud": "x", "iss": "y"}));
        assert!(v().verify(&t, NOW).is_ok(), "not checked unless configured");
        let strict = Verifier::new(SECRET, Some("gw".into()), Some("app".into()));
        assert!(matches!(strict.verify(&t, NOW), Err(Refused::Malformed(_))));
        let ok = token(
            Algorithm::HS256,
            json!({"aud": ["other", "app"], "iss": "gw"}),
        );
        assert!(strict.verify(&ok, NOW).is_ok());
        let expired = token(Algorithm::HS256, json!({"aud": "x", "exp": NOW - 1.0}));
        assert_eq!(strict.verify(&expired, NOW), Err(Refused::Expired));
    }
}
