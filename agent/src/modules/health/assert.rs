//! JSON field assertions of an HTTP probe (pure): the body parsed once, each RFC 6901
//! pointer resolved and compared; a failure names the pointer, what was expected and what
//! was seen.

use serde_json::Value;

use crate::config::{Comparison, JsonAssertion};

/// How much of a seen value a detail quotes.
const SEEN_CHARS: usize = 80;

/// `Ok` when every assertion holds on `body`; else every failing one, `; `-separated.
/// `truncated`: the body was longer than the probe reads, so it cannot be judged.
pub fn check(assertions: &[JsonAssertion], body: &[u8], truncated: bool) -> Result<(), String> {
    if assertions.is_empty() {
        return Ok(());
    }
    if truncated {
        return Err(format!(
            "body longer than {} KiB; JSON assertions need the whole body",
            super::seen::BODY_LIMIT / 1024
        ));
    }
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let failures: Vec<String> = assertions
        .iter()
        .filter_map(|a| {
            let c = a.comparisons().into_iter().next()?;
            let seen = doc.pointer(&a.pointer);
            (!holds(&c, seen)).then(|| {
                format!(
                    "json {}: expected {}, seen {}",
                    shown_pointer(&a.pointer),
                    expected(&c),
                    seen.map_or("nothing (no such field)".to_owned(), quote)
                )
            })
        })
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// Whether `c` holds for the value `seen` (absent: only a failure).
pub fn holds(c: &Comparison, seen: Option<&Value>) -> bool {
    let Some(v) = seen else {
        return false;
    };
    let num = v.as_f64();
    match c {
        Comparison::Equals(want) => json_eq(v, want),
        Comparison::NotEquals(want) => !json_eq(v, want),
        Comparison::Lt(x) => num.is_some_and(|n| n < *x),
        Comparison::Le(x) => num.is_some_and(|n| n <= *x),
        Comparison::Gt(x) => num.is_some_and(|n| n > *x),
        Comparison::Ge(x) => num.is_some_and(|n| n >= *x),
    }
}

/// JSON equality where numbers compare by value (`1` equals `1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| json_eq(a, b)))
        }
        _ => a == b,
    }
}

fn shown_pointer(p: &str) -> &str {
    if p.is_empty() {
        "\"\" (the whole body)"
    } else {
        p
    }
}

fn expected(c: &Comparison) -> String {
    match c {
        Comparison::Equals(v) => format!("equals {}", quote(v)),
        Comparison::NotEquals(v) => format!("not_equals {}", quote(v)),
        Comparison::Lt(x) => format!("lt {x}"),
        Comparison::Le(x) => format!("le {x}"),
        Comparison::Gt(x) => format!("gt {x}"),
        Comparison::Ge(x) => format!("ge {x}"),
    }
}

/// A value as compact JSON, cut to `SEEN_CHARS` characters.
fn quote(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > SEEN_CHARS {
        let cut: String = s.chars().take(SEEN_CHARS - 1).collect();
        format!("{cut}…")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use Comparison::*;

    fn a(pointer: &str, c: Comparison) -> JsonAssertion {
        JsonAssertion::new(pointer, c)
    }

    const BODY: &str = r#"{"telegram":{"status":"ready","ok":true},"queue":{"depth":42,"rate":1.5},
        "tags":["a","b"],"a/b":{"m~n":7},"nil":null}"#;

    #[test]
    fn comparisons_hold_and_fail_as_named() {
        let body = BODY.as_bytes();
        let pass = [
            a("/telegram/status", Equals(json!("ready"))),
            a("/telegram/ok", Equals(json!(true))),
            a("/queue/depth", Equals(json!(42.0))),
            a("/queue/depth", Lt(100.0)),
            a("/queue/depth", Le(42.0)),
            a("/queue/depth", Gt(41.9)),
            a("/queue/depth", Ge(42.0)),
            a("/queue/rate", NotEquals(json!(2))),
            a("/tags", Equals(json!(["a", "b"]))),
            a("/tags/1", Equals(json!("b"))),
            a("/a~1b/m~0n", Equals(json!(7))),
            a("/nil", Equals(Value::Null)),
            a("/telegram", NotEquals(json!({"status": "down"}))),
        ];
        for p in &pass {
            assert_eq!(check(std::slice::from_ref(p), body, false), Ok(()), "{p:?}");
        }
        let fail = [
            (
                a("/telegram/status", Equals(json!("ready!"))),
                "json /telegram/status: expected equals \"ready!\", seen \"ready\"",
            ),
            (
                a("/queue/depth", Lt(42.0)),
                "json /queue/depth: expected lt 42, seen 42",
            ),
            (
                a("/queue/depth", Gt(42.0)),
                "json /queue/depth: expected gt 42, seen 42",
            ),
            (
                a("/telegram/status", Ge(1.0)),
                "json /telegram/status: expected ge 1, seen \"ready\"",
            ),
            (
                a("/queue/missing", NotEquals(json!(1))),
                "json /queue/missing: expected not_equals 1, seen nothing (no such field)",
            ),
            (
                a("/tags/2", Equals(json!("c"))),
                "json /tags/2: expected equals \"c\", seen nothing (no such field)",
            ),
            (
                a("/queue/rate", NotEquals(json!(1.5))),
                "json /queue/rate: expected not_equals 1.5, seen 1.5",
            ),
        ];
        for (p, want) in &fail {
            assert_eq!(
                check(std::slice::from_ref(p), body, false),
                Err((*want).to_owned())
            );
        }
    }

    #[test]
    fn every_failing_assertion_is_said_and_bodies_that_cannot_be_judged_fail() {
        let all = [
            a("/telegram/status", Equals(json!("down"))),
            a("/queue/depth", Lt(100.0)),
            a("/queue/depth", Gt(100.0)),
        ];
        let err = check(&all, BODY.as_bytes(), false).expect_err("two fail");
        assert_eq!(err.matches("; ").count(), 1, "{err}");
        assert!(
            err.contains("/telegram/status") && err.contains("gt 100"),
            "{err}"
        );
        let err = check(&all, b"<html>ok</html>", false).expect_err("not json");
        assert!(err.starts_with("body is not JSON"), "{err}");
        let err = check(&all, BODY.as_bytes(), true).expect_err("cut");
        assert!(err.contains("longer than 64 KiB"), "{err}");
        assert_eq!(
            check(&[], b"not json", false),
            Ok(()),
            "no assertion, no parse"
        );
        let long = format!("{{\"s\":\"{}\"}}", "x".repeat(500));
        let err = check(&[a("/s", Equals(json!("y")))], long.as_bytes(), false).expect_err("long");
        assert!(err.chars().count() < 200 && err.ends_with('…'), "{err}");
    }
}
