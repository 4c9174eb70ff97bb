//! OffsetCommit (key 8) and OffsetFetch (key 9): offsets consumer groups commit and read back.
//!
//! OffsetCommit versions 2 to 8 (8 flexible); OffsetFetch versions 1 to 8 (6 and later
//! flexible, 8 asks for several groups).

use crate::header::write_response_header;
use crate::wire::{Reader, WireError, Writer};

/// API key of OffsetCommit.
pub const COMMIT_KEY: i16 = 8;
/// Lowest OffsetCommit version implemented.
pub const COMMIT_MIN: i16 = 2;
/// Highest OffsetCommit version implemented.
pub const COMMIT_MAX: i16 = 8;
/// API key of OffsetFetch.
pub const FETCH_KEY: i16 = 9;
/// Lowest OffsetFetch version implemented.
pub const FETCH_MIN: i16 = 1;
/// Highest OffsetFetch version implemented.
pub const FETCH_MAX: i16 = 8;

/// Request header version of OffsetCommit `version` (flexible from 8).
pub fn commit_header_version(version: i16) -> u8 {
    if version >= 8 { 2 } else { 1 }
}

/// Request header version of OffsetFetch `version` (flexible from 6).
pub fn fetch_header_version(version: i16) -> u8 {
    if version >= 6 { 2 } else { 1 }
}

fn name(r: &mut Reader<'_>, flexible: bool, what: &'static str) -> Result<String, WireError> {
    Ok(r.string_of(flexible)?
        .ok_or(WireError::Invalid(what))?
        .to_owned())
}

/// One partition's offset to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPartition {
    /// Partition index.
    pub index: i32,
    /// The next offset the group will read.
    pub offset: i64,
    /// The leader epoch the consumer saw (v6+; -1 before).
    pub leader_epoch: i32,
    /// Client metadata (null is stored as empty).
    pub metadata: String,
}

/// An OffsetCommit request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRequest {
    /// The group.
    pub group_id: String,
    /// The member's generation (-1: a consumer outside group membership).
    pub generation_id: i32,
    /// The member id ("" outside group membership).
    pub member_id: String,
    /// Per topic, the partitions.
    pub topics: Vec<(String, Vec<CommitPartition>)>,
}

/// Parses an OffsetCommit body of `version` (2..=8).
pub fn parse_commit(body: &[u8], version: i16) -> Result<CommitRequest, WireError> {
    let mut r = Reader::new(body);
    let flexible = version >= 8;
    let group_id = name(&mut r, flexible, "null group id")?;
    let generation_id = r.i32()?;
    let member_id = name(&mut r, flexible, "null member id")?;
    if version >= 7 {
        r.string_of(flexible)?; // group_instance_id: static membership is not used
    }
    if version <= 4 {
        r.i64()?; // retention_time_ms: committed offsets stay until their topic goes
    }
    let topic_count = r.array_len(flexible, 2)?;
    let mut topics = Vec::new();
    for _ in 0..topic_count {
        let topic = name(&mut r, flexible, "null topic name")?;
        let partition_count = r.array_len(flexible, 14)?;
        let mut partitions = Vec::new();
        for _ in 0..partition_count {
            let index = r.i32()?;
            let offset = r.i64()?;
            let leader_epoch = if version >= 6 { r.i32()? } else { -1 };
            let metadata = r.string_of(flexible)?.unwrap_or("").to_owned();
            if flexible {
                r.skip_tagged_fields()?;
            }
            partitions.push(CommitPartition {
                index,
                offset,
                leader_epoch,
                metadata,
            });
        }
        if flexible {
            r.skip_tagged_fields()?;
        }
        topics.push((topic, partitions));
    }
    if flexible {
        r.skip_tagged_fields()?;
    }
    Ok(CommitRequest {
        group_id,
        generation_id,
        member_id,
        topics,
    })
}

