//! Fuzzes the calculator's request parser (examples/calc/proto.rs) against
//! an independent reference written here: same answer for every input,
//! no panic, a reply for anything that is not blank, and a number reply
//! that reads back as the value.
#![no_main]

#[path = "../../examples/calc/proto.rs"]
#[allow(dead_code)]
mod proto;

use libfuzzer_sys::fuzz_target;
use proto::CalcError;

fuzz_target!(|data: &[u8]| {
    let got = proto::evaluate(data);
    assert_eq!(
        got,
        reference(data),
        "request {:?}",
        data.escape_ascii().to_string()
    );
    let mut buf = [0; 20];
    let reply = proto::answer(data, &mut buf);
    assert_eq!(reply.is_none(), data.iter().all(u8::is_ascii_whitespace));
    if let (Some(Ok(value)), Some(reply)) = (got, reply) {
        let text = std::str::from_utf8(reply).expect("ASCII digits");
        assert_eq!(text.parse::<i64>(), Ok(value));
    }
});

/// The grammar of proto.rs's docs, done another way: slices and std's
/// integer parsing, arithmetic in i128.
fn reference(request: &[u8]) -> Option<Result<i64, CalcError>> {
    let request = request.trim_ascii();
    if request.is_empty() {
        return None;
    }
    Some(parse(request).and_then(|(lhs, op, rhs)| {
        let lhs = lhs.ok_or(CalcError::Overflow)?;
        let rhs = rhs.ok_or(CalcError::Overflow)?;
        compute(lhs, op, rhs)
    }))
}

type Parsed = (Option<i64>, u8, Option<i64>);

fn parse(request: &[u8]) -> Result<Parsed, CalcError> {
    let (lhs, rest) = number(request).ok_or(CalcError::Malformed)?;
    let (&op, rest) = rest
        .trim_ascii_start()
        .split_first()
        .ok_or(CalcError::Malformed)?;
    if !b"+-*/%".contains(&op) {
        return Err(CalcError::Malformed);
    }
    let (rhs, rest) = number(rest.trim_ascii_start()).ok_or(CalcError::Malformed)?;
    if !rest.is_empty() {
        return Err(CalcError::Malformed);
    }
    Ok((lhs, op, rhs))
}

/// `-?[0-9]+` at the front: its value (`None` outside i64) and the rest.
fn number(text: &[u8]) -> Option<(Option<i64>, &[u8])> {
    let sign = usize::from(text.first() == Some(&b'-'));
    let digits = text[sign..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 {
        return None;
    }
    let (literal, rest) = text.split_at(sign + digits);
    let literal = std::str::from_utf8(literal).expect("ASCII");
    Some((literal.parse::<i64>().ok(), rest))
}

fn compute(lhs: i64, op: u8, rhs: i64) -> Result<i64, CalcError> {
    let (a, b) = (i128::from(lhs), i128::from(rhs));
    if matches!(op, b'/' | b'%') && b == 0 {
        return Err(CalcError::DivisionByZero);
    }
    // i64::MIN % -1 is 0 in i128, but the i64 operation overflows.
    if op == b'%' && lhs == i64::MIN && rhs == -1 {
        return Err(CalcError::Overflow);
    }
    let wide = match op {
        b'+' => a + b,
        b'-' => a - b,
        b'*' => a * b,
        b'/' => a / b,
        _ => a % b,
    };
    i64::try_from(wide).map_err(|_| CalcError::Overflow)
}
