//! One module per resource; the route table itself is in `startup.rs`.
//! List pages ([`Page`], [`PageOf`]) are shared here.

pub mod admin;
pub mod designs;
pub mod health;
pub mod templates;

use actix_web::{HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use prewarm_store::db::page::PageAt;
use serde::Deserialize;
use shared_domain::error::ErrorCode;

use crate::error::ApiError;

/// `?limit=&cursor=` on list endpoints (`offset` still works but is deprecated).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    /// Deprecated: offsets skip or repeat rows while rows are inserted.
    pub offset: Option<i64>,
}

impl Page {
    pub const MAX_LIMIT: i64 = 100;

    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(50).clamp(1, Self::MAX_LIMIT)
    }

    /// Where the page starts (and the page's size checked: 1 to 100).
    pub fn position(&self) -> Result<PageAt, ApiError> {
        if self
            .limit
            .is_some_and(|l| !(1..=Self::MAX_LIMIT).contains(&l))
        {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("`limit` must be 1 to {}", Self::MAX_LIMIT),
            ));
        }
        if self.offset.is_some_and(|o| o < 0) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "`offset` must be >= 0",
            ));
        }
        match (&self.cursor, self.offset) {
            (Some(_), Some(_)) => Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "pass either `cursor` or `offset`, not both",
            )),
            (Some(cursor), None) => PageAt::from_cursor(cursor).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    "`cursor` is not one this API returned",
                )
            }),
            (None, offset) => Ok(PageAt::Offset(offset.unwrap_or(0).max(0))),
        }
    }

    /// A 200 with the page, and a `Link: <...>; rel="next"` header when
    /// there is a next page.
    pub fn respond(
        &self,
        req: &HttpRequest,
        next_cursor: Option<&str>,
        body: &impl serde::Serialize,
    ) -> HttpResponse {
        let mut response = HttpResponse::Ok();
        if let Some(cursor) = next_cursor {
            let link = format!(
                "<{}?limit={}&cursor={cursor}>; rel=\"next\"",
                req.path(),
                self.limit()
            );
            response.insert_header((actix_web::http::header::LINK, link));
        }
        response.json(body)
    }
}

/// One page cut from `limit + 1` rows: the extra row says a next page exists.
pub struct PageOf<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> PageOf<T> {
    pub fn cut(
        mut rows: Vec<T>,
        limit: i64,
        key: impl Fn(&T) -> (DateTime<Utc>, uuid::Uuid),
    ) -> Self {
        let limit = usize::try_from(limit).unwrap_or(0);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if more {
            rows.last().map(|last| {
                let (at, id) = key(last);
                PageAt::cursor_after(at, id)
            })
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }
}