/// Writes an OffsetCommit response: per topic, (partition index, error code).
pub fn write_commit_response(
    out: &mut Vec<u8>,
    correlation_id: i32,
    version: i16,
    topics: &[(String, Vec<(i32, i16)>)],
) {
    let flexible = version >= 8;
    write_response_header(out, correlation_id, u8::from(flexible));
    let mut w = Writer::new(out, flexible);
    if version >= 3 {
        w.i32(0); // throttle_time_ms
    }
    w.array_len(topics.len());
    for (topic, partitions) in topics {
        w.string(topic);
        w.array_len(partitions.len());
        for (index, error_code) in partitions {
            w.i32(*index);
            w.i16(*error_code);
            w.tagged();
        }
        w.tagged();
    }
    w.tagged();
}

/// One group of an OffsetFetch request: the group and its topics' partitions (`None`: every
/// partition it has committed).
pub type FetchGroup = (String, Option<Vec<(String, Vec<i32>)>>);

/// Parses an OffsetFetch body of `version` (1..=8): the groups (one before v8).
pub fn parse_fetch(body: &[u8], version: i16) -> Result<Vec<FetchGroup>, WireError> {
    let mut r = Reader::new(body);
    let flexible = version >= 6;
    let group_count = if version >= 8 {
        r.array_len(true, 2)?
    } else {
        1
    };
    let mut groups = Vec::new();
    for _ in 0..group_count {
        let group = name(&mut r, flexible, "null group id")?;
        // A null topic array (v2+) means every partition the group committed; v1 has no
        // null array, so there it counts as empty.
        let topics = match r.nullable_array_len(flexible, 2)? {
            None if version >= 2 => None,
            count => {
                let mut topics = Vec::new();
                for _ in 0..count.unwrap_or(0) {
                    let topic = name(&mut r, flexible, "null topic name")?;
                    let count = r.array_len(flexible, 4)?;
                    let mut indexes = Vec::new();
                    for _ in 0..count {
                        indexes.push(r.i32()?);
                    }
                    if flexible {
                        r.skip_tagged_fields()?;
                    }
                    topics.push((topic, indexes));
                }
                Some(topics)
            }
        };
        if version >= 8 {
            r.skip_tagged_fields()?;
        }
        groups.push((group, topics));
    }
    if version >= 7 {
        r.bool()?; // require_stable: Weir has no pending transactional offsets
    }
    if flexible {
        r.skip_tagged_fields()?;
    }
    Ok(groups)
}

/// One partition's committed offset in an OffsetFetch answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    /// Partition index.
    pub index: i32,
    /// The committed offset, or -1 if none.
    pub offset: i64,
    /// Its leader epoch, or -1.
    pub leader_epoch: i32,
    /// Its metadata ("" if none).
    pub metadata: String,
    /// 0 or the partition's error.
    pub error_code: i16,
}

/// One group's OffsetFetch answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedGroup {
    /// The group.
    pub group_id: String,
    /// Per topic, its partitions.
    pub topics: Vec<(String, Vec<FetchedOffset>)>,
    /// 0 or the group's error.
    pub error_code: i16,
}

