//! The Bookstore served in-process on `127.0.0.1:0`, called with tonic's client.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use bookstore::pb::bookstore_client::BookstoreClient;
use bookstore::pb::*;
use bookstore::{DbLocation, RunningServer};
use testkit::start_bookstore_on as start;
use tonic::Code;
use tonic::transport::Channel;

async fn channel(server: &RunningServer) -> Channel {
    Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn client(server: &RunningServer) -> BookstoreClient<Channel> {
    BookstoreClient::new(channel(server).await)
}

fn shelf(id: i64, theme: &str) -> Shelf {
    Shelf {
        id,
        theme: theme.to_owned(),
    }
}

fn book(id: i64, author: &str, title: &str) -> Book {
    Book {
        id,
        author: author.to_owned(),
        title: title.to_owned(),
    }
}

#[tokio::test]
async fn seed_data_matches_the_esp_sample() {
    let server = start(&DbLocation::Memory).await;
    let mut c = client(&server).await;
    let shelves = c.list_shelves(()).await.unwrap().into_inner().shelves;
    assert_eq!(shelves, vec![shelf(1, "Fiction"), shelf(2, "Fantasy")]);
    let books = c
        .list_books(ListBooksRequest { shelf: 1 })
        .await
        .unwrap()
        .into_inner()
        .books;
    assert_eq!(books, vec![book(1, "Neal Stephenson", "README")]);
    let got = c
        .get_book(GetBookRequest { shelf: 2, book: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, book(1, "George R.R. Martin", "A Game of Thrones"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn all_eight_methods_create_read_delete() {
    let server = start(&DbLocation::Memory).await;
    let mut c = client(&server).await;

    // CreateShelf ignores the id the caller sends and assigns the next one.
    let music = c
        .create_shelf(CreateShelfRequest {
            shelf: Some(shelf(99, "Music")),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(music, shelf(3, "Music"));
    let got = c
        .get_shelf(GetShelfRequest { shelf: 3 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, music);

    // Book ids are per shelf.
    let b1 = c
        .create_book(CreateBookRequest {
            shelf: 3,
            book: Some(book(0, "J. S. Bach", "Goldberg Variations")),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b1, book(1, "J. S. Bach", "Goldberg Variations"));
    let b2 = c
        .create_book(CreateBookRequest {
            shelf: 3,
            book: Some(book(0, "Miles Davis", "Kind of Blue")),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b2.id, 2);
    let listed = c
        .list_books(ListBooksRequest { shelf: 3 })
        .await
        .unwrap()
        .into_inner()
        .books;
    assert_eq!(listed, vec![b1.clone(), b2.clone()]);

    // DeleteBook, then the id is gone and not reused.
    c.delete_book(DeleteBookRequest { shelf: 3, book: 2 })
        .await
        .unwrap();
    let err = c
        .get_book(GetBookRequest { shelf: 3, book: 2 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "Unable to find book 2 on shelf 3");
    let b3 = c
        .create_book(CreateBookRequest {
            shelf: 3,
            book: Some(book(0, "Nina Simone", "Pastel Blues")),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b3.id, 3);

    // DeleteShelf removes the shelf and its books.
    c.delete_shelf(DeleteShelfRequest { shelf: 3 })
        .await
        .unwrap();
    let shelves = c.list_shelves(()).await.unwrap().into_inner().shelves;
    assert_eq!(shelves, vec![shelf(1, "Fiction"), shelf(2, "Fantasy")]);
    let err = c
        .list_books(ListBooksRequest { shelf: 3 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "Unable to find shelf 3");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_ids_are_not_found_on_every_method() {
    let server = start(&DbLocation::Memory).await;
    let mut c = client(&server).await;
    let no_shelf = "Unable to find shelf 42";
    let cases: Vec<(&str, tonic::Status, &str)> = vec![
        (
            "GetShelf",
            c.get_shelf(GetShelfRequest { shelf: 42 })
                .await
                .unwrap_err(),
            no_shelf,
        ),
        (
            "DeleteShelf",
            c.delete_shelf(DeleteShelfRequest { shelf: 42 })
                .await
                .unwrap_err(),
            no_shelf,
        ),
        (
            "ListBooks",
            c.list_books(ListBooksRequest { shelf: 42 })
                .await
                .unwrap_err(),
            no_shelf,
        ),
        (
            "CreateBook",
            c.create_book(CreateBookRequest {
                shelf: 42,
                book: Some(book(0, "a", "t")),
            })
            .await
            .unwrap_err(),
            no_shelf,
        ),
        (
            "GetBook unknown shelf",
            c.get_book(GetBookRequest { shelf: 42, book: 1 })
                .await
                .unwrap_err(),
            no_shelf,
        ),
        (
            "GetBook unknown book",
            c.get_book(GetBookRequest { shelf: 1, book: 42 })
                .await
                .unwrap_err(),
            "Unable to find book 42 on shelf 1",
        ),
        (
            "DeleteBook unknown shelf",
            c.delete_book(DeleteBookRequest { shelf: 42, book: 1 })
                .await
                .unwrap_err(),
            no_shelf,
        ),
        (
            "DeleteBook unknown book",
            c.delete_book(DeleteBookRequest { shelf: 2, book: 42 })
                .await
                .unwrap_err(),
            "Unable to find book 42 on shelf 2",
        ),
    ];
    for (desc, status, want) in cases {
        assert_eq!(status.code(), Code::NotFound, "{desc}");
        assert_eq!(status.message(), want, "{desc}");
    }
    // A failed CreateBook on an unknown shelf created nothing anywhere.
    let books = c
        .list_books(ListBooksRequest { shelf: 1 })
        .await
        .unwrap()
        .into_inner()
        .books;
    assert_eq!(books.len(), 1);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn missing_resource_in_create_is_invalid_argument() {
    let server = start(&DbLocation::Memory).await;
    let mut c = client(&server).await;
    let err = c
        .create_shelf(CreateShelfRequest { shelf: None })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = c
        .create_book(CreateBookRequest {
            shelf: 1,
            book: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_file_database_keeps_data_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let db = DbLocation::File(dir.path().join("bookstore.db"));

    let server = start(&db).await;
    let mut c = client(&server).await;
    let created = c
        .create_shelf(CreateShelfRequest {
            shelf: Some(shelf(0, "Poetry")),
        })
        .await
        .unwrap()
        .into_inner();
    c.create_book(CreateBookRequest {
        shelf: created.id,
        book: Some(book(0, "Wisława Szymborska", "View with a Grain of Sand")),
    })
    .await
    .unwrap();
    c.delete_shelf(DeleteShelfRequest { shelf: 1 })
        .await
        .unwrap();
    drop(c);
    server.stop().await.unwrap();

    // The second start must not seed again: shelf 1 stays deleted.
    let server = start(&db).await;
    let mut c = client(&server).await;
    let got = c
        .get_shelf(GetShelfRequest { shelf: created.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, created);
    let books = c
        .list_books(ListBooksRequest { shelf: created.id })
        .await
        .unwrap()
        .into_inner()
        .books;
    assert_eq!(
        books,
        vec![book(1, "Wisława Szymborska", "View with a Grain of Sand")]
    );
    let shelves = c.list_shelves(()).await.unwrap().into_inner().shelves;
    assert_eq!(shelves, vec![shelf(2, "Fantasy"), created.clone()]);
    // Ids are not reused after a restart either.
    let next = c
        .create_shelf(CreateShelfRequest {
            shelf: Some(shelf(0, "Drama")),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.id, created.id + 1);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn health_reports_serving() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let server = start(&DbLocation::Memory).await;
    let mut health = HealthClient::new(channel(&server).await);
    for service in ["", bookstore::SERVICE_NAME] {
        let status = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
    }
    let err = health
        .check(HealthCheckRequest {
            service: "no.such.Service".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn reflection_v1_lists_services_and_serves_the_file() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let server = start(&DbLocation::Memory).await;
    let mut reflection = ServerReflectionClient::new(channel(&server).await);
    let requests = vec![
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "endpoints.examples.bookstore.Bookstore.GetBook".to_owned(),
            )),
        },
    ];
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();

    let first = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("unexpected reply {first:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for want in [
        bookstore::SERVICE_NAME,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }

    let second = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::FileDescriptorResponse(files)) = second.message_response else {
        panic!("unexpected reply {second:?}");
    };
    use prost::Message as _;
    let names: Vec<_> = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| {
            prost_types::FileDescriptorProto::decode(bytes.as_slice())
                .unwrap()
                .name
                .unwrap_or_default()
        })
        .collect();
    assert!(names.contains(&"bookstore.proto".to_owned()), "{names:?}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn reflection_v1alpha_lists_services_for_old_grpcurl() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let server = start(&DbLocation::Memory).await;
    let mut reflection = ServerReflectionClient::new(channel(&server).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let reply = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reply {reply:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&bookstore::SERVICE_NAME), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    server.stop().await.unwrap();
}

#[test]
fn descriptor_set_keeps_http_rules_imports_and_source_info() {
    let pool = prost_reflect::DescriptorPool::decode(bookstore::FILE_DESCRIPTOR_SET).unwrap();
    let files: Vec<_> = pool.files().map(|f| f.name().to_owned()).collect();
    for want in [
        "bookstore.proto",
        "google/api/annotations.proto",
        "google/api/http.proto",
        "google/protobuf/empty.proto",
        "google/protobuf/descriptor.proto",
    ] {
        assert!(
            files.contains(&want.to_owned()),
            "{want} missing from {files:?}"
        );
    }
    let file = pool.get_file_by_name("bookstore.proto").unwrap();
    assert!(file.file_descriptor_proto().source_code_info.is_some());

    let service = pool.get_service_by_name(bookstore::SERVICE_NAME).unwrap();
    let http = pool.get_extension_by_name("google.api.http").unwrap();
    let rules: Vec<(String, String)> = service
        .methods()
        .map(|m| {
            let options = m.options();
            let rule = options.get_extension(&http);
            let rule = rule.as_message().unwrap();
            let (verb, path) = ["get", "post", "delete"]
                .iter()
                .find_map(|verb| {
                    let path = rule.get_field_by_name(verb)?;
                    let path = path.as_str()?.to_owned();
                    (!path.is_empty()).then(|| (verb.to_string(), path))
                })
                .unwrap();
            let body = rule.get_field_by_name("body").unwrap();
            (
                m.name().to_owned(),
                format!("{} {path} {}", verb.to_uppercase(), body.as_str().unwrap())
                    .trim_end()
                    .to_owned(),
            )
        })
        .collect();
    let want = [
        ("ListShelves", "GET /v1/shelves"),
        ("CreateShelf", "POST /v1/shelves shelf"),
        ("GetShelf", "GET /v1/shelves/{shelf}"),
        ("DeleteShelf", "DELETE /v1/shelves/{shelf}"),
        ("ListBooks", "GET /v1/shelves/{shelf}/books"),
        ("CreateBook", "POST /v1/shelves/{shelf}/books book"),
        ("GetBook", "GET /v1/shelves/{shelf}/books/{book}"),
        ("DeleteBook", "DELETE /v1/shelves/{shelf}/books/{book}"),
    ]
    .map(|(m, r)| (m.to_owned(), r.to_owned()));
    assert_eq!(rules, want);
}
