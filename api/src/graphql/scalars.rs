//! Custom scalars.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};

/// A signed 64-bit integer. Sent as a string (JavaScript numbers lose precision above 2^53); accepted as a
/// string or an integer. Money amounts are Int64 minor units, never floats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int64(pub i64);

#[Scalar(name = "Int64")]
impl ScalarType for Int64 {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => text
                .parse::<i64>()
                .map(Int64)
                .map_err(|_| InputValueError::custom("not a 64-bit integer")),
            Value::Number(number) => number
                .as_i64()
                .map(Int64)
                .ok_or_else(|| InputValueError::custom("not a 64-bit integer")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}
