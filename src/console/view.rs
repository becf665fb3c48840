//! The console's HTML: one layout, a few components, and numbers and times
//! formatted for people. Everything interpolated is escaped by `maud`.

use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};

/// The stylesheet, served at `/console/static/console.css`.
pub const CSS: &str = include_str!("console.css");

/// What the page header shows of the signed-in user.
pub struct Nav {
    pub user: String,
    pub tenant: String,
    pub roles: String,
    pub csrf: String,
    /// (label, href, current)
    pub links: Vec<(&'static str, String, bool)>,
}

/// A whole page.
pub fn page(title: &str, nav: Option<&Nav>, notice: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · cedargate console" }
                link rel="stylesheet" href="/console/static/console.css";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/console/" { "cedargate" }
                    @if let Some(n) = nav {
                        nav aria-label="Sections" {
                            ul {
                                @for (label, href, current) in &n.links {
                                    li {
                                        @if *current {
                                            a href=(href) aria-current="page" { (label) }
                                        } @else {
                                            a href=(href) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                        div.who {
                            span.user title=(format!("roles: {}", n.roles)) {
                                (n.user) " · " (n.tenant)
                            }
                            form method="post" action="/console/logout" {
                                input type="hidden" name="csrf" value=(n.csrf);
                                button.link type="submit" id="sign-out" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    @if let Some(text) = notice {
                        p.notice role="status" { (text) }
                    }
                    (body)
                }
            }
        }
    }
}

/// A page that says what went wrong, in words.
pub fn problem(nav: Option<&Nav>, title: &str, text: &str) -> Markup {
    page(
        title,
        nav,
        None,
        html! {
            p.problem role="alert" { (text) }
            p { a href="/console/" { "Back to the start page" } }
        },
    )
}

/// The hidden CSRF field of a form.
pub fn csrf(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// 12,345.
pub fn int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// 1.2 GB (decimal units, as storage is sold).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KB", "MB", "GB", "TB"];
    if n < 1000 {
        return format!("{} {}", int(n), if n == 1 { "byte" } else { "bytes" });
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if v < 10.0 {
        format!("{v:.1} {}", UNITS[unit])
    } else {
        format!("{v:.0} {}", UNITS[unit])
    }
}

/// "3 days ago", "in 5 hours".
pub fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds();
    let (future, s) = (secs < 0, secs.unsigned_abs());
    let (n, unit) = match s {
        0..=44 => return "just now".into(),
        45..=3599 => (s.div_ceil(60).max(1), "minute"),
        3600..=86_399 => (s / 3600, "hour"),
        86_400..=2_591_999 => (s / 86_400, "day"),
        2_592_000..=31_535_999 => (s / 2_592_000, "month"),
        _ => (s / 31_536_000, "year"),
    };
    let plural = if n == 1 { "" } else { "s" };
    if future {
        format!("in {n} {unit}{plural}")
    } else {
        format!("{n} {unit}{plural} ago")
    }
}

/// A time as people read it, the exact time on hover.
pub fn when(t: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    let exact = t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    html! { time datetime=(t.to_rfc3339()) title=(exact) { (relative(t, now)) } }
}

/// A small label: `kind` picks its colour (`ok`, `warn`, `bad`, `info`).
pub fn badge(kind: &str, text: &str) -> Markup {
    html! { span class=(format!("badge {kind}")) { (text) } }
}

pub fn status_badge(status: &str) -> Markup {
    let kind = match status {
        "active" => "ok",
        "trial" => "info",
        "suspended" => "warn",
        _ => "bad",
    };
    badge(kind, status)
}

/// Usage against a limit, as a bar with the numbers beside it.
pub fn meter(label: &str, used: u64, limit: u64, fmt: fn(u64) -> String) -> Markup {
    let pct = used
        .saturating_mul(100)
        .checked_div(limit)
        .map_or(100, |p| p.min(100));
    let kind = match pct {
        0..=79 => "ok",
        80..=99 => "warn",
        _ => "bad",
    };
    html! {
        div.meter {
            div.meter-label {
                span { (label) }
                span { (fmt(used)) " of " (fmt(limit)) " (" (pct) "%)" }
            }
            meter min="0" max=(limit.max(1)) value=(used.min(limit.max(1))) class=(kind)
                aria-label=(format!("{label}: {} of {}", fmt(used), fmt(limit))) {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_like_people_write_them() {
        assert_eq!(int(0), "0");
        assert_eq!(int(999), "999");
        assert_eq!(int(12_345), "12,345");
        assert_eq!(int(1_234_567), "1,234,567");
        assert_eq!(bytes(1), "1 byte");
        assert_eq!(bytes(999), "999 bytes");
        assert_eq!(bytes(1_200_000_000), "1.2 GB");
        assert_eq!(bytes(45_000), "45 KB");
    }

    #[test]
    fn times_are_relative_with_the_exact_time_on_hover() {
        let now = DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(relative(now, now), "just now");
        assert_eq!(relative(now - chrono::Duration::days(3), now), "3 days ago");
        assert_eq!(
            relative(now - chrono::Duration::hours(1), now),
            "1 hour ago"
        );
        assert_eq!(relative(now + chrono::Duration::days(2), now), "in 2 days");
        let m = when(now - chrono::Duration::minutes(5), now).into_string();
        assert!(m.contains("5 minutes ago"), "{m}");
        assert!(m.contains("title=\"2026-12-02 09:55:00 UTC\""), "{m}");
    }

    #[test]
    fn what_users_typed_is_escaped() {
        let nav = Nav {
            user: "<script>alert(1)</script>".into(),
            tenant: "t\"1".into(),
            roles: String::new(),
            csrf: "x".into(),
            links: vec![],
        };
        let html = page("a<b", Some(&nav), Some("<i>"), html! {}).into_string();
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("a&lt;b"));
        assert!(html.contains("&lt;i&gt;"));
    }
}
