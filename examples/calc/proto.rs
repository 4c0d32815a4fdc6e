//! The calculator's request language: parse, evaluate and format, on bytes.
//!
//! This file depends on nothing but `core`/`std` (no evmux), allocates
//! nothing and never panics, whatever the input, so a fuzz target can
//! include it with `#[path = ".../examples/calc/proto.rs"] mod proto;` and
//! feed it arbitrary bytes.
//!
//! # Grammar
//!
//! ASCII white space (space, tab, CR, LF, form feed) around a request is
//! ignored; a request that is empty after that gets no reply at all.
//!
//! ```text
//! request = number ws* op ws* number
//! number  = ["-"] digit+         the sign sticks to its digits: "- 3" is malformed
//! op      = "+" | "-" | "*" | "/" | "%"
//! ws      = ASCII white space
//! ```
//!
//! Operands are signed 64-bit decimal integers. Decisions the spec left
//! open:
//!
//! - An explicit plus sign is not a sign: `+5+3` is malformed (only `-`
//!   may start a number).
//! - A literal outside `i64` (`9223372036854775808+0`) is an overflow, not
//!   malformed; `-9223372036854775808` is in range.
//! - When several errors apply, the first in this order wins: malformed
//!   request, operand overflow, division by zero, result overflow. So
//!   `1+x` is malformed even though `x` is no number at all, and
//!   `99999999999999999999/0` is an overflow.
//!
//! Division and remainder truncate toward zero (`-7/2` is `-3`, `-7%2` is
//! `-1`). `i64::MIN / -1` and `i64::MIN % -1` are overflows.

/// An arithmetic operator.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`, truncating toward zero.
    Div,
    /// `%`, with the sign of the dividend.
    Rem,
}

/// Why a request has no numeric answer.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CalcError {
    /// `/` or `%` by zero.
    DivisionByZero,
    /// An operand or the result is outside `i64`.
    Overflow,
    /// Not `<int> <op> <int>`.
    Malformed,
}

impl CalcError {
    /// The reply sent for this error (without the delimiter).
    pub fn message(self) -> &'static [u8] {
        match self {
            CalcError::DivisionByZero => b"ERR division by zero",
            CalcError::Overflow => b"ERR overflow",
            CalcError::Malformed => b"ERR malformed request",
        }
    }
}

/// Room for any number reply: `-9223372036854775808` is 20 bytes.
pub type NumberBuf = [u8; 20];

/// The reply to one request (without the delimiter), or `None` for a
/// request that is empty once white space is trimmed. A number is written
/// into `buf`; an error reply is a static string.
pub fn answer<'a>(request: &[u8], buf: &'a mut NumberBuf) -> Option<&'a [u8]> {
    Some(match evaluate(request)? {
        Ok(value) => format_i64(value, buf),
        Err(err) => err.message(),
    })
}

/// Evaluates one request: `None` if it is empty once white space is
/// trimmed, else the result or the error.
pub fn evaluate(request: &[u8]) -> Option<Result<i64, CalcError>> {
    let request = trim(request);
    if request.is_empty() {
        return None;
    }
    Some(parse(request).and_then(|(lhs, op, rhs)| {
        let lhs = lhs.ok_or(CalcError::Overflow)?;
        let rhs = rhs.ok_or(CalcError::Overflow)?;
        apply(lhs, op, rhs)
    }))
}

/// Applies `op` with checked arithmetic.
pub fn apply(lhs: i64, op: Op, rhs: i64) -> Result<i64, CalcError> {
    let result = match op {
        Op::Add => lhs.checked_add(rhs),
        Op::Sub => lhs.checked_sub(rhs),
        Op::Mul => lhs.checked_mul(rhs),
        Op::Div | Op::Rem if rhs == 0 => return Err(CalcError::DivisionByZero),
        // Rust's `/` and `%` truncate toward zero; the checked forms fail
        // only for i64::MIN by -1 here.
        Op::Div => lhs.checked_div(rhs),
        Op::Rem => lhs.checked_rem(rhs),
    };
    result.ok_or(CalcError::Overflow)
}

/// Writes `value` in decimal at the end of `buf` and returns those bytes.
pub fn format_i64(value: i64, buf: &mut NumberBuf) -> &[u8] {
    let mut rest = value.unsigned_abs();
    let mut at = buf.len();
    // At most 19 digits plus a sign: `at` never goes below 0.
    loop {
        at -= 1;
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if value < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

/// Parses a trimmed, non-empty request. An operand is `None` when it is a
/// well-formed literal outside `i64`.
fn parse(request: &[u8]) -> Result<(Option<i64>, Op, Option<i64>), CalcError> {
    let mut cursor = Cursor {
        bytes: request,
        pos: 0,
    };
    let lhs = cursor.number()?;
    cursor.skip_space();
    let op = cursor.op()?;
    cursor.skip_space();
    let rhs = cursor.number()?;
    if cursor.pos != request.len() {
        return Err(CalcError::Malformed);
    }
    Ok((lhs, op, rhs))
}

/// `bytes` without ASCII white space at either end.
fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace());
    match (start, end) {
        (Some(start), Some(end)) => &bytes[start..=end],
        _ => &[],
    }
}

