//! Weir's broker core.
//!
//! Today it holds the storage contract, [`log_store::LogStore`]: what the MQTT and Kafka
//! fronts may ask of the partitioned log, with the errors they turn into protocol answers;
//! [`kafka::KafkaSession`], one Kafka connection as a sans-IO state machine; and
//! [`mqtt_kafka`], the mapping between MQTT messages and the log's records.
//! The LMDB implementation lives in `weir-log`, which depends on this crate; the server wires
//! the two together. Topics, routing, the MQTT<->Kafka mapping, consumer groups and sessions
//! join this crate with the protocol fronts.
//!
//! Invariant: this crate does no I/O and reads no clock; time comes in as arguments
//! (`now_ms`).

pub mod kafka;
pub mod log_store;
pub mod mqtt_kafka;
pub mod plugin;
