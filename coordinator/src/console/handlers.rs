//! The console's HTTP handlers for login, logout and the read pages: a page needs a live
//! session (else a redirect to the login form), reads this coordinator's fleet through the
//! API views and renders it with `pages`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use opsfleet_proto::api::{
    AlertsRequest, BackupsRequest, CommandsRequest, HostsRequest, IncidentsRequest, PageRequest,
    Responder, RolloutsRequest, ServicesRequest, SilencesRequest, ROWS_PAGE_DEFAULT,
};
use opsfleet_proto::time::now_unix_ms;
use serde::Deserialize;

use super::html::Frame;
use super::pages::{self, EventsQuery, FleetQuery, HostPage};
use super::sessions::{random_token, Session};
use super::users::constant_time_eq;
use super::{lock, Console, LOGIN_COOKIE, SESSION_COOKIE};
use crate::api::View;

type C = State<Arc<Console>>;

/// A logged-in request: its session id and session.
pub(super) struct Login {
    pub id: String,
    pub session: Session,
}

/// The session of the request, or the redirect to the login form.
pub(super) fn require(c: &Console, headers: &HeaderMap) -> Result<Login, Box<Response>> {
    match c.session(headers) {
        Some((id, session)) => Ok(Login { id, session }),
        None => Err(Box::new(Redirect::to("/console/login").into_response())),
    }
}

/// This coordinator as API replies name it (`behind` is not asked of the server here).
pub(super) fn responder(c: &Console) -> Responder {
    c.shared.responder(0)
}

pub(super) fn frame<'a>(l: &'a Login, leader: &'a Responder) -> Frame<'a> {
    Frame {
        operator: &l.session.operator,
        role: l.session.role,
        csrf: &l.session.csrf,
        leader,
    }
}

/// Whether a POST comes from this console's own pages: when the browser sends `Origin` (or,
/// without it, `Referer`), it must name the host the request was sent to.
pub(super) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let matches = |value: &str, exact: bool| {
        ["http://", "https://"].iter().any(|scheme| {
            let origin = format!("{scheme}{host}");
            if exact {
                value == origin
            } else {
                value == origin || value.starts_with(&format!("{origin}/"))
            }
        })
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        return origin.to_str().is_ok_and(|o| matches(o, true));
    }
    if let Some(referer) = headers.get(header::REFERER) {
        return referer.to_str().is_ok_and(|r| matches(r, false));
    }
    true
}

/// 403 with a one-line reason (a failed CSRF or origin check); nothing was done.
pub(super) fn forbidden(reason: &str) -> Response {
    let body = pages::bare("Refused", "forbidden", reason);
    (StatusCode::FORBIDDEN, Html(body)).into_response()
}

/// Checks a POST of a logged-in session: same origin, and the form's token is the session's.
pub(super) fn check_post(
    l: &Login,
    headers: &HeaderMap,
    csrf: Option<&str>,
) -> Result<(), Box<Response>> {
    if !same_origin(headers) {
        return Err(Box::new(forbidden("cross-origin request refused")));
    }
    let ok = csrf.is_some_and(|t| constant_time_eq(t.as_bytes(), l.session.csrf.as_bytes()));
    if !ok {
        return Err(Box::new(forbidden(
            "missing or wrong CSRF token; reload the page",
        )));
    }
    Ok(())
}