/// A read position in a request.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    /// An optional `-` and one or more digits. `Ok(None)`: out of range.
    fn number(&mut self) -> Result<Option<i64>, CalcError> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let digits_start = self.pos;
        // Accumulate below zero, so i64::MIN (one further than i64::MAX)
        // parses; keep consuming digits after an overflow.
        let mut below_zero = Some(0i64);
        while let Some(digit @ b'0'..=b'9') = self.peek() {
            below_zero = below_zero
                .and_then(|n| n.checked_mul(10))
                .and_then(|n| n.checked_sub(i64::from(digit - b'0')));
            self.pos += 1;
        }
        if self.pos == digits_start {
            return Err(CalcError::Malformed);
        }
        Ok(if negative {
            below_zero
        } else {
            below_zero.and_then(i64::checked_neg)
        })
    }

    fn op(&mut self) -> Result<Op, CalcError> {
        let op = match self.peek() {
            Some(b'+') => Op::Add,
            Some(b'-') => Op::Sub,
            Some(b'*') => Op::Mul,
            Some(b'/') => Op::Div,
            Some(b'%') => Op::Rem,
            _ => return Err(CalcError::Malformed),
        };
        self.pos += 1;
        Ok(op)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const DIV0: &[u8] = b"ERR division by zero";
    const OVERFLOW: &[u8] = b"ERR overflow";
    const MALFORMED: &[u8] = b"ERR malformed request";

    #[track_caller]
    fn check(request: &[u8], want: &[u8]) {
        let mut buf = [0; 20];
        let got = answer(request, &mut buf);
        assert_eq!(
            got.map(|r| r.escape_ascii().to_string()),
            Some(want.escape_ascii().to_string()),
            "request {:?}",
            request.escape_ascii().to_string()
        );
    }

    #[test]
    fn the_four_operations_and_remainder() {
        check(b"100+98", b"198");
        check(b"14+23", b"37");
        check(b"6*7", b"42");
        check(b"7-10", b"-3");
        check(b"9/3", b"3");
        check(b"10%4", b"2");
        check(b"0*-5", b"0");
    }

    #[test]
    fn division_and_remainder_truncate_toward_zero() {
        check(b"-7/2", b"-3");
        check(b"7/-2", b"-3");
        check(b"-7%2", b"-1");
        check(b"7%-2", b"1");
        check(b"-7%-2", b"-1");
    }

    #[test]
    fn minus_signs() {
        check(b"5*-3", b"-15");
        check(b"5--3", b"8");
        check(b"5 - -3", b"8");
        check(b"-5-3", b"-8");
        check(b"-5--5", b"0");
        // The sign sticks to its digits.
        check(b"5 - - 3", MALFORMED);
        check(b"- 5-3", MALFORMED);
        check(b"5---3", MALFORMED);
        check(b"--5+1", MALFORMED);
    }

    #[test]
    fn an_explicit_plus_sign_is_malformed() {
        check(b"+5+3", MALFORMED);
        check(b"5++3", MALFORMED);
        check(b"5-+3", MALFORMED);
    }

    #[test]
    fn white_space_between_and_around_tokens() {
        check(b"1 + 2", b"3");
        check(b"  1+2  ", b"3");
        check(b"\t1\t*\t2\t", b"2");
        check(b"\r\n1+2\r\n", b"3");
        check(b"1\r\n+\n2", b"3");
        check(b"12 34+1", MALFORMED);
    }

    #[test]
    fn empty_requests_get_no_reply() {
        let mut buf = [0; 20];
        for request in [&b""[..], b" ", b"\r", b"\r\n", b" \t\n\r\x0c "] {
            assert_eq!(answer(request, &mut buf), None, "{request:?}");
        }
    }

    #[test]
    fn malformed_requests() {
        for request in [
            &b"1+"[..],
            b"+",
            b"-",
            b"abc",
            b"1+2+3",
            b"1+2 3",
            b"1 2",
            b"1",
            b"-1",
            b"1+a",
            b"a+1",
            b"1^2",
            b"0x10+1",
            b"1.5+1",
            b"1+2=",
            b"\xff+1",
            b"1+\xc3\xa9",
            b"\0",
            b"1\x0b+2", // vertical tab is not ASCII white space in Rust
        ] {
            check(request, MALFORMED);
        }
    }

    #[test]
    fn division_by_zero() {
        check(b"1/0", DIV0);
        check(b"1%0", DIV0);
        check(b"0/0", DIV0);
        check(b"-5 % -0", DIV0);
        check(b"0/1", b"0");
    }

    #[test]
    fn results_outside_i64_overflow() {
        check(b"-9223372036854775808/-1", OVERFLOW);
        check(b"-9223372036854775808%-1", OVERFLOW);
        check(b"9223372036854775807+1", OVERFLOW);
        check(b"-9223372036854775808-1", OVERFLOW);
        check(b"4294967296*4294967296", OVERFLOW);
        check(b"-9223372036854775808*-1", OVERFLOW);
    }

    #[test]
    fn operands_outside_i64_overflow() {
        check(b"9223372036854775808+0", OVERFLOW);
        check(b"0+-9223372036854775809", OVERFLOW);
        check(b"99999999999999999999999999999999999999*0", OVERFLOW);
        // Operand overflow comes before division by zero...
        check(b"99999999999999999999/0", OVERFLOW);
        // ...and after a malformed request.
        check(b"9223372036854775808+", MALFORMED);
        check(b"9223372036854775808+x", MALFORMED);
        check(b"99999999999999999999999+", MALFORMED);
        check(b"1+99999999999999999999999 1", MALFORMED);
    }

    #[test]
    fn the_ends_of_i64_are_in_range() {
        check(b"-9223372036854775808+0", b"-9223372036854775808");
        check(b"9223372036854775807-0", b"9223372036854775807");
        check(b"-9223372036854775808/1", b"-9223372036854775808");
        check(b"-9223372036854775808%1", b"0");
        check(b"0009+0001", b"10");
        check(b"-0+0", b"0");
    }

    #[test]
    fn format_i64_writes_every_digit() {
        let mut buf = [0; 20];
        for value in [0, 7, -7, 10, -10, i64::MAX, i64::MIN, 1_000_000] {
            assert_eq!(format_i64(value, &mut buf), value.to_string().as_bytes());
        }
    }

    /// The same arithmetic in i128, where nothing overflows.
    fn reference(lhs: i64, op: Op, rhs: i64) -> Result<i64, CalcError> {
        let (a, b) = (i128::from(lhs), i128::from(rhs));
        let wide = match op {
            Op::Add => a + b,
            Op::Sub => a - b,
            Op::Mul => a * b,
            Op::Div | Op::Rem if b == 0 => return Err(CalcError::DivisionByZero),
            Op::Div => a / b,
            Op::Rem => a % b,
        };
        // i128 `%` gives 0 for i64::MIN % -1; the spec calls it overflow.
        if op == Op::Rem && lhs == i64::MIN && rhs == -1 {
            return Err(CalcError::Overflow);
        }
        i64::try_from(wide).map_err(|_| CalcError::Overflow)
    }

    fn op_char(op: Op) -> char {
        match op {
            Op::Add => '+',
            Op::Sub => '-',
            Op::Mul => '*',
            Op::Div => '/',
            Op::Rem => '%',
        }
    }

    fn any_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Add),
            Just(Op::Sub),
            Just(Op::Mul),
            Just(Op::Div),
            Just(Op::Rem)
        ]
    }

    fn operand() -> impl Strategy<Value = i64> {
        prop_oneof![
            any::<i64>(),
            -3i64..=3,
            Just(i64::MIN),
            Just(i64::MAX),
            Just(-1i64)
        ]
    }

    proptest! {
        #[test]
        fn agrees_with_i128_arithmetic(
            lhs in operand(),
            op in any_op(),
            rhs in operand(),
            spaces in proptest::collection::vec(" |\t|\r\n| {0,3}", 4),
        ) {
            let request = format!(
                "{}{lhs}{}{}{}{rhs}{}",
                spaces[0], spaces[1], op_char(op), spaces[2], spaces[3]
            );
            prop_assert_eq!(evaluate(request.as_bytes()), Some(reference(lhs, op, rhs)));
        }

        #[test]
        fn never_panics_and_replies_to_anything_not_blank(
            request in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut buf = [0; 20];
            let blank = request.iter().all(u8::is_ascii_whitespace);
            prop_assert_eq!(answer(&request, &mut buf).is_none(), blank);
        }

        #[test]
        fn never_panics_on_calculator_like_bytes(
            request in proptest::collection::vec(
                prop_oneof![Just(b'-'), Just(b'+'), Just(b'/'), Just(b'%'), Just(b' '), b'0'..=b'9'],
                0..60,
            ),
        ) {
            let mut buf = [0; 20];
            let _ = answer(&request, &mut buf);
        }
    }
}
