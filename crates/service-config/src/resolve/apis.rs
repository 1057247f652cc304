//! `apis[]`: the listed services, looked up in the descriptor, and their methods.

use std::collections::HashSet;

use super::present;
use crate::descriptor::Descriptor;
use crate::error::ConfigError;
use crate::model::{Api, ApiKeyLocation, ApiKeyRequirement, Method};
use crate::raw;
use crate::selector::Selector;

pub(super) fn build_apis(
    apis: Vec<raw::Api>,
    descriptor: Option<&Descriptor>,
    errors: &mut Vec<ConfigError>,
) -> (Vec<Api>, Vec<Method>, bool) {
    if apis.is_empty() {
        errors.push(ConfigError::MissingField {
            path: "apis".to_owned(),
        });
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut methods = Vec::new();
    let mut all_found = true;
    for (i, api) in apis.iter().enumerate() {
        let path = format!("apis[{i}].name");
        let Some(name) = present(&api.name) else {
            errors.push(ConfigError::MissingField { path });
            continue;
        };
        if !seen.insert(name) {
            errors.push(ConfigError::DuplicateApi {
                path,
                name: name.to_owned(),
            });
            continue;
        }
        out.push(Api {
            name: name.to_owned(),
        });
        let Some(descriptor) = descriptor else {
            continue;
        };
        let Some(service) = descriptor.pool().get_service_by_name(name) else {
            errors.push(ConfigError::UnknownApi {
                path,
                name: name.to_owned(),
            });
            all_found = false;
            continue;
        };
        for method in service.methods() {
            methods.push(Method {
                selector: Selector::new(method.full_name()),
                grpc_path: format!("/{}/{}", service.full_name(), method.name()),
                client_streaming: method.is_client_streaming(),
                server_streaming: method.is_server_streaming(),
                auth: None,
                api_key: ApiKeyRequirement::Required,
                api_key_locations: ApiKeyLocation::defaults(),
                backend_deadline: None,
                http: Vec::new(),
                descriptor: method,
            });
        }
    }
    (out, methods, all_found)
}
