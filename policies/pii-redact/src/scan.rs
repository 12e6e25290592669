//! Hand-written scanners for e-mail addresses, IBANs, card numbers and phone numbers.
//!
//! Each scanner looks for a match *starting* at a byte position and answers [`Scan::Match`] with
//! its end, or [`Scan::Skip`] with where to look next (past a long digit run, so that no part of a
//! longer number is mistaken for a shorter one). Matches start and end on ASCII bytes, so
//! replacing them keeps the text valid UTF-8. Every pass is linear in the length of the text.

/// What a scanner found at a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// A match from the position up to this end (exclusive).
    Match(usize),
    /// No match; resume at this position (greater than the current one).
    Skip(usize),
}

/// How many of each kind [`redact`] replaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub email: usize,
    pub phone: usize,
    pub card: usize,
    pub iban: usize,
}

impl Counts {
    pub fn total(&self) -> usize {
        self.email + self.phone + self.card + self.iban
    }

    pub fn add(&mut self, o: Counts) {
        self.email += o.email;
        self.phone += o.phone;
        self.card += o.card;
        self.iban += o.iban;
    }

    /// `email=1 card=2` (kinds with a zero count are left out).
    pub fn summary(&self) -> String {
        [
            ("email", self.email),
            ("phone", self.phone),
            ("card", self.card),
            ("iban", self.iban),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
    }
}

/// Replace every match of `scan` with `placeholder`; returns the new text and the count.
pub fn replace_all(
    text: &str,
    placeholder: &str,
    scan: fn(&[u8], usize) -> Scan,
) -> (String, usize) {
    let b = text.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut n = 0;
    let mut copied = 0; // b[..copied] is already in `out`
    let mut i = 0;
    while i < b.len() {
        match scan(b, i) {
            Scan::Match(end) if end > i && end <= b.len() => {
                out.extend_from_slice(b.get(copied..i).unwrap_or_default());
                out.extend_from_slice(placeholder.as_bytes());
                copied = end;
                i = end;
                n += 1;
            }
            Scan::Skip(next) if next > i => i = next,
            _ => i += 1,
        }
    }
    if n == 0 {
        return (text.to_owned(), 0);
    }
    out.extend_from_slice(b.get(copied..).unwrap_or_default());
    match String::from_utf8(out) {
        Ok(s) => (s, n),
        // Cannot happen (matches are ASCII-delimited); never return broken text.
        Err(_) => (text.to_owned(), 0),
    }
}

/// Redact all four kinds, in an order where the stricter patterns go first: e-mail addresses,
/// IBANs and card numbers before phone numbers, so that a card is not taken for a phone.
pub fn redact(text: &str) -> (String, Counts) {
    let (t, email) = replace_all(text, "[EMAIL]", email);
    let (t, iban) = replace_all(&t, "[IBAN]", iban);
    let (t, card) = replace_all(&t, "[CARD]", card);
    let (t, phone) = replace_all(&t, "[PHONE]", phone);
    (
        t,
        Counts {
            email,
            phone,
            card,
            iban,
        },
    )
}

fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

fn digit(c: u8) -> bool {
    c.is_ascii_digit()
}

/// Whether a number may start at `i`: at the start, after white space, after opening
/// punctuation, or after a non-ASCII character. Not after letters, digits, `.`, `-`, `/`, `+`,
/// `$`, `#` and the like, which make it part of something else (a version, an id, a price).
fn number_boundary(b: &[u8], i: usize) -> bool {
    match i.checked_sub(1).map(|p| at(b, p)) {
        None => true,
        Some(c) => c.is_ascii_whitespace() || b":;,\"'([{<>=*`".contains(&c) || c >= 0x80,
    }
}

/// Whether a match may end at `end` (not in the middle of a word or number).
fn end_boundary(b: &[u8], end: usize) -> bool {
    !at(b, end).is_ascii_alphanumeric()
}

// ---------------------------------------------------------------------------------------------
// E-mail: local@domain.tld

fn local_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"._%+-".contains(&c)
}

fn domain_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'.'
}

