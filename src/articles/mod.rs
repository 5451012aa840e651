//! Sections (and, with the digests work, articles). A section is what readers choose:
//! "Weapons of Mass Destruction (WMD)", slug `wmd`.

use crate::domain::{SectionSlug, has_control_chars};
use crate::store::{Section, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum SectionError {
    #[error(transparent)]
    Slug(#[from] crate::domain::SlugError),
    #[error("the section name must be 1 to 200 characters on one line")]
    BadName,
    #[error("the description must be at most 2000 characters without control characters")]
    BadDescription,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SectionError {
    pub fn is_user_error(&self) -> bool {
        !matches!(
            self,
            SectionError::Store(
                StoreError::Database(_) | StoreError::Migrate(_) | StoreError::Open(_)
            )
        )
    }
}

pub async fn add_section(
    store: &dyn Store,
    slug: &str,
    name: &str,
    description: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Section, SectionError> {
    let slug = SectionSlug::parse(slug)?;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || has_control_chars(name) {
        return Err(SectionError::BadName);
    }
    let description = description.trim();
    if description.chars().count() > 2000
        || description.chars().any(|c| c.is_control() && c != '\n')
    {
        return Err(SectionError::BadDescription);
    }
    Ok(store
        .add_section(slug.as_str(), name, description, now)
        .await?)
}
