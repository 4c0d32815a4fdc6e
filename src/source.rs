//! The token layout (a leaf): every kind of thing the reactor registers with its
//! poller is one [`Source`], and this file is the only place that turns a
//! source into a [`Token`] and back.
//!
//! ```text
//!  usize bits:  | kind (2) | generation (half - 2) | slot key (half) |
//!  kind:        00 connection   01 listener (no generation; key = index)
//!               10 user fd      11 the waker (Token(usize::MAX - 1))
//! ```
//!
//! A connection's or user fd's generation is its serial number, so an
//! event for a closed one whose slot or fd was reused decodes to an id
//! that no longer matches: stale events are recognised, never delivered.

use crate::ids::{ConnId, SourceId};
use crate::Token;

const KIND_SHIFT: u32 = usize::BITS - 2;
const KEY_BITS: u32 = usize::BITS / 2;
const KEY_MASK: usize = (1 << KEY_BITS) - 1;
const GEN_BITS: u32 = KIND_SHIFT - KEY_BITS;

/// The largest slot key a token can carry.
pub(crate) const MAX_KEY: usize = KEY_MASK;
/// Generations (serial numbers) wrap at this mask.
pub(crate) const GEN_MASK: u32 = ((1u64 << GEN_BITS) - 1) as u32;

const CONN: usize = 0;
const LISTENER: usize = 1;
const USER: usize = 2;
const WAKER: Token = Token(usize::MAX - 1);

/// What a token stands for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The reactor's waker (stop requests, and work from other threads).
    Waker,
    /// A listener, by index.
    Listener(usize),
    /// A connection.
    Conn(ConnId),
    /// An fd the handler watches.
    User(SourceId),
}

impl Source {
    /// The token to register this source with.
    pub(crate) fn to_token(self) -> Token {
        match self {
            Source::Waker => WAKER,
            Source::Listener(i) => pack(LISTENER, 0, i),
            Source::Conn(id) => pack(CONN, id.gen, id.key as usize),
            Source::User(id) => pack(USER, id.gen, id.key as usize),
        }
    }

    /// What `token` stands for, if it is one of ours.
    pub(crate) fn from_token(token: Token) -> Option<Source> {
        if token == WAKER {
            return Some(Source::Waker);
        }
        let key = token.0 & KEY_MASK;
        let gen = ((token.0 >> KEY_BITS) as u32) & GEN_MASK;
        match token.0 >> KIND_SHIFT {
            CONN => Some(Source::Conn(ConnId {
                key: key as u32,
                gen,
            })),
            LISTENER => Some(Source::Listener(key)),
            USER => Some(Source::User(SourceId {
                key: key as u32,
                gen,
            })),
            _ => None,
        }
    }
}

fn pack(kind: usize, gen: u32, key: usize) -> Token {
    debug_assert!(key <= KEY_MASK);
    let gen = (gen & GEN_MASK) as usize;
    Token(kind << KIND_SHIFT | gen << KEY_BITS | key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_round_trips_through_its_token() {
        let conn = ConnId {
            key: 7,
            gen: GEN_MASK,
        };
        let user = SourceId {
            key: MAX_KEY as u32,
            gen: 1,
        };
        for source in [
            Source::Waker,
            Source::Listener(3),
            Source::Conn(conn),
            Source::User(user),
        ] {
            assert_eq!(Source::from_token(source.to_token()), Some(source));
        }
        assert_ne!(Source::Conn(conn).to_token(), Token::RESERVED);
        assert_eq!(Source::from_token(Token::RESERVED), None);
    }

    #[test]
    fn kinds_never_share_a_token() {
        let conn = Source::Conn(ConnId { key: 1, gen: 0 }).to_token();
        let user = Source::User(SourceId { key: 1, gen: 0 }).to_token();
        let listener = Source::Listener(1).to_token();
        assert!(conn != user && user != listener && conn != listener);
    }
}
