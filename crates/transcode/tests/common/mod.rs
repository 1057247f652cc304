//! The kitchen proto, compiled as the proxy compiles a service's protos (service-config's
//! `Descriptor::compile_protos`, which serves `google/api/annotations.proto`).

#![allow(dead_code)]

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let proto = std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
        )
        .join("tests/proto/kitchen.proto");
        service_config::Descriptor::compile_protos(&[proto])
            .expect("kitchen.proto compiles")
            .pool()
            .clone()
    })
}

pub fn kitchen() -> MessageDescriptor {
    pool()
        .get_message_by_name("kitchen.v1.Kitchen")
        .expect("Kitchen")
}

pub fn nested() -> MessageDescriptor {
    pool()
        .get_message_by_name("kitchen.v1.Nested")
        .expect("Nested")
}

/// A Kitchen from its canonical JSON, read strictly (unknown fields refused).
pub fn kitchen_from(json: &str) -> DynamicMessage {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let message = DynamicMessage::deserialize(kitchen(), &mut deserializer).expect(json);
    deserializer.end().expect(json);
    message
}

pub fn decode(bytes: &[u8]) -> DynamicMessage {
    DynamicMessage::decode(kitchen(), bytes).expect("a Kitchen")
}
