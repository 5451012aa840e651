//! The reader's pages: join, confirm, preferences, unsubscribe. Authorised only by the
//! unguessable token in the URL (no cookies, so no CSRF to defend against). A GET never
//! changes anything: mail scanners fetch links.

use super::pages::{
    ConfirmPage, MessagePage, PreferencesPage, SectionChoice, SubscribePage, UnsubscribePage,
};
use super::{AppState, client_ip};
use crate::domain::TokenPurpose;
use crate::store::Section;
use crate::subscriptions::{ConfirmResult, SignupError, SignupForm};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

fn message(
    st: &AppState,
    heading: &str,
    paragraphs: &[&str],
    link: Option<(&str, &str)>,
) -> MessagePage {
    MessagePage {
        site_name: st.config.site.name.clone(),
        lang: st.config.site.language.to_string(),
        site_url: st.config.site.url.clone(),
        heading: heading.into(),
        paragraphs: paragraphs.iter().map(|p| p.to_string()).collect(),
        // Every link comes from http.public_url, so a herald behind a path
        // (https://news.example.com/newsletter) links within it.
        link: link.map(|(h, t)| {
            let href = if h.starts_with('/') {
                st.public_url(h)
            } else {
                h.to_string()
            };
            (href, t.to_string())
        }),
    }
}

pub(crate) fn internal_error(st: &AppState, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "request failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        message(
            st,
            "Something went wrong",
            &["Please try again in a few minutes."],
            None,
        ),
    )
        .into_response()
}

fn choices(sections: Vec<Section>, checked: &[String]) -> Vec<SectionChoice> {
    sections
        .into_iter()
        .map(|s| SectionChoice {
            checked: checked.contains(&s.slug),
            slug: s.slug,
            name: s.name,
            description: s.description,
        })
        .collect()
}

async fn subscribe_form(
    st: &AppState,
    email: String,
    checked: &[String],
    error: Option<String>,
) -> Response {
    match st.subs.sections().await {
        Ok(sections) => {
            let lone = sections.len() == 1;
            let mut sections = choices(sections, checked);
            // With one section there is nothing to choose: it is ticked, or the first
            // attempt would always fail with "choose at least one section".
            if lone {
                sections[0].checked = true;
            }
            SubscribePage {
                site_name: st.config.site.name.clone(),
                lang: st.config.site.language.to_string(),
                site_url: st.config.site.url.clone(),
                form_action: st.public_url("/subscribe"),
                sections,
                email,
                error,
            }
            .into_response()
        }
        Err(e) => internal_error(st, e),
    }
}

pub async fn subscribe_page(State(st): State<AppState>) -> Response {
    subscribe_form(&st, String::new(), &[], None).await
}

pub async fn subscribe(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ip = client_ip(&st.config, peer, &headers);
    if let Err(wait) = st.limiter.check(ip, st.clock.now()) {
        metrics::counter!("herald_signups_total", "outcome" => "rate_limited").increment(1);
        let mut res = (
            StatusCode::TOO_MANY_REQUESTS,
            message(
                &st,
                "Too many requests",
                &["Please wait a few minutes and try again."],
                None,
            ),
        )
            .into_response();
        res.headers_mut().insert(header::RETRY_AFTER, wait.into());
        return res;
    }
    // An HTML form, urlencoded or multipart. Anything else would parse as an empty form
    // and earn a misleading "enter your address".
    let fields = match super::form_fields(&headers, body).await {
        Ok(f) => f,
        Err(why) => {
            let mut res = subscribe_form(&st, String::new(), &[], Some(format!("{why}."))).await;
            if res.status() == StatusCode::OK {
                *res.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
            }
            return res;
        }
    };
    let mut form = SignupForm::default();
    for (k, v) in fields {
        match k.as_str() {
            "email" => form.email = v,
            "sections" | "sections[]" | "section" => form.sections.push(v),
            "website" => form.honeypot = v,
            "source" => form.source = v,
            _ => {}
        }
    }
    match st.subs.signup(&form, Some(ip.to_string())).await {
        Ok(()) => {
            st.engine.wake();
            // The same page, status and body whatever the address's state: nothing here
            // may tell a stranger whether someone is subscribed.
            message(
                &st,
                "Check your inbox",
                &[
                    "We have sent you an email. Open the link in it to confirm your subscription.",
                    "If nothing arrives within a few minutes, look in your spam folder.",
                ],
                None,
            )
            .into_response()
        }
        Err(e) if e.is_user_error() => {
            // Echo the typed address only when it is printable and short (askama escapes it).
            let echo = if form.email.len() <= 254 && !crate::domain::has_control_chars(&form.email)
            {
                form.email.clone()
            } else {
                String::new()
            };
            let mut res = subscribe_form(&st, echo, &form.sections, Some(e.to_string())).await;
            if res.status() == StatusCode::OK {
                *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            }
            res
        }
        Err(e) => internal_error(&st, e),
    }
}

