//! Weir's black-box integration tests: one binary, the real `weir` process, real sockets.
//! One module per feature.

mod acl;
mod auth_abuse;
mod connections;
mod iot_sim;
mod kafka_clients;
mod kafka_wire;
mod librdkafka;
mod mqtt;
mod mqtt_clients;
mod mqtt_rules;
mod plugins;
mod process;
mod security;
mod storage;
mod tls;
