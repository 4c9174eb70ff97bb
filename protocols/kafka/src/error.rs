//! Kafka's error codes, as Weir sends them: one enum, one place.
//!
//! The wire carries an `i16`; [`ErrorCode::code`] gives it. The answers' structs keep the
//! `i16` (an answer may carry a code Weir never makes, such as one read back in a test), but
//! every code Weir writes is named here, with Apache Kafka's name for it.

/// An error code of the Kafka protocol that Weir sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i16)]
pub enum ErrorCode {
    /// The offset is before the log start or past the high watermark.
    OffsetOutOfRange = 1,
    /// A batch failed its checks (CRC, framing, counts, decompression).
    CorruptMessage = 2,
    /// No such topic or partition.
    UnknownTopicOrPartition = 3,
    /// The request did not finish in time; the client may retry.
    RequestTimedOut = 7,
    /// Committed offset metadata is over the limit.
    OffsetMetadataTooLarge = 12,
    /// The coordinator cannot answer now; the client retries.
    CoordinatorNotAvailable = 15,
    /// The topic name is not valid.
    InvalidTopicException = 17,
    /// Produce's acks is not -1, 0 or 1.
    InvalidRequiredAcks = 21,
    /// The member's generation is not the group's.
    IllegalGeneration = 22,
    /// The member's protocols share none with the group's.
    InconsistentGroupProtocol = 23,
    /// The group id is not valid.
    InvalidGroupId = 24,
    /// The member is not in the group.
    UnknownMemberId = 25,
    /// The session timeout is outside the broker's range.
    InvalidSessionTimeout = 26,
    /// The group is rebalancing: the member must join again.
    RebalanceInProgress = 27,
    /// The access-control list does not let the client use the topic.
    TopicAuthorizationFailed = 29,
    /// The access-control list does not let the client use the consumer group.
    GroupAuthorizationFailed = 30,
    /// The access-control list does not let the client do what acts on the whole broker.
    ClusterAuthorizationFailed = 31,
    /// The SASL mechanism asked for is not offered.
    UnsupportedSaslMechanism = 33,
    /// A SASL request out of order (authenticate before a handshake, a second handshake).
    IllegalSaslState = 34,
    /// The API version is not implemented.
    UnsupportedVersion = 35,
    /// The topic exists already.
    TopicAlreadyExists = 36,
    /// The partition count is not valid.
    InvalidPartitions = 37,
    /// The replication factor is not valid (a single node has one replica).
    InvalidReplicationFactor = 38,
    /// The replica assignment is not valid.
    InvalidReplicaAssignment = 39,
    /// A configuration value is not valid.
    InvalidConfig = 40,
    /// The request is malformed or asks for what Weir does not do.
    InvalidRequest = 42,
    /// The request breaks the broker's policy (a limit).
    PolicyViolation = 44,
    /// An idempotent producer's sequence has a gap.
    OutOfOrderSequenceNumber = 45,
    /// An idempotent producer's epoch is older than the latest.
    InvalidProducerEpoch = 47,
    /// The log cannot store or read now (a full disk, a failed read).
    KafkaStorageError = 56,
    /// SASL authentication failed: unknown user or wrong password.
    SaslAuthenticationFailed = 58,
    /// The group has members and cannot be deleted.
    NonEmptyGroup = 68,
    /// No such group.
    GroupIdNotFound = 69,
    /// The leader epoch asked for is unknown.
    UnknownLeaderEpoch = 74,
    /// The group has as many members as it may.
    GroupMaxSizeReached = 81,
    /// A newer member with the same group instance id has fenced this one.
    FencedInstanceId = 82,
    /// A record was refused (by a plugin).
    InvalidRecord = 87,
    /// No topic has that id.
    UnknownTopicId = 100,
    /// The endpoint type asked for is not served.
    UnsupportedEndpointType = 115,
}

impl ErrorCode {
    /// The code on the wire.
    pub const fn code(self) -> i16 {
        self as i16
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn codes_are_kafkas() {
        assert_eq!(ErrorCode::OffsetOutOfRange.code(), 1);
        assert_eq!(ErrorCode::KafkaStorageError.code(), 56);
        assert_eq!(ErrorCode::UnsupportedEndpointType.code(), 115);
    }
}
