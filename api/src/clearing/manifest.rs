//! The canonical manifest of a clearing batch: the exact bytes a provider verifies and signs. The
//! layout is specified in `docs/clearing.md`; a provider rebuilds it with its own code, so nothing here
//! may depend on a locale, a map's order or a library's formatting defaults.

use chrono::{DateTime, SecondsFormat, Utc};
use entities::clearing_entry::EntryKind;
use sea_orm::ActiveEnum;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The manifest's first line: names the format and its version.
pub const HEADER: &str = "ich-clearing-manifest/1";

/// One capture or refund, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    pub id: Uuid,
    pub payment_id: Uuid,
    pub kind: EntryKind,
    pub amount_minor: i64,
}

/// What a batch's manifest states.
#[derive(Debug, Clone)]
pub struct ManifestInput {
    pub batch_id: Uuid,
    pub merchant: Uuid,
    pub provider: Uuid,
    pub currency: String,
    pub opened_at: DateTime<Utc>,
    pub closed_at: DateTime<Utc>,
    /// In any order: the manifest lists them by id.
    pub entries: Vec<ManifestEntry>,
}

/// A frozen manifest and what it totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub text: String,
    /// SHA-256 of `text`'s bytes, lowercase hex.
    pub sha256: String,
    pub entry_count: i64,
    pub captured_minor: i64,
    pub refunded_minor: i64,
}

impl Manifest {
    /// Builds the manifest; `None` when a total overflows 64 bits (no real batch does).
    pub fn build(mut input: ManifestInput) -> Option<Self> {
        input.entries.sort_by_key(|entry| entry.id);
        let (mut captured, mut refunded) = (0i64, 0i64);
        for entry in &input.entries {
            match entry.kind {
                EntryKind::Capture => captured = captured.checked_add(entry.amount_minor)?,
                EntryKind::Refund => refunded = refunded.checked_add(entry.amount_minor)?,
            }
        }
        let net = captured.checked_sub(refunded)?;
        // About 100 bytes an entry.
        let mut text = String::with_capacity(400 + 100 * input.entries.len());
        let mut line = |line: std::fmt::Arguments<'_>| {
            use std::fmt::Write;
            // Writing into a String cannot fail.
            let _ = text.write_fmt(line);
            text.push('\n');
        };
        line(format_args!("{HEADER}"));
        line(format_args!("batch {}", input.batch_id.hyphenated()));
        line(format_args!("merchant {}", input.merchant.hyphenated()));
        line(format_args!("provider {}", input.provider.hyphenated()));
        line(format_args!("currency {}", input.currency));
        line(format_args!("opened {}", timestamp(input.opened_at)));
        line(format_args!("closed {}", timestamp(input.closed_at)));
        line(format_args!("entries {}", input.entries.len()));
        for entry in &input.entries {
            line(format_args!(
                "entry {} {} {} {}",
                entry.id.hyphenated(),
                entry.payment_id.hyphenated(),
                entry.kind.to_value(),
                entry.amount_minor
            ));
        }
        line(format_args!("total {} captured {captured}", input.currency));
        line(format_args!("total {} refunded {refunded}", input.currency));
        line(format_args!("total {} net {net}", input.currency));
        let sha256 = digest(text.as_bytes());
        Some(Self {
            text,
            sha256,
            entry_count: input.entries.len() as i64,
            captured_minor: captured,
            refunded_minor: refunded,
        })
    }
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// RFC 3339 in UTC with exactly six fractional digits and `Z` (the precision the databases keep).
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u128, kind: EntryKind, amount_minor: i64) -> ManifestEntry {
        ManifestEntry {
            id: Uuid::from_u128(id),
            payment_id: Uuid::from_u128(0xaa),
            kind,
            amount_minor,
        }
    }

    #[test]
    fn lists_entries_by_id_with_totals_and_a_stable_digest() {
        let at = DateTime::parse_from_rfc3339("2026-12-03T10:00:00.5Z")
            .expect("time")
            .with_timezone(&Utc);
        let input = ManifestInput {
            batch_id: Uuid::from_u128(1),
            merchant: Uuid::from_u128(2),
            provider: Uuid::from_u128(3),
            currency: "EUR".into(),
            opened_at: at,
            closed_at: at + chrono::TimeDelta::seconds(60),
            entries: vec![
                entry(0x20, EntryKind::Refund, 300),
                entry(0x10, EntryKind::Capture, 1200),
            ],
        };
        let manifest = Manifest::build(input.clone()).expect("manifest");
        let expected = "ich-clearing-manifest/1\n\
            batch 00000000-0000-0000-0000-000000000001\n\
            merchant 00000000-0000-0000-0000-000000000002\n\
            provider 00000000-0000-0000-0000-000000000003\n\
            currency EUR\n\
            opened 2026-12-03T10:00:00.500000Z\n\
            closed 2026-12-03T10:01:00.500000Z\n\
            entries 2\n\
            entry 00000000-0000-0000-0000-000000000010 00000000-0000-0000-0000-0000000000aa CAPTURE 1200\n\
            entry 00000000-0000-0000-0000-000000000020 00000000-0000-0000-0000-0000000000aa REFUND 300\n\
            total EUR captured 1200\n\
            total EUR refunded 300\n\
            total EUR net 900\n";
        assert_eq!(manifest.text, expected);
        assert_eq!(manifest.sha256, digest(expected.as_bytes()));
        assert_eq!(
            (manifest.captured_minor, manifest.refunded_minor),
            (1200, 300)
        );
        // The order entries come in does not matter.
        let mut reversed = input;
        reversed.entries.reverse();
        assert_eq!(Manifest::build(reversed).expect("manifest"), manifest);
    }

    #[test]
    fn net_may_be_negative_and_overflow_is_refused() {
        let at = Utc::now();
        let input = |entries| ManifestInput {
            batch_id: Uuid::nil(),
            merchant: Uuid::nil(),
            provider: Uuid::nil(),
            currency: "EUR".into(),
            opened_at: at,
            closed_at: at,
            entries,
        };
        let refunds_only =
            Manifest::build(input(vec![entry(1, EntryKind::Refund, 5)])).expect("manifest");
        assert!(refunds_only.text.ends_with("total EUR net -5\n"));
        assert!(
            Manifest::build(input(vec![
                entry(1, EntryKind::Capture, i64::MAX),
                entry(2, EntryKind::Capture, 1),
            ]))
            .is_none()
        );
    }
}