fn server_error(what: &str) -> Response {
    tracing::error!(what, "console cannot answer");
    (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot {what}")).into_response()
}

pub async fn root() -> Redirect {
    Redirect::to("/console/fleet")
}

/// The login form with a fresh pre-session CSRF token (also set as a cookie).
fn login_page(c: &Console, status: StatusCode, error: Option<&str>) -> Response {
    let Ok(token) = random_token() else {
        return server_error("make a login token");
    };
    let cookie = c.set_cookie(LOGIN_COOKIE, &token);
    (
        status,
        [(header::SET_COOKIE, cookie)],
        Html(pages::login(&token, error)),
    )
        .into_response()
}

pub async fn login_form(State(c): C, headers: HeaderMap) -> Response {
    if c.session(&headers).is_some() {
        return Redirect::to("/console/fleet").into_response();
    }
    login_page(&c, StatusCode::OK, None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

/// The peer address, when the listener recorded it.
fn peer(ext: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    ext.get::<axum::extract::ConnectInfo<opsfleet_httpserve::PeerAddr>>()
        .map(|c| c.0 .0.ip())
}

pub async fn login(
    State(c): C,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    Form(form): Form<LoginForm>,
) -> Response {
    if !same_origin(&headers) {
        return forbidden("cross-origin request refused");
    }
    let pre = c.cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if pre.is_empty() || !constant_time_eq(pre.as_bytes(), form.csrf.as_bytes()) {
        return forbidden("missing or wrong login token; reload the login page");
    }
    // A name that cannot be an operator's (a subject token, at most 64 characters) is a failed
    // login counted against the address only: never a throttle key or a log line of its own
    // (a form may carry megabytes).
    let valid_name = opsfleet_proto::subjects::validate_token(&form.name).is_ok();
    let mut keys: Vec<String> = Vec::with_capacity(2);
    if valid_name {
        keys.push(format!("name:{}", form.name));
    }
    keys.extend(peer(&ext).map(|ip| format!("addr:{ip}")));
    let now = Instant::now();
    let wait = {
        let throttle = lock(&c.throttle);
        keys.iter().filter_map(|k| throttle.wait(k, now)).max()
    };
    if let Some(wait) = wait {
        let text = format!(
            "too many failed logins; try again in {} s",
            wait.as_secs().max(1)
        );
        return login_page(&c, StatusCode::TOO_MANY_REQUESTS, Some(&text));
    }
    let user = if valid_name {
        c.users.check(&form.name, &form.token).cloned()
    } else {
        None
    };
    let Some(user) = user else {
        let mut throttle = lock(&c.throttle);
        keys.iter().for_each(|k| throttle.failed(k, now));
        drop(throttle);
        let shown = if valid_name {
            form.name.as_str()
        } else {
            "<not a name>"
        };
        tracing::warn!(operator = %shown, "console login failed");
        return login_page(
            &c,
            StatusCode::UNAUTHORIZED,
            Some("unknown operator or wrong token"),
        );
    };
    // Only the name's failures are forgotten: one good login must not clear an address's.
    if let Some(name_key) = keys.first().filter(|k| k.starts_with("name:")) {
        lock(&c.throttle).succeeded(name_key);
    }
    let (Ok(id), Ok(csrf)) = (random_token(), random_token()) else {
        return server_error("make a session");
    };
    lock(&c.sessions).create(&user, id.clone(), csrf, now);
    tracing::info!(operator = %user.name, role = user.role.as_str(), "console login");
    let mut resp = Redirect::to("/console/fleet").into_response();
    let h = resp.headers_mut();
    for cookie in [
        c.set_cookie(SESSION_COOKIE, &id),
        c.set_cookie(LOGIN_COOKIE, ""),
    ] {
        if let Ok(v) = cookie.parse() {
            h.append(header::SET_COOKIE, v);
        }
    }
    resp
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: Option<String>,
}

pub async fn logout(State(c): C, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    let l = match require(&c, &headers) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    if let Err(r) = check_post(&l, &headers, form.csrf.as_deref()) {
        return *r;
    }
    lock(&c.sessions).remove(&l.id);
    let mut resp = Redirect::to("/console/login").into_response();
    if let Ok(v) = c.set_cookie(SESSION_COOKIE, "").parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// Renders a page for a logged-in request, or redirects to the login form.
fn with_login(c: &Console, headers: &HeaderMap, render: impl FnOnce(&Frame) -> String) -> Response {
    match require(c, headers) {
        Ok(l) => {
            let leader = responder(c);
            Html(render(&frame(&l, &leader))).into_response()
        }
        Err(r) => *r,
    }
}

fn blank(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

/// One page of the fleet overview (`FLEET_PAGE` hosts), as `ops.api.hosts` pages it.
pub fn fleet_page(
    fleet: &crate::projection::Fleet,
    q: &FleetQuery,
    now: i64,
) -> (Vec<opsfleet_proto::api::HostSummary>, Option<String>) {
    let req = HostsRequest {
        host: blank(q.host.clone()),
        state: blank(q.state.clone()),
        page: PageRequest {
            limit: Some(pages::FLEET_PAGE),
            after: blank(q.after.clone()),
        },
    };
    crate::api::hosts(fleet, &req, now)
}

pub async fn fleet(State(c): C, headers: HeaderMap, Query(q): Query<FleetQuery>) -> Response {
    with_login(&c, &headers, |f| {
        let (hosts, next) = fleet_page(&c.shared.fleet(), &q, now_unix_ms());
        pages::fleet(f, &q, &hosts, next.as_deref())
    })
}

pub async fn host(State(c): C, headers: HeaderMap, Path(name): Path<String>) -> Response {
    let l = match require(&c, &headers) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    let leader = responder(&c);
    let now = now_unix_ms();
    let fleet = c.shared.fleet();
    let Some(state) = fleet.host(&name) else {
        let body = pages::message(
            &frame(&l, &leader),
            "Unknown host",
            "unknown-host",
            &format!("no host {name} in this coordinator's fleet"),
        );
        return (StatusCode::NOT_FOUND, Html(body)).into_response();
    };
    let disks: Vec<_> = state
        .disks
        .iter()
        .map(|(p, d)| crate::api::disk_view(p, d))
        .collect();
    let exact = |limit| PageRequest {
        limit: Some(limit),
        after: None,
    };
    // Globs in a host name are not possible (names are subject tokens), so the name is exact.
    let (summaries, _) = crate::api::hosts(
        &fleet,
        &HostsRequest {
            host: Some(name.clone()),
            state: None,
            page: exact(1),
        },
        now,
    );
    let services = ServicesRequest {
        host: Some(name.clone()),
        ..Default::default()
    }
    .answer(&fleet, leader.clone(), now)
    .services;
    let alerts = AlertsRequest {
        host: Some(name.clone()),
        state: None,
        page: exact(ROWS_PAGE_DEFAULT),
    }
    .answer(&fleet, leader.clone(), now)
    .alerts;
    let commands = crate::api::command_views(
        &fleet,
        &CommandsRequest {
            host: Some(name.clone()),
            limit: Some(20),
            ..Default::default()
        },
    );
    let Some(summary) = summaries.first() else {
        return server_error("summarise the host");
    };
    let page = HostPage {
        summary,
        disks: &disks,
        services: &services,
        alerts: &alerts,
        commands: &commands,
    };
    Html(pages::host(&frame(&l, &leader), &page)).into_response()
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

impl ListQuery {
    fn page(&self) -> PageRequest {
        PageRequest {
            limit: Some(ROWS_PAGE_DEFAULT),
            after: blank(self.after.clone()),
        }
    }
}

pub async fn alerts(State(c): C, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    with_login(&c, &headers, |f| {
        let req = AlertsRequest {
            host: blank(q.host.clone()),
            state: blank(q.state.clone()),
            page: q.page(),
        };
        let reply = req.answer(&c.shared.fleet(), f.leader.clone(), now_unix_ms());
        pages::alerts(f, &reply.alerts, reply.next.as_deref())
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct SilencesQuery {
    #[serde(default)]
    all: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

pub async fn silences(State(c): C, headers: HeaderMap, Query(q): Query<SilencesQuery>) -> Response {
    with_login(&c, &headers, |f| {
        let all = q.all.as_deref().is_some_and(|v| !v.is_empty() && v != "0");
        let req = SilencesRequest {
            all,
            page: PageRequest {
                limit: Some(ROWS_PAGE_DEFAULT),
                after: blank(q.after.clone()),
            },
        };
        let reply = req.answer(&c.shared.fleet(), f.leader.clone(), now_unix_ms());
        pages::silences(f, &reply.silences, all, reply.next.as_deref())
    })
}

pub async fn incidents(State(c): C, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    with_login(&c, &headers, |f| {
        let req = IncidentsRequest {
            host: blank(q.host.clone()),
            page: q.page(),
            ..Default::default()
        };
        let reply = req.answer(&c.shared.fleet(), f.leader.clone(), now_unix_ms());
        pages::incidents(f, &reply.incidents, reply.next.as_deref())
    })
}

pub async fn backups(State(c): C, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    with_login(&c, &headers, |f| {
        let req = BackupsRequest {
            host: blank(q.host.clone()),
            page: q.page(),
            ..Default::default()
        };
        let reply = req.answer(&c.shared.fleet(), f.leader.clone(), now_unix_ms());
        pages::backups(f, &reply.backups, reply.next.as_deref())
    })
}

pub async fn commands(State(c): C, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    with_login(&c, &headers, |f| {
        let req = CommandsRequest {
            host: blank(q.host.clone()),
            limit: Some(200),
            ..Default::default()
        };
        pages::commands(f, &crate::api::command_views(&c.shared.fleet(), &req))
    })
}

pub async fn rollouts(State(c): C, headers: HeaderMap) -> Response {
    with_login(&c, &headers, |f| {
        let rollouts = crate::api::rollouts::list(&c.shared, &RolloutsRequest::default())
            .map(|r| r.rollouts)
            .unwrap_or_default();
        pages::rollouts(f, &rollouts)
    })
}

pub async fn coordinator(State(c): C, headers: HeaderMap) -> Response {
    with_login(&c, &headers, pages::coordinator)
}

pub async fn events(State(c): C, headers: HeaderMap, Query(q): Query<EventsQuery>) -> Response {
    with_login(&c, &headers, |f| pages::events(f, &q))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn posts_must_come_from_the_console_itself() {
        let host = ("host", "127.0.0.1:9465");
        assert!(
            same_origin(&headers(&[host])),
            "no Origin nor Referer: the token decides"
        );
        assert!(same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:9465")
        ])));
        assert!(same_origin(&headers(&[
            host,
            ("origin", "https://127.0.0.1:9465")
        ])));
        assert!(same_origin(&headers(&[
            host,
            ("referer", "http://127.0.0.1:9465/console/host/a")
        ])));
        for bad in [
            ("origin", "http://evil.example"),
            ("origin", "http://127.0.0.1:9465.evil.example"),
            ("origin", "null"),
            ("referer", "http://127.0.0.1:94651/console"),
            ("referer", "http://evil.example/http://127.0.0.1:9465/"),
        ] {
            assert!(!same_origin(&headers(&[host, bad])), "{bad:?}");
        }
        assert!(
            !same_origin(&headers(&[("origin", "http://127.0.0.1:9465")])),
            "no Host"
        );
    }
}