/// An e-mail address starting at `i`.
pub fn email(b: &[u8], i: usize) -> Scan {
    if !local_char(at(b, i)) || i.checked_sub(1).is_some_and(|p| local_char(at(b, p))) {
        return Scan::Skip(i + 1);
    }
    let mut j = i;
    while j < b.len() && local_char(at(b, j)) {
        j += 1;
    }
    if at(b, j) != b'@' || at(b, i) == b'.' || at(b, j - 1) == b'.' {
        return Scan::Skip(j.max(i + 1));
    }
    let d0 = j + 1;
    let mut e = d0;
    while e < b.len() && domain_char(at(b, e)) {
        e += 1;
    }
    while e > d0 && matches!(at(b, e - 1), b'.' | b'-') {
        e -= 1; // sentence punctuation after the address
    }
    let domain = b.get(d0..e).unwrap_or_default();
    let labels: Vec<&[u8]> = domain.split(|&c| c == b'.').collect();
    let ok = labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.first() != Some(&b'-') && l.last() != Some(&b'-'))
        && labels
            .last()
            .is_some_and(|t| t.len() >= 2 && t.iter().all(u8::is_ascii_alphabetic));
    if ok {
        Scan::Match(e)
    } else {
        Scan::Skip(j + 1)
    }
}

// ---------------------------------------------------------------------------------------------
// IBAN: CC + 2 check digits + up to 30 alphanumerics, optionally in groups of 4, mod-97 == 1.

fn iban_mod97(compact: &[u8]) -> bool {
    let (head, tail) = compact.split_at(4.min(compact.len()));
    let mut r: u32 = 0;
    for &c in tail.iter().chain(head) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        r = if v >= 10 {
            (r * 100 + v) % 97
        } else {
            (r * 10 + v) % 97
        };
    }
    r == 1
}

/// An IBAN starting at `i` (upper-case letters only, as printed).
pub fn iban(b: &[u8], i: usize) -> Scan {
    let head_ok = at(b, i).is_ascii_uppercase()
        && at(b, i + 1).is_ascii_uppercase()
        && digit(at(b, i + 2))
        && digit(at(b, i + 3))
        && i.checked_sub(1)
            .is_none_or(|p| !at(b, p).is_ascii_alphanumeric());
    if !head_ok {
        return Scan::Skip(i + 1);
    }
    let upper_or_digit = |c: u8| c.is_ascii_uppercase() || digit(c);
    let mut compact: Vec<u8> = Vec::with_capacity(34);
    let mut ends: Vec<usize> = Vec::with_capacity(34); // ends[k] = raw end after k+1 chars
    let mut j = i;
    while compact.len() < 34 {
        let c = at(b, j);
        if upper_or_digit(c) {
            compact.push(c);
            j += 1;
            ends.push(j);
        } else if c == b' ' && compact.len().is_multiple_of(4) && upper_or_digit(at(b, j + 1)) {
            j += 1;
        } else {
            break;
        }
    }
    for len in (15..=compact.len()).rev() {
        let Some(&end) = ends.get(len - 1) else {
            continue;
        };
        if end_boundary(b, end) && compact.get(..len).is_some_and(iban_mod97) {
            return Scan::Match(end);
        }
    }
    Scan::Skip(i + 1)
}

// ---------------------------------------------------------------------------------------------
// Cards: 13-19 digits, optionally grouped (first group of 4, then 3-6) by one kind of separator
// (space or dash), Luhn-valid.

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (k, &d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if k % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10) && digits.iter().any(|&d| d != b'0')
}

fn digit_run_end(b: &[u8], mut j: usize) -> usize {
    while digit(at(b, j)) {
        j += 1;
    }
    j
}

/// A card number starting at `i`.
pub fn card(b: &[u8], i: usize) -> Scan {
    if !digit(at(b, i)) || !number_boundary(b, i) {
        return Scan::Skip(i + 1);
    }
    let mut digits: Vec<u8> = Vec::with_capacity(19);
    let mut group_ends: Vec<(usize, usize)> = Vec::new(); // (raw end, digits so far)
    let mut sep: Option<u8> = None;
    let mut j = i;
    loop {
        let g_end = digit_run_end(b, j);
        let g_len = g_end - j;
        let first = group_ends.is_empty();
        let grouped = sep.is_some() || !first;
        if grouped
            && (if first {
                g_len != 4
            } else {
                !(3..=6).contains(&g_len)
            })
        {
            break;
        }
        digits.extend_from_slice(b.get(j..g_end).unwrap_or_default());
        group_ends.push((g_end, digits.len()));
        if digits.len() > 19 {
            break;
        }
        let c = at(b, g_end);
        let next_ok =
            matches!(c, b' ' | b'-') && sep.is_none_or(|s| s == c) && digit(at(b, g_end + 1));
        // A separator only makes sense after a 4-digit first group.
        if !next_ok || (first && g_len != 4) {
            break;
        }
        sep = Some(c);
        j = g_end + 1;
    }
    for &(end, n) in group_ends.iter().rev() {
        if (13..=19).contains(&n) && end_boundary(b, end) && digits.get(..n).is_some_and(luhn) {
            return Scan::Match(end);
        }
    }
    Scan::Skip(digit_run_end(b, i))
}

