//! Weir's broker core.
//!
//! It holds the storage contract, [`log_store::LogStore`]: what the MQTT and Kafka fronts may
//! ask of the partitioned log, with the errors they turn into protocol answers;
//! [`kafka::KafkaSession`], one Kafka connection as a sans-IO state machine, with the group
//! coordinator; [`mqtt_connection::MqttConnection`], the broker side of one MQTT connection,
//! sans-IO too; [`mqtt_kafka`], the mapping between MQTT messages and the log's records; and
//! [`plugin`], plugins as the core sees them. The LMDB implementation lives in `weir-log`,
//! which depends on this crate; the server wires the two together.
//!
//! Invariant: this crate does no I/O and reads no clock; time comes in as arguments
//! (`now_ms`, [`mqtt_connection::Now`]).

pub mod acl;
pub mod auth;
pub mod kafka;
pub mod log_store;
pub mod mqtt_connection;
pub mod mqtt_kafka;
pub mod plugin;
