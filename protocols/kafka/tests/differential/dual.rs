//! Cases compiled twice, against kafka-protocol's newest release and against 0.15: the APIs
//! whose oldest versions Weir serves were dropped from the Kafka 4 schemas that the newest
//! release is generated from. The table in `differential.rs` says which release checks which
//! versions.

macro_rules! dual {
    ($kp:ident, $oracle:ident) => {
        use crate::support::$oracle as oracle;
        use $kp as kp;

        pub mod produce {
            use super::{kp, oracle};
            include!("dual/produce.rs");
        }

        pub mod create_topics {
            use super::{kp, oracle};
            include!("dual/create_topics.rs");
        }

        pub mod delete_topics {
            use super::{kp, oracle};
            include!("dual/delete_topics.rs");
        }

        pub mod epochs {
            use super::{kp, oracle};
            include!("dual/epochs.rs");
        }

        pub mod describe_configs {
            use super::{kp, oracle};
            include!("dual/describe_configs.rs");
        }
    };
}

pub mod newest {
    dual!(kafka_protocol, newest);

    /// DescribeConfigs v0's `is_default` is gone from the Kafka 4 schemas (and v0 with it).
    pub fn with_is_default(
        config: kp::messages::describe_configs_response::DescribeConfigsResourceResult,
        _is_default: bool,
    ) -> kp::messages::describe_configs_response::DescribeConfigsResourceResult {
        config
    }
}

pub mod legacy {
    dual!(kafka_protocol_legacy, legacy);

    /// DescribeConfigs v0's `is_default`, which only the Kafka 3 schemas have.
    pub fn with_is_default(
        config: kp::messages::describe_configs_response::DescribeConfigsResourceResult,
        is_default: bool,
    ) -> kp::messages::describe_configs_response::DescribeConfigsResourceResult {
        config.with_is_default(is_default)
    }
}