// ---------------------------------------------------------------------------------------------
// Phones: "+CC ..." international forms, and national forms with separators
// (space, dash, dot, parentheses), 7-15 digits in all.

fn phone_sep(c: u8) -> bool {
    matches!(c, b' ' | b'-' | b'.' | b'(' | b')')
}

/// A phone number starting at `i` (at `+`, `(` or a digit).
pub fn phone(b: &[u8], i: usize) -> Scan {
    let c0 = at(b, i);
    let plus = c0 == b'+';
    let starts = (plus && digit(at(b, i + 1))) || (c0 == b'(' && digit(at(b, i + 1))) || digit(c0);
    if !starts || !number_boundary(b, i) {
        return Scan::Skip(i + 1);
    }
    let mut groups: Vec<(usize, usize)> = Vec::new(); // (start, end) of each digit group
    let mut open = false;
    let mut parens = 0;
    let mut dots = 0;
    let mut others = 0; // separators other than dots
    let mut total = 0;
    let mut j = if plus { i + 1 } else { i };
    loop {
        // Separators before the group: none before the first one except a '('.
        let mut k = j;
        let (mut o, mut d, mut p, mut close) = (0, 0, 0, false);
        while k < b.len() && k - j < 3 && phone_sep(at(b, k)) {
            match at(b, k) {
                b'(' => p += 1,
                b')' => close = true,
                b'.' => d += 1,
                _ => o += 1,
            }
            k += 1;
        }
        let valid_seps = if groups.is_empty() {
            (k == j || (p == 1 && k == j + 1 && !plus)) && !close
        } else {
            k > j && p + parens <= 1 && (!close || open) && !(p == 1 && open) && d <= 1
        };
        if !valid_seps || !digit(at(b, k)) {
            break;
        }
        if close {
            open = false;
        }
        if p == 1 {
            open = true;
            parens += 1;
        }
        dots += d;
        others += o;
        let end = digit_run_end(b, k);
        total += end - k;
        if total > 15 {
            // One long number: no part of it is a phone.
            return Scan::Skip(end);
        }
        groups.push((k, end));
        j = end;
    }
    let Some(&(first_start, first_end)) = groups.first() else {
        return Scan::Skip(i + 1);
    };
    let end = groups.last().map_or(first_end, |g| g.1);
    let skip = Scan::Skip(first_end);
    if open || total < 7 || !end_boundary(b, end) {
        return skip;
    }
    if plus {
        return Scan::Match(end);
    }
    let lens: Vec<usize> = groups.iter().map(|(s, e)| e - s).collect();
    let value = |g: usize| -> u32 {
        groups
            .get(g)
            .and_then(|&(s, e)| b.get(s..e))
            .map_or(0, |d| {
                d.iter().fold(0u32, |acc, &c| {
                    acc.saturating_mul(10).saturating_add(u32::from(c - b'0'))
                })
            })
    };
    let looks_like_phone = match lens.as_slice() {
        // A bare digit run: only the trunk-prefixed national form (0...).
        [n] => (10..=11).contains(n) && at(b, first_start) == b'0',
        // Dates: 2024-01-15, 15.01.2024.
        [4, 2, 2] | [2, 2, 4] => false,
        // A year and something: 2019-2024, invoice 2024-0117.
        [4, _] if (1900..=2099).contains(&value(0)) => false,
        // Decimals: 1234567.89.
        [_, _] if dots > 0 && others == 0 && parens == 0 => false,
        // IP-like: 192.168.100.200.
        [_, _, _, _] if dots > 0 && others == 0 && lens.iter().all(|&n| n <= 3) => false,
        // Thousands: 12 345 678.
        [f, rest @ ..] if *f <= 3 && rest.iter().all(|&n| n == 3) && parens == 0 => false,
        _ => {
            // No single-digit groups (ISBNs, versions), except a leading NANP "1".
            let leading_one = lens.first() == Some(&1) && at(b, first_start) == b'1' && total == 11;
            lens.iter()
                .enumerate()
                .all(|(g, &n)| n >= 2 || (g == 0 && leading_one))
        }
    };
    if looks_like_phone {
        Scan::Match(end)
    } else {
        skip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(t: &str) -> String {
        redact(t).0
    }

    #[test]
    fn emails() {
        assert_eq!(r("mail jane.doe+x@mail.example.co.uk."), "mail [EMAIL].");
        assert_eq!(r("<a@b.io>, c_d@e-f.com"), "<[EMAIL]>, [EMAIL]");
        for keep in [
            "a@b",
            "user@localhost",
            "@handle",
            "x@y.c",
            "a@-b.com",
            "a@b..com",
            "x@1.23",
        ] {
            assert_eq!(r(keep), keep);
        }
    }

    #[test]
    fn ibans() {
        assert_eq!(
            r("IBAN DE89 3704 0044 0532 0130 00 please"),
            "IBAN [IBAN] please"
        );
        assert_eq!(r("GB82WEST12345698765432."), "[IBAN].");
        assert_eq!(r("to FR1420041010050500013M02606"), "to [IBAN]");
        // Wrong check digits.
        assert_eq!(
            r("DE88 3704 0044 0532 0130 00"),
            "DE88 3704 0044 0532 0130 00"
        );
        assert!(iban_mod97(b"GB82WEST12345698765432"));
    }

    #[test]
    fn cards() {
        assert_eq!(
            r("card 4111 1111 1111 1111 exp 12/27"),
            "card [CARD] exp 12/27"
        );
        assert_eq!(r("4111-1111-1111-1111"), "[CARD]");
        assert_eq!(r("amex 378282246310005!"), "amex [CARD]!");
        assert_eq!(r("amex 3782 822463 10005"), "amex [CARD]");
        assert_eq!(r("(5555555555554444)"), "([CARD])");
        // Luhn failures are not cards (and too long to be phones).
        for keep in [
            "order 4111111111111112",
            "id 1234567890123456",
            "0000 0000 0000 0000",
        ] {
            assert_eq!(r(keep), keep);
        }
        assert!(luhn(b"79927398713"));
        assert!(!luhn(b"79927398710"));
    }

    #[test]
    fn phones() {
        assert_eq!(r("call +1 415 555 2671 now"), "call [PHONE] now");
        assert_eq!(r("+44 20 7946 0958"), "[PHONE]");
        assert_eq!(r("+14155552671"), "[PHONE]");
        assert_eq!(r("+1 (415) 555-2671"), "[PHONE]");
        assert_eq!(r("(415) 555-2671"), "[PHONE]");
        assert_eq!(r("tel: 415.555.2671"), "tel: [PHONE]");
        assert_eq!(r("1-800-555-0199"), "[PHONE]");
        assert_eq!(r("06 12 34 56 78"), "[PHONE]");
        assert_eq!(r("0612345678"), "[PHONE]");
        assert_eq!(r("Ring 555-1234."), "Ring [PHONE].");
        assert_eq!(r("030 12345678"), "[PHONE]");
    }

    #[test]
    fn false_positives_are_left_alone() {
        for keep in [
            "on 2024-01-15 at 10:30",
            "born 15.01.1990",
            "from 2019-2024",
            "invoice 2024-0117",
            "costs $1234567.89 or 1234567.89 EUR",
            "1,234,567.89",
            "12 345 678 inhabitants",
            "version 10.0.19041.1 and v1.2.3",
            "server 192.168.100.200",
            "ISBN 978-3-16-148410-0",
            "order #12345678, ref 123456789012",
            "uuid 550e8400-e29b-41d4-a716-446655440000",
            "room 42, 7 items, 1234567",
            "sha 4f9a2c1d3e5b7a90",
            "+12",
        ] {
            assert_eq!(r(keep), keep, "{keep}");
        }
    }

    #[test]
    fn cards_win_over_phones_and_counts_add_up() {
        let (t, c) = redact("a@b.com 4111 1111 1111 1111 +1 415 555 2671 DE89370400440532013000");
        assert_eq!(t, "[EMAIL] [CARD] [PHONE] [IBAN]");
        assert_eq!(
            c,
            Counts {
                email: 1,
                phone: 1,
                card: 1,
                iban: 1
            }
        );
        assert_eq!(c.summary(), "email=1 phone=1 card=1 iban=1");
        assert_eq!(c.total(), 4);
    }

    #[test]
    fn keeps_unicode_intact() {
        assert_eq!(r("é 555-1234 ü — x@y.de ✓"), "é [PHONE] ü — [EMAIL] ✓");
        assert_eq!(r("日本4111111111111111"), "日本[CARD]");
        assert_eq!(redact("no pii here").1.total(), 0);
    }
}
