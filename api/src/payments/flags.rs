//! Review flags on authorized payments (`docs/payments.md`). A flag never declines or voids a payment:
//! it marks one for the retailer and the card's issuer to review.
//!
//! Stored as a comma-separated list in `payment.flag`, in the order raised, each flag at most once.

use sea_orm::sea_query::{Expr, ExprTrait};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentFlag {
    /// The issuer key that signed the number was revoked after the payment (a compromise).
    IssuerKeyRevoked,
    /// The card's sequence jumped past the gap window: numbers generated and never submitted, or a
    /// cloned card spending ahead of the real one.
    SequenceGap,
    /// The card paid at a terminal of another location shortly before: two cards with one identity,
    /// or a relay.
    DistantTerminals,
}

const ALL_FLAGS: [PaymentFlag; 3] = [
    PaymentFlag::IssuerKeyRevoked,
    PaymentFlag::SequenceGap,
    PaymentFlag::DistantTerminals,
];

impl PaymentFlag {
    pub fn code(self) -> &'static str {
        match self {
            Self::IssuerKeyRevoked => "ISSUER_KEY_REVOKED",
            Self::SequenceGap => "SEQUENCE_GAP",
            Self::DistantTerminals => "DISTANT_TERMINALS",
        }
    }

    fn from_code(code: &str) -> Option<Self> {
        ALL_FLAGS.into_iter().find(|flag| flag.code() == code)
    }

    /// SQL that adds this flag to a payment's stored list (unless already there).
    pub fn appended_to_column(self, column: impl sea_orm::sea_query::IntoColumnRef + Copy) -> Expr {
        Expr::case(Expr::col(column).is_null(), self.code())
            .case(
                Expr::col(column).like(format!("%{}%", self.code())),
                Expr::col(column),
            )
            // `||` concatenates in both PostgreSQL and SQLite.
            .finally(Expr::cust_with_exprs(
                "$1 || $2",
                [Expr::col(column), Expr::val(format!(",{}", self.code()))],
            ))
            .into()
    }
}

/// The flags in a stored list; unknown codes (from a newer hub) are skipped.
pub fn parse(stored: Option<&str>) -> Vec<PaymentFlag> {
    stored
        .unwrap_or_default()
        .split(',')
        .filter_map(PaymentFlag::from_code)
        .collect()
}

/// The stored form of `flags`; None when there are none.
pub fn store(flags: &[PaymentFlag]) -> Option<String> {
    (!flags.is_empty()).then(|| {
        flags
            .iter()
            .map(|flag| flag.code())
            .collect::<Vec<_>>()
            .join(",")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_lists_round_trip() {
        let flags = [PaymentFlag::SequenceGap, PaymentFlag::DistantTerminals];
        let stored = store(&flags);
        assert_eq!(stored.as_deref(), Some("SEQUENCE_GAP,DISTANT_TERMINALS"));
        assert_eq!(parse(stored.as_deref()), flags);
        assert_eq!(store(&[]), None);
        assert!(parse(None).is_empty());
        assert_eq!(
            parse(Some("FROM_THE_FUTURE,ISSUER_KEY_REVOKED")),
            [PaymentFlag::IssuerKeyRevoked]
        );
    }
}
