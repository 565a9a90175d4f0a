//! The shape of a state-machine step shared by work plans and deliveries: which states it leaves, the
//! state it reaches, which party takes it, and how a refused step is explained to a caller who sees the
//! record (one who does not gets NOT_FOUND before any of this).

use sea_orm::ActiveEnum;

use crate::{error::ApiError, policy::Party};

/// One step of a record's state machine.
#[derive(Debug, Clone, Copy)]
pub struct Step<S: 'static> {
    pub from: &'static [S],
    pub to: S,
    /// Who takes the step.
    pub by: Party,
    /// What the step does, for messages ("start the work").
    pub verb: &'static str,
    /// Said when another party tries it.
    pub only: &'static str,
    /// The event it records.
    pub event_type: &'static str,
}

impl<S: ActiveEnum<Value = String> + PartialEq + Copy> Step<S> {
    /// Why the step changed no row, given the record as read afterwards.
    pub fn refusal(
        &self,
        caller: Party,
        current: S,
        version: i32,
        expected_version: Option<i32>,
    ) -> ApiError {
        if caller != self.by {
            return ApiError::Forbidden(self.only);
        }
        if let Some(expected) = expected_version
            && expected != version
        {
            return ApiError::Conflict(format!(
                "the record is at version {version}, not {expected}; read it again"
            ));
        }
        if !self.from.contains(&current) {
            return ApiError::InvalidTransition {
                action: self.verb,
                reason: format!("it is {}", current.to_value()),
            };
        }
        // Every rule holds on the row read again: it changed between the update and the read.
        ApiError::Conflict("the record changed meanwhile; retry".into())
    }
}
