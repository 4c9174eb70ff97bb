//! Weir's black-box integration tests: one binary, the real `weir` process, real sockets.
//! Modules follow the issues that built what they test.

mod foundation;
mod iot_sim;
mod kafka_clients;
mod librdkafka;
mod mqtt;
mod mqtt_clients;
mod plugins;
mod server;
mod storage;