/// Writes an OffsetFetch response for a request of `version` (one group before v8).
pub fn write_fetch_response(
    out: &mut Vec<u8>,
    correlation_id: i32,
    version: i16,
    groups: &[FetchedGroup],
) {
    let flexible = version >= 6;
    write_response_header(out, correlation_id, u8::from(flexible));
    let mut w = Writer::new(out, flexible);
    if version >= 3 {
        w.i32(0); // throttle_time_ms
    }
    let write_topics = |w: &mut Writer<'_>, topics: &[(String, Vec<FetchedOffset>)]| {
        w.array_len(topics.len());
        for (topic, partitions) in topics {
            w.string(topic);
            w.array_len(partitions.len());
            for p in partitions {
                w.i32(p.index);
                w.out.extend_from_slice(&p.offset.to_be_bytes());
                if version >= 5 {
                    w.i32(p.leader_epoch);
                }
                w.nullable_string(Some(&p.metadata));
                w.i16(p.error_code);
                w.tagged();
            }
            w.tagged();
        }
    };
    if version >= 8 {
        w.array_len(groups.len());
        for group in groups {
            w.string(&group.group_id);
            write_topics(&mut w, &group.topics);
            w.i16(group.error_code);
            w.tagged();
        }
    } else if let Some(group) = groups.first() {
        write_topics(&mut w, &group.topics);
        if version >= 2 {
            w.i16(group.error_code);
        }
    }
    w.tagged();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_requests_v2_and_v8() {
        let mut v2 = vec![0, 1, b'g', 0xff, 0xff, 0xff, 0xff, 0, 0];
        v2.extend_from_slice(&(-1i64).to_be_bytes());
        v2.extend_from_slice(&[0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 0]);
        v2.extend_from_slice(&5i64.to_be_bytes());
        v2.extend_from_slice(&[0xff, 0xff]);
        let request = parse_commit(&v2, 2).unwrap();
        assert_eq!(
            (request.generation_id, request.member_id.as_str()),
            (-1, "")
        );
        assert_eq!(
            request.topics,
            [(
                "t".to_owned(),
                vec![CommitPartition {
                    index: 0,
                    offset: 5,
                    leader_epoch: -1,
                    metadata: String::new()
                }]
            )]
        );
        let mut v8 = vec![2, b'g', 0, 0, 0, 3, 2, b'm', 0, 2, 2, b't', 2, 0, 0, 0, 1];
        v8.extend_from_slice(&7i64.to_be_bytes());
        v8.extend_from_slice(&[0, 0, 0, 2, 2, b'x', 0, 0, 0]);
        let request = parse_commit(&v8, 8).unwrap();
        assert_eq!(request.member_id, "m");
        assert_eq!(request.topics[0].1[0].leader_epoch, 2);
        assert_eq!(request.topics[0].1[0].metadata, "x");
        assert!(parse_commit(&v8[..12], 8).is_err());
        let lie = [0, 1, b'g', 0, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff];
        assert!(parse_commit(&lie, 5).is_err());
    }

    #[test]
    fn fetch_requests_of_each_generation() {
        let v1 = [0, 1, b'g', 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 2];
        assert_eq!(
            parse_fetch(&v1, 1).unwrap(),
            [("g".to_owned(), Some(vec![("t".to_owned(), vec![2])]))]
        );
        let v2_all = [0, 1, b'g', 0xff, 0xff, 0xff, 0xff];
        assert_eq!(parse_fetch(&v2_all, 2).unwrap(), [("g".to_owned(), None)]);
        let v8 = [3, 2, b'a', 0, 0, 2, b'b', 1, 0, 0, 0];
        assert_eq!(
            parse_fetch(&v8, 8).unwrap(),
            [("a".to_owned(), None), ("b".to_owned(), Some(vec![]))]
        );
    }

    #[test]
    fn response_layouts() {
        let mut commit = Vec::new();
        write_commit_response(&mut commit, 1, 2, &[("t".into(), vec![(0, 0)])]);
        assert_eq!(
            commit,
            [
                0, 0, 0, 1, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0
            ]
        );
        let group = FetchedGroup {
            group_id: "g".into(),
            topics: vec![(
                "t".into(),
                vec![FetchedOffset {
                    index: 0,
                    offset: 5,
                    leader_epoch: -1,
                    metadata: String::new(),
                    error_code: 0,
                }],
            )],
            error_code: 0,
        };
        let mut v1 = Vec::new();
        write_fetch_response(&mut v1, 1, 1, std::slice::from_ref(&group));
        let mut expected = vec![0, 0, 0, 1, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 0];
        expected.extend_from_slice(&5i64.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(v1, expected);
        let mut v8 = Vec::new();
        write_fetch_response(&mut v8, 1, 8, &[group]);
        let mut expected = vec![
            0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 2, b'g', 2, 2, b't', 2, 0, 0, 0, 0,
        ];
        expected.extend_from_slice(&5i64.to_be_bytes());
        expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(v8, expected);
    }
}