fn token_problem(st: &AppState, result: &ConfirmResult) -> Response {
    let (status, heading, text) = match result {
        ConfirmResult::AlreadyUsed => (
            StatusCode::GONE,
            "This link has already been used",
            "If you confirmed your subscription, you are all set. Otherwise, sign up again to get a new link.",
        ),
        ConfirmResult::Expired => (
            StatusCode::GONE,
            "This link has expired",
            "Confirmation links are valid for a limited time. Sign up again to get a new one.",
        ),
        ConfirmResult::Withdrawn => (
            StatusCode::GONE,
            "This link can no longer be used",
            "This address is on our list of addresses we send nothing to. If you want our newsletter again, write to us and we will lift it.",
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "This link is not valid",
            "Check that you copied the whole link from the email, or sign up again.",
        ),
    };
    (
        status,
        message(st, heading, &[text], Some(("/subscribe", "Sign up"))),
    )
        .into_response()
}

pub async fn confirm_page(State(st): State<AppState>, Path(token): Path<String>) -> Response {
    match st.subs.peek_confirm(&token).await {
        Ok(ConfirmResult::Confirmed { email, .. }) => ConfirmPage {
            site_name: st.config.site.name.clone(),
            lang: st.config.site.language.to_string(),
            site_url: st.config.site.url.clone(),
            email,
        }
        .into_response(),
        Ok(other) => token_problem(&st, &other),
        Err(e) => internal_error(&st, e),
    }
}

pub async fn confirm(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(refused) = form_only(&st, &headers, body).await {
        return refused;
    }
    let ip = client_ip(&st.config, peer, &headers);
    match st.subs.confirm(&token, Some(ip.to_string())).await {
        Ok(ConfirmResult::Confirmed { sections, .. }) => {
            st.engine.wake();
            let list = format!("Your sections: {}.", sections.join(", "));
            message(
                &st,
                "You are subscribed",
                &[
                    "Thank you for confirming. A welcome email with links to change your sections or unsubscribe is on its way.",
                    &list,
                ],
                Some((&st.config.site.url, "Back to the site")),
            )
            .into_response()
        }
        Ok(other) => token_problem(&st, &other),
        Err(e) => internal_error(&st, e),
    }
}

fn not_subscribed(st: &AppState) -> Response {
    message(
        st,
        "You are not subscribed",
        &["This address receives no newsletter from us. Sign up to choose sections."],
        Some(("/subscribe", "Sign up")),
    )
    .into_response()
}

fn bad_link(st: &AppState) -> Response {
    (
        StatusCode::NOT_FOUND,
        message(
            st,
            "This link is not valid",
            &["Check that you copied the whole link from the email."],
            Some(("/subscribe", "Sign up")),
        ),
    )
        .into_response()
}

/// The reader a preferences link names, or the page that says the link is no good.
async fn reader_of_link(st: &AppState, token: &str) -> Result<crate::store::Subscriber, Response> {
    match st.subs.resolve_link(TokenPurpose::Preferences, token).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(bad_link(st)),
        Err(e) => Err(internal_error(st, e)),
    }
}

pub async fn preferences_page(State(st): State<AppState>, Path(token): Path<String>) -> Response {
    let sub = match reader_of_link(&st, &token).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    if sub.status != crate::domain::SubscriberStatus::Active {
        return not_subscribed(&st);
    }
    let (all, mine) = match (
        st.subs.sections().await,
        st.subs.subscriber_sections(sub.id).await,
    ) {
        (Ok(a), Ok(m)) => (a, m),
        (Err(e), _) | (_, Err(e)) => return internal_error(&st, e),
    };
    let mine: Vec<String> = mine.into_iter().map(|s| s.slug).collect();
    PreferencesPage {
        site_name: st.config.site.name.clone(),
        lang: st.config.site.language.to_string(),
        site_url: st.config.site.url.clone(),
        unsubscribe_url: st.subs.links(sub.id, &sub.email).unsubscribe_url,
        email: sub.email,
        sections: choices(all, &mine),
        error: None,
    }
    .into_response()
}

