//! Review flags on authorized payments (`docs/payments.md`). A flag never declines or voids a payment:
//! it marks one for the retailer and the card's issuer to review.
//!
//! Stored as a comma-separated list in `payment.flag`, in the order raised, each flag at most once.

use sea_orm::{
    ActiveEnum,
    sea_query::{Expr, ExprTrait},
};

pub use entities::payment::PaymentFlag;

/// The name a flag is stored and shown by.
fn name(flag: PaymentFlag) -> String {
    flag.to_value()
}

/// SQL that adds `flag` to a payment's stored list (unless already there).
pub fn appended_to_column(
    flag: PaymentFlag,
    column: impl sea_orm::sea_query::IntoColumnRef + Copy,
) -> Expr {
    let code = name(flag);
    Expr::case(Expr::col(column).is_null(), code.clone())
        .case(
            Expr::col(column).like(format!("%{code}%")),
            Expr::col(column),
        )
        // `||` concatenates in both PostgreSQL and SQLite.
        .finally(Expr::cust_with_exprs(
            "$1 || $2",
            [Expr::col(column), Expr::val(format!(",{code}"))],
        ))
        .into()
}

/// The flags in a stored list; unknown codes (from a newer hub) are skipped.
pub fn parse(stored: Option<&str>) -> Vec<PaymentFlag> {
    stored
        .unwrap_or_default()
        .split(',')
        .filter_map(|code| PaymentFlag::try_from_value(&code.to_owned()).ok())
        .collect()
}

/// The stored form of `flags`; None when there are none.
pub fn store(flags: &[PaymentFlag]) -> Option<String> {
    (!flags.is_empty()).then(|| {
        flags
            .iter()
            .map(|flag| name(*flag))
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
