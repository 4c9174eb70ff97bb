//! The common name (CN) of a client certificate's subject, for `tls.identity_as_username`.
//! Read with a small DER walker over the certificate rustls has already verified: only the
//! path to the subject is followed, every length is checked against what is left, and a CN
//! that is not text (invalid UTF-8, say) is refused rather than mended.

/// The first CN of the certificate's subject, or why there is none to use.
pub fn common_name(der: &[u8]) -> Result<String, String> {
    let malformed = || "the certificate does not parse".to_owned();
    let (_, certificate, _) = element(der, SEQUENCE).ok_or_else(malformed)?;
    let (_, mut tbs, _) = element(certificate, SEQUENCE).ok_or_else(malformed)?;
    // version [0] (optional), serialNumber, signature, issuer, validity, then the subject.
    if tbs.first() == Some(&VERSION) {
        tbs = element(tbs, VERSION).ok_or_else(malformed)?.2;
    }
    for tag in [INTEGER, SEQUENCE, SEQUENCE, SEQUENCE] {
        tbs = element(tbs, tag).ok_or_else(malformed)?.2;
    }
    let (_, mut subject, _) = element(tbs, SEQUENCE).ok_or_else(malformed)?;
    while !subject.is_empty() {
        let (_, mut set, rest) = element(subject, SET).ok_or_else(malformed)?;
        subject = rest;
        while !set.is_empty() {
            let (_, pair, rest) = element(set, SEQUENCE).ok_or_else(malformed)?;
            set = rest;
            let (_, oid, value) = element(pair, OID).ok_or_else(malformed)?;
            if oid == COMMON_NAME {
                return text(value);
            }
        }
    }
    Err("the certificate's subject has no common name (CN)".to_owned())
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const VERSION: u8 = 0xa0;
/// id-at-commonName, 2.5.4.3.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// The CN's value as text: UTF8String, PrintableString, IA5String and TeletexString holding
/// UTF-8 (ASCII in practice), BMPString as UTF-16.
fn text(value: &[u8]) -> Result<String, String> {
    let (tag, bytes, _) = (value.first().copied())
        .and_then(|tag| element(value, tag))
        .ok_or_else(|| "the certificate's CN does not parse".to_owned())?;
    let name = match tag {
        0x0c | 0x13 | 0x14 | 0x16 => String::from_utf8(bytes.to_vec()).ok(),
        0x1e if bytes.len() % 2 == 0 => {
            let units = bytes
                .chunks_exact(2)
                .map(|u| u16::from_be_bytes([u[0], u[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        _ => None,
    };
    match name {
        Some(name) if !name.is_empty() && !name.contains('\0') => Ok(name),
        Some(_) => Err("the certificate's CN is empty or holds NUL".to_owned()),
        None => Err(format!(
            "the certificate's CN is not text (ASN.1 tag {tag:#04x}, or not UTF-8)"
        )),
    }
}

/// One DER element of tag `tag` at the start of `input`: its tag, its contents and what
/// follows it. `None` if the tag differs or a length runs past the input.
fn element(input: &[u8], tag: u8) -> Option<(u8, &[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = (rest[..count].iter()).fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, &rest[count..])
    };
    (rest.len() >= len).then(|| (found, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate's outline: version, serial, algorithm, issuer, validity, then `subject`.
    fn certificate(subject: &[u8]) -> Vec<u8> {
        let der = |tag: u8, body: &[u8]| {
            let mut out = vec![tag];
            if body.len() < 0x80 {
                out.push(body.len() as u8);
            } else {
                out.extend([0x82, (body.len() >> 8) as u8, body.len() as u8]);
            }
            out.extend_from_slice(body);
            out
        };
        let mut tbs = der(VERSION, &der(INTEGER, &[2]));
        tbs.extend(der(INTEGER, &[7]));
        tbs.extend(der(SEQUENCE, &[]));
        tbs.extend(der(SEQUENCE, &[]));
        tbs.extend(der(SEQUENCE, &[]));
        tbs.extend(der(SEQUENCE, subject));
        der(SEQUENCE, &der(SEQUENCE, &tbs))
    }

    fn name(attributes: &[(&[u8], u8, &[u8])]) -> Vec<u8> {
        let mut subject = Vec::new();
        for (oid, tag, value) in attributes {
            let mut pair = vec![OID, oid.len() as u8];
            pair.extend_from_slice(oid);
            pair.extend([*tag, value.len() as u8]);
            pair.extend_from_slice(value);
            let mut seq = vec![SEQUENCE, pair.len() as u8];
            seq.extend(pair);
            subject.extend([SET, seq.len() as u8]);
            subject.extend(seq);
        }
        subject
    }

    const ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];

    #[test]
    fn the_first_common_name_of_the_subject() {
        let subject = name(&[
            (ORGANIZATION, 0x0c, b"Plant"),
            (COMMON_NAME, 0x0c, b"sensor-7"),
        ]);
        assert_eq!(common_name(&certificate(&subject)).unwrap(), "sensor-7");
        let printable = name(&[(COMMON_NAME, 0x13, b"gw1"), (COMMON_NAME, 0x13, b"gw2")]);
        assert_eq!(common_name(&certificate(&printable)).unwrap(), "gw1");
        let bmp = name(&[(COMMON_NAME, 0x1e, &[0, b'a', 0x00, 0xe9])]);
        assert_eq!(common_name(&certificate(&bmp)).unwrap(), "a\u{e9}");
    }

    #[test]
    fn names_that_are_not_text_are_refused() {
        for (tag, value) in [
            (0x0c, &[0xc3, 0x28][..]),
            (0x14, &[b'a', 0xff][..]),
            (0x0c, &[][..]),
            (0x0c, &[b'a', 0, b'b'][..]),
            (0x04, &b"octets"[..]),
            (0x1e, &[0xd8, 0x00][..]),
        ] {
            let subject = name(&[(COMMON_NAME, tag, value)]);
            assert!(
                common_name(&certificate(&subject)).is_err(),
                "{tag} {value:?}"
            );
        }
        let no_cn = name(&[(ORGANIZATION, 0x0c, b"Plant")]);
        assert!(
            common_name(&certificate(&no_cn))
                .unwrap_err()
                .contains("no common name")
        );
    }

    #[test]
    fn hostile_lengths_are_refused_without_reading_past_the_input() {
        let good = certificate(&name(&[(COMMON_NAME, 0x0c, b"sensor-7")]));
        for cut in 0..good.len() {
            assert!(common_name(&good[..cut]).is_err(), "cut at {cut}");
        }
        // A length field of four 0xff bytes, and one of five bytes.
        assert!(common_name(&[SEQUENCE, 0x84, 0xff, 0xff, 0xff, 0xff, 0]).is_err());
        assert!(common_name(&[SEQUENCE, 0x85, 0, 0, 0, 0, 1, 0]).is_err());
        assert!(common_name(&[]).is_err());
    }
}
