//! Judging an answer: the attempt's rule, no server error, no foreign
//! secret, and the same answer as its twin once ids are swapped back.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use super::world::foreign_secrets;
use super::{Answered, Attempt, Rule, Surface};
use cedargate::sidecar::client::Reply;

#[derive(Debug, Clone)]
pub struct Violation {
    pub class: &'static str,
    pub label: String,
    pub detail: String,
}

impl Violation {
    pub fn new(class: &'static str, label: &str, detail: impl Into<String>) -> Self {
        let mut detail: String = detail.into();
        if detail.len() > 600 {
            let cut = (0..=600)
                .rev()
                .find(|i| detail.is_char_boundary(*i))
                .unwrap_or(0);
            detail.truncate(cut);
            detail.push('…');
        }
        Violation {
            class,
            label: label.to_string(),
            detail,
        }
    }
}

/// Whether an answer lets the request through: a 2xx that is not a Deny
/// (any `Allow` of a batch counts).
pub fn allowed(r: &Reply) -> bool {
    if !r.status.is_success() {
        return false;
    }
    let j = r.json();
    let says_allow = |v: &Value| matches!(v["decision"].as_str(), Some("Allow" | "ALLOW"));
    if let Some(results) = j["results"].as_array() {
        return results.iter().any(says_allow);
    }
    if j.get("decision").is_some() {
        return says_allow(&j);
    }
    true
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Replaces every UUID in `s` (decision and request ids) by `<id>`.
fn scrub(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s.is_char_boundary(i)
            && i + 36 <= s.len()
            && s.is_char_boundary(i + 36)
            && is_uuid(&s[i..i + 36])
        {
            out.push_str("<id>");
            i += 36;
        } else {
            let c = s[i..].chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The answer with what legitimately differs taken out: ids, dates, the
/// body's length; `data_age_ms` values are returned apart.
struct Normal {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
    ages: Vec<u64>,
}

fn take_ages(v: &mut Value, ages: &mut Vec<u64>) {
    match v {
        Value::Object(map) => {
            if let Some(age) = map.remove("data_age_ms") {
                ages.push(age.as_u64().unwrap_or(u64::MAX));
            }
            for (_, child) in map.iter_mut() {
                take_ages(child, ages);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|c| take_ages(c, ages)),
        _ => {}
    }
}

fn normal(r: &Reply, swaps_back: &[(String, String)]) -> Normal {
    let back = |s: &str| {
        swaps_back
            .iter()
            .fold(s.to_string(), |acc, (from, to)| acc.replace(from, to))
    };
    let headers = r
        .headers
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "date" | "content-length" | "x-decision-id" | "x-amzn-requestid"
            )
        })
        .map(|(k, v)| (k.to_string(), back(&scrub(v.to_str().unwrap_or("?")))))
        .collect();
    let mut ages = Vec::new();
    let body = match serde_json::from_str::<Value>(&back(&r.body)) {
        Ok(mut v) => {
            take_ages(&mut v, &mut ages);
            scrub(&v.to_string())
        }
        Err(_) => scrub(&back(&r.body)),
    };
    Normal {
        status: r.status.as_u16(),
        headers,
        body,
        ages,
    }
}

/// Every check of one attempt.
pub fn judge(
    at: &Attempt,
    ans: &Answered,
    known: &HashMap<String, HashSet<String>>,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut check_one = |r: &Reply, which: &str| {
        if r.status.is_server_error() {
            out.push(Violation::new(
                "server-error",
                &format!("{} ({which})", at.label),
                format!("{} {}", r.status, r.body),
            ));
        }
        let text = {
            let mut t = String::new();
            for (k, v) in &r.headers {
                t.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("")));
            }
            scrub(&(t + &r.body))
        };
        let empty = HashSet::new();
        let named = known.get(at.tenant).unwrap_or(&empty);
        for (owner, secret) in foreign_secrets(at.tenant) {
            if text.contains(&secret) && !named.contains(&secret) {
                out.push(Violation::new(
                    "leak",
                    &format!("{} ({which})", at.label),
                    format!("{owner}'s {secret:?} in {} {}", r.status, r.body),
                ));
            }
        }
    };
    check_one(&ans.reply, "attempt");
    if let Some(t) = &ans.twin {
        check_one(t, "twin");
    }
    let breach = match at.rule {
        Rule::NoAllow => allowed(&ans.reply),
        Rule::NotSuccess => ans.reply.status.is_success(),
    };
    if breach {
        let class = match (at.rule, at.surface) {
            (Rule::NotSuccess, _) => "missing-field-approved",
            (_, Surface::Token) => "bad-token-allowed",
            _ => "cross-tenant-allow",
        };
        out.push(Violation::new(
            class,
            &at.label,
            format!("{} {}", ans.reply.status, ans.reply.body),
        ));
    }
    if let Some(twin) = &ans.twin {
        let back: Vec<(String, String)> = at
            .swaps
            .iter()
            .map(|(f, t)| (t.clone(), f.clone()))
            .collect();
        let a = normal(&ans.reply, &[]);
        let b = normal(twin, &back);
        let ages_ok = a.ages.len() == b.ages.len()
            && a.ages.iter().zip(&b.ages).all(|(x, y)| {
                // Both read the caller's own record: they differ by the time
                // between the requests, or the record was read again between
                // them (then the later one is that young).
                x.abs_diff(*y) <= ans.between_ms + 1 || *y <= ans.between_ms + 1
            });
        if a.status != b.status || a.headers != b.headers || a.body != b.body || !ages_ok {
            let class = if at.swaps.is_empty() {
                "differs-from-clean-request"
            } else {
                "differs-from-missing-tenant"
            };
            out.push(Violation::new(
                class,
                &at.label,
                format!(
                    "{} {:?} {} ages {:?}\n    vs {} {:?} {} ages {:?}",
                    a.status, a.headers, a.body, a.ages, b.status, b.headers, b.body, b.ages
                ),
            ));
        }
    }
    out
}

/// The run in a few lines: attempts per surface, violations per class with
/// examples.
pub fn summary(
    surfaces: &[(Surface, usize)],
    total: usize,
    requests: usize,
    violations: &[Violation],
) -> String {
    let mut s = format!("attack run: {total} attempts ({requests} requests with twins)\n");
    for (surface, n) in surfaces {
        s.push_str(&format!("  {surface:?}: {n}\n"));
    }
    let mut by_class: BTreeMap<&str, Vec<&Violation>> = BTreeMap::new();
    for v in violations {
        by_class.entry(v.class).or_default().push(v);
    }
    s.push_str(&format!("violations: {}\n", violations.len()));
    for (class, list) in by_class {
        s.push_str(&format!("  {class}: {}\n", list.len()));
        for v in list.iter().take(4) {
            s.push_str(&format!("    - {}\n      {}\n", v.label, v.detail));
        }
    }
    s
}
