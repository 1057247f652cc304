//! The demo's calls through the proxy: each one made with a real gRPC client, printed as
//! `bookstore-client` prints its outcome, and judged against what the tutorial says it should do.

use anyhow::Context as _;
use bookstore::pb::bookstore_client::BookstoreClient;
use bookstore::pb::{GetShelfRequest, Shelf};
use proxy::code_name;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use super::transcript::output;

/// A Bookstore method the demo calls.
#[derive(Clone, Copy)]
pub(super) enum BookstoreMethod {
    ListShelves,
    GetShelf(i64),
}

/// What a call should do.
pub(super) enum Expect {
    /// The method's answer: some shelves, or the shelf asked for.
    Answer,
    Rejected {
        code: Code,
        message: &'static str,
    },
}

/// One call through the proxy: the `bookstore-client` command line shown for it, the
/// credentials it sends, and what it should do.
pub(super) struct Call<'a> {
    pub(super) line: String,
    pub(super) method: BookstoreMethod,
    pub(super) token: Option<&'a str>,
    pub(super) api_key: Option<&'a str>,
    pub(super) expect: Expect,
}

/// A request carrying the token as `authorization: Bearer …` and the API key as `x-api-key`,
/// as `bookstore-client --auth_token T --api_key K` sends them.
fn request<T>(
    message: T,
    token: Option<&str>,
    api_key: Option<&str>,
) -> anyhow::Result<Request<T>> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .context("the token is not a valid header value")?;
        request.metadata_mut().insert("authorization", value);
    }
    if let Some(key) = api_key {
        let value = key
            .parse()
            .context("the API key is not a valid header value")?;
        request.metadata_mut().insert("x-api-key", value);
    }
    Ok(request)
}

/// Makes `call` through the proxy, prints what `bookstore-client` would, and whether that is
/// what the call expects. Returns whether it was.
pub(super) async fn make_call(
    client: &mut BookstoreClient<Channel>,
    call: &Call<'_>,
) -> anyhow::Result<bool> {
    let (token, key) = (call.token, call.api_key);
    let got: Result<Vec<Shelf>, Status> = match call.method {
        BookstoreMethod::ListShelves => client
            .list_shelves(request((), token, key)?)
            .await
            .map(|reply| reply.into_inner().shelves),
        BookstoreMethod::GetShelf(shelf) => client
            .get_shelf(request(GetShelfRequest { shelf }, token, key)?)
            .await
            .map(|reply| vec![reply.into_inner()]),
    };
    let ok = match (&got, &call.expect) {
        (Ok(shelves), Expect::Answer) => {
            for shelf in shelves {
                output(&format!("shelf {}: {}", shelf.id, shelf.theme));
            }
            match call.method {
                BookstoreMethod::ListShelves => !shelves.is_empty(),
                BookstoreMethod::GetShelf(id) => {
                    matches!(shelves.as_slice(), [shelf] if shelf.id == id)
                }
            }
        }
        (Err(status), Expect::Rejected { code, message }) => {
            output(&format!(
                "error: {}: {}",
                code_name(status.code()),
                status.message()
            ));
            status.code() == *code && status.message() == *message
        }
        (Ok(_), Expect::Rejected { .. }) => {
            output("(the call succeeded)");
            false
        }
        (Err(status), Expect::Answer) => {
            output(&format!(
                "error: {}: {}",
                code_name(status.code()),
                status.message()
            ));
            false
        }
    };
    let want = match (&call.expect, call.method) {
        (Expect::Answer, BookstoreMethod::ListShelves) => "the shelves".to_owned(),
        (Expect::Answer, BookstoreMethod::GetShelf(id)) => format!("shelf {id}"),
        (Expect::Rejected { code, message }, _) => format!("{} \"{message}\"", code_name(*code)),
    };
    if ok {
        output(&format!("  -> as expected: {want}"));
    } else {
        output(&format!("  -> UNEXPECTED: wanted {want}"));
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_are_grpc_names() {
        assert_eq!(code_name(Code::Unauthenticated), "UNAUTHENTICATED");
        assert_eq!(code_name(Code::PermissionDenied), "PERMISSION_DENIED");
        assert_eq!(code_name(Code::Ok), "OK");
    }
}