pub async fn save_preferences(
    State(st): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let sub = match reader_of_link(&st, &token).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let fields = match super::form_fields(&headers, body).await {
        Ok(f) => f,
        Err(why) => {
            return (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message(
                    &st,
                    "Your sections were not changed",
                    &[&format!("{why}.")],
                    Some((&format!("/preferences/{token}"), "Choose your sections")),
                ),
            )
                .into_response();
        }
    };
    // Unchecked boxes are not sent at all, so "no sections" looks like an empty form: the
    // page's own form says it is one (`choice`), and a body without it changes nothing
    // rather than unsubscribing anyone.
    if !fields
        .iter()
        .any(|(k, _)| k == "choice" || k == "sections" || k == "sections[]")
    {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            message(
                &st,
                "Your sections were not changed",
                &["Nothing in what was sent chose sections. Use the form on the page."],
                Some((&format!("/preferences/{token}"), "Choose your sections")),
            ),
        )
            .into_response();
    }
    let slugs: Vec<String> = fields
        .into_iter()
        .filter(|(k, _)| k == "sections" || k == "sections[]")
        .map(|(_, v)| v)
        .collect();
    match st.subs.save_preferences(&sub, &slugs).await {
        Ok(true) => message(
            &st,
            "Your sections are saved",
            &["The next newsletter will follow your new choice."],
            Some((&format!("/preferences/{token}"), "Change them again")),
        )
        .into_response(),
        Ok(false) => message(
            &st,
            "You are unsubscribed",
            &["You chose no section, so you will receive no more newsletters from us."],
            Some(("/subscribe", "Sign up again")),
        )
        .into_response(),
        Err(SignupError::NotActive) => not_subscribed(&st),
        Err(e) if e.is_user_error() => (
            StatusCode::UNPROCESSABLE_ENTITY,
            message(&st, "Those sections do not exist", &[&e.to_string()], None),
        )
            .into_response(),
        Err(e) => internal_error(&st, e),
    }
}

pub async fn unsubscribe_page(State(st): State<AppState>, Path(token): Path<String>) -> Response {
    match st
        .subs
        .resolve_link(TokenPurpose::Unsubscribe, &token)
        .await
    {
        Ok(Some(sub)) => UnsubscribePage {
            site_name: st.config.site.name.clone(),
            lang: st.config.site.language.to_string(),
            site_url: st.config.site.url.clone(),
            email: sub.email,
        }
        .into_response(),
        Ok(None) => bad_link(&st),
        Err(e) => internal_error(&st, e),
    }
}

/// Both the page's button and RFC 8058 one-click (`List-Unsubscribe=One-Click`, urlencoded
/// or multipart) land here. The token is the authority, so the body's encoding does not
/// matter; the answer is always 200 with a page, never a redirect.
pub async fn unsubscribe(
    State(st): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = form_only(&st, &headers, body).await {
        return refused;
    }
    match st.subs.resolve_link(TokenPurpose::Unsubscribe, &token).await {
        Ok(Some(sub)) => match st.subs.unsubscribe(&sub, "link").await {
            Ok(()) => message(
                &st,
                "You are unsubscribed",
                &["You will receive no more newsletters from us. Changed your mind? You can sign up again at any time."],
                Some(("/subscribe", "Sign up again")),
            )
            .into_response(),
            Err(e) => internal_error(&st, e),
        },
        Ok(None) => bad_link(&st),
        Err(e) => internal_error(&st, e),
    }
}

/// The buttons' POSTs (confirm, unsubscribe): their token is the authority and their body
/// says nothing, but a body that is not a form at all (JSON, XML…) is not a button press
/// herald understood: 415, and nothing changes.
async fn form_only(st: &AppState, headers: &HeaderMap, body: Bytes) -> Result<(), Response> {
    match super::form_fields(headers, body).await {
        Ok(_) => Ok(()),
        Err(why) => Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message(st, "Nothing was changed", &[&format!("{why}.")], None),
        )
            .into_response()),
    }
}

/// 413 for a body over the limit, as a page like the others.
pub(super) fn too_large(st: &AppState) -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        message(
            st,
            "Request too large",
            &["What was sent is larger than this form ever needs (64 KiB)."],
            Some(("/subscribe", "Join the mailing list")),
        ),
    )
        .into_response()
}

pub async fn not_found(State(st): State<AppState>) -> Response {
    (
        StatusCode::NOT_FOUND,
        message(
            &st,
            "Page not found",
            &["There is nothing at this address."],
            Some(("/subscribe", "Join the mailing list")),
        ),
    )
        .into_response()
}
