//! The Bookstore sample behind the proxy: all eight methods with a real tonic client, and the
//! same with Python's grpcio (a gRPC implementation we did not write).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use bookstore::pb::bookstore_client::BookstoreClient;
use bookstore::pb::*;
use common::*;
use tonic::Code;

#[tokio::test]
async fn all_eight_methods_through_the_proxy() {
    let (_backend, proxy) = bookstore_stack().await;
    let mut client = BookstoreClient::connect(proxy.url()).await.unwrap();

    let shelves = client.list_shelves(()).await.unwrap().into_inner().shelves;
    let themes: Vec<&str> = shelves.iter().map(|s| s.theme.as_str()).collect();
    assert_eq!(themes, ["Fiction", "Fantasy"]);

    let created = client
        .create_shelf(CreateShelfRequest {
            shelf: Some(Shelf {
                id: 0,
                theme: "Poetry".into(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.theme, "Poetry");
    let got = client
        .get_shelf(GetShelfRequest { shelf: created.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, created);

    let book = client
        .create_book(CreateBookRequest {
            shelf: created.id,
            book: Some(Book {
                id: 0,
                author: "Rumi".into(),
                title: "Masnavi".into(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let books = client
        .list_books(ListBooksRequest { shelf: created.id })
        .await
        .unwrap()
        .into_inner()
        .books;
    assert_eq!(books, vec![book.clone()]);
    let got = client
        .get_book(GetBookRequest {
            shelf: created.id,
            book: book.id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, book);
    client
        .delete_book(DeleteBookRequest {
            shelf: created.id,
            book: book.id,
        })
        .await
        .unwrap();
    let status = client
        .get_book(GetBookRequest {
            shelf: created.id,
            book: book.id,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    client
        .delete_shelf(DeleteShelfRequest { shelf: created.id })
        .await
        .unwrap();
    let status = client
        .get_shelf(GetShelfRequest { shelf: created.id })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let seed = client
        .get_book(GetBookRequest { shelf: 1, book: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (seed.author.as_str(), seed.title.as_str()),
        ("Neal Stephenson", "README")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_through_the_proxy() {
    let (_backend, proxy) = bookstore_stack().await;
    let target = proxy.addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        testkit::run_python("bookstore_interop.py", &[&target])
    })
    .await
    .unwrap();
    testkit::assert_success("bookstore_interop.py through the proxy", &out);

    // And grpcio sees the proxy's own answer for a path outside the API.
    let echo_only = RunningProxy::start(&echo_config(), settings(_backend.addr())).await;
    let target = echo_only.addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        testkit::run_python(
            "bookstore_interop.py",
            &[
                &target,
                "--expect-error",
                "UNIMPLEMENTED",
                "--expect-message",
                "The current request is not defined by this API.",
            ],
        )
    })
    .await
    .unwrap();
    testkit::assert_success("grpcio calling a method outside the API", &out);
}
