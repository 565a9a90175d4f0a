//! ISO 7816-4 APDUs of the card application: short command APDUs, status words, instruction codes.

use crate::{ProtocolError, Result};

/// Application identifier: proprietary (F0), "ICHPAY", version 1.
pub const AID: &[u8] = &[0xF0, b'I', b'C', b'H', b'P', b'A', b'Y', 0x01];

/// Interindustry class; bit 0x10 marks command chaining (more blocks follow).
pub const CLA_ISO: u8 = 0x00;
/// Proprietary class of this application's commands.
pub const CLA_PROPRIETARY: u8 = 0x80;
pub const CLA_CHAINING: u8 = 0x10;

pub const INS_SELECT: u8 = 0xA4;
pub const INS_GET_RESPONSE: u8 = 0xC0;
pub const INS_CARD_INFO: u8 = 0x10;
pub const INS_GENERATE_PAYMENT: u8 = 0x20;
pub const INS_LOAD_NUMBERS: u8 = 0x30;

/// Status words.
pub mod sw {
    pub const OK: u16 = 0x9000;
    /// `61xx`: `xx` more bytes are waiting for GET RESPONSE.
    pub const MORE_DATA: u16 = 0x6100;
    pub const WRONG_LENGTH: u16 = 0x6700;
    /// A batch not signed by this card's issuer, or not for this card, or not newer than the last one.
    pub const SECURITY_NOT_SATISFIED: u16 = 0x6982;
    /// Too soon after the last GENERATE PAYMENT (rate limit).
    pub const CONDITIONS_NOT_SATISFIED: u16 = 0x6985;
    /// No application selected, or GET RESPONSE with nothing pending.
    pub const COMMAND_NOT_ALLOWED: u16 = 0x6986;
    pub const WRONG_DATA: u16 = 0x6A80;
    pub const APPLICATION_NOT_FOUND: u16 = 0x6A82;
    /// No unused number left.
    pub const NO_NUMBERS_LEFT: u16 = 0x6A83;
    pub const WRONG_P1_P2: u16 = 0x6A86;
    pub const INS_NOT_SUPPORTED: u16 = 0x6D00;
    pub const CLA_NOT_SUPPORTED: u16 = 0x6E00;
}

/// A parsed short command APDU (cases 1 to 4; Lc and Le at most one byte each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    pub data: Vec<u8>,
    /// Expected response length; `Some(256)` for Le = 00.
    pub le: Option<usize>,
}

impl Command {
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8, data: &[u8], le: Option<usize>) -> Self {
        Self {
            cla,
            ins,
            p1,
            p2,
            data: data.to_vec(),
            le,
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let malformed = ProtocolError::Malformed("APDU");
        let (header, body) = bytes.split_at_checked(4).ok_or(malformed.clone())?;
        let (cla, ins, p1, p2) = (header[0], header[1], header[2], header[3]);
        let le_of = |b: u8| if b == 0 { 256 } else { usize::from(b) };
        let (data, le) = match body {
            [] => (Vec::new(), None),
            [le] => (Vec::new(), Some(le_of(*le))),
            [lc, rest @ ..] => {
                let lc = usize::from(*lc);
                if lc == 0 {
                    return Err(malformed);
                }
                match rest.len().checked_sub(lc) {
                    Some(0) => (rest.to_vec(), None),
                    Some(1) => (rest[..lc].to_vec(), Some(le_of(rest[lc]))),
                    _ => return Err(malformed),
                }
            }
        };
        Ok(Self {
            cla,
            ins,
            p1,
            p2,
            data,
            le,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.cla, self.ins, self.p1, self.p2];
        if !self.data.is_empty() {
            out.push(self.data.len() as u8);
            out.extend_from_slice(&self.data);
        }
        if let Some(le) = self.le {
            out.push(if le >= 256 { 0 } else { le as u8 });
        }
        out
    }

    pub fn select() -> Self {
        Self::new(CLA_ISO, INS_SELECT, 0x04, 0x00, AID, Some(256))
    }
}

/// Splits `data` into chained command APDUs of at most 255 data bytes (all but the last flagged).
pub fn chain(cla: u8, ins: u8, data: &[u8]) -> Vec<Command> {
    let chunks: Vec<&[u8]> = data.chunks(255).collect();
    let last = chunks.len().saturating_sub(1);
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let cla = if i < last { cla | CLA_CHAINING } else { cla };
            Command::new(
                cla,
                ins,
                0,
                0,
                chunk,
                if i == last { Some(256) } else { None },
            )
        })
        .collect()
}

/// A response APDU: data and status word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub data: Vec<u8>,
    pub sw: u16,
}

impl Response {
    pub fn status(sw: u16) -> Self {
        Self {
            data: Vec::new(),
            sw,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.data.clone();
        out.extend_from_slice(&self.sw.to_be_bytes());
        out
    }

    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let split = bytes
            .len()
            .checked_sub(2)
            .ok_or(ProtocolError::Malformed("response APDU"))?;
        let (data, sw) = bytes.split_at(split);
        Ok(Self {
            data: data.to_vec(),
            sw: u16::from_be_bytes([sw[0], sw[1]]),
        })
    }

    /// Whether more data waits for GET RESPONSE, and how much.
    pub fn pending(&self) -> Option<usize> {
        (self.sw & 0xFF00 == sw::MORE_DATA).then(|| {
            if self.sw & 0xFF == 0 {
                256
            } else {
                usize::from(self.sw & 0xFF)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apdu_cases_round_trip() {
        for command in [
            Command::new(0x80, 0x10, 0, 0, &[], None),
            Command::new(0x80, 0x10, 0, 0, &[], Some(256)),
            Command::new(0x80, 0x20, 0, 0, &[1, 2, 3], None),
            Command::select(),
        ] {
            assert_eq!(Command::parse(&command.encode()).as_ref(), Ok(&command));
        }
        assert!(Command::parse(&[0x80, 0x20, 0]).is_err());
        assert!(
            Command::parse(&[0x80, 0x20, 0, 0, 3, 1, 2]).is_err(),
            "Lc longer than the data"
        );
        assert!(
            Command::parse(&[0x80, 0x20, 0, 0, 1, 1, 2, 3]).is_err(),
            "trailing bytes"
        );
    }

    #[test]
    fn chaining_splits_at_255() {
        let data = vec![7u8; 600];
        let chained = chain(CLA_PROPRIETARY, INS_LOAD_NUMBERS, &data);
        assert_eq!(chained.len(), 3);
        assert_eq!(chained[0].cla, CLA_PROPRIETARY | CLA_CHAINING);
        assert_eq!(chained[2].cla, CLA_PROPRIETARY);
        assert_eq!(chained.iter().map(|c| c.data.len()).sum::<usize>(), 600);
    }
}
