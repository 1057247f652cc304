//! The `Bookstore` gRPC service over a [`Store`].

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::pb::bookstore_server::Bookstore;
use crate::pb::{
    Book, CreateBookRequest, CreateShelfRequest, DeleteBookRequest, DeleteShelfRequest,
    GetBookRequest, GetShelfRequest, ListBooksRequest, ListBooksResponse, ListShelvesResponse,
    Shelf,
};
use crate::store::{Store, StoreError};

/// Implements the generated `Bookstore` trait; cheap to clone.
#[derive(Debug, Clone)]
pub struct BookstoreService {
    store: Arc<Store>,
}

impl BookstoreService {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    /// Runs a blocking store call off the async workers.
    async fn run<T, F>(&self, call: F) -> Result<Response<T>, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        match tokio::task::spawn_blocking(move || call(&store)).await {
            Ok(result) => result.map(Response::new).map_err(status_of),
            Err(err) => {
                tracing::error!(error = %err, "store task failed");
                Err(Status::internal("store task failed"))
            }
        }
    }
}

/// Maps a store failure to what the caller sees.
pub fn status_of(err: StoreError) -> Status {
    match err {
        StoreError::ShelfNotFound { .. } | StoreError::BookNotFound { .. } => {
            Status::not_found(err.to_string())
        }
        StoreError::UnsupportedSchema { .. } | StoreError::Sqlite(_) | StoreError::Poisoned => {
            // The cause stays in the server's log; the caller learns only that it was internal.
            tracing::error!(error = ?err, "store failure");
            Status::internal(err.to_string())
        }
    }
}

#[tonic::async_trait]
impl Bookstore for BookstoreService {
    async fn list_shelves(
        &self,
        _request: Request<()>,
    ) -> Result<Response<ListShelvesResponse>, Status> {
        self.run(|store| {
            Ok(ListShelvesResponse {
                shelves: store.list_shelves()?,
            })
        })
        .await
    }

    async fn create_shelf(
        &self,
        request: Request<CreateShelfRequest>,
    ) -> Result<Response<Shelf>, Status> {
        let shelf = request
            .into_inner()
            .shelf
            .ok_or_else(|| Status::invalid_argument("shelf is required"))?;
        self.run(move |store| store.create_shelf(&shelf.theme))
            .await
    }

    async fn get_shelf(
        &self,
        request: Request<GetShelfRequest>,
    ) -> Result<Response<Shelf>, Status> {
        let shelf = request.into_inner().shelf;
        self.run(move |store| store.get_shelf(shelf)).await
    }

    async fn delete_shelf(
        &self,
        request: Request<DeleteShelfRequest>,
    ) -> Result<Response<()>, Status> {
        let shelf = request.into_inner().shelf;
        self.run(move |store| store.delete_shelf(shelf)).await
    }

    async fn list_books(
        &self,
        request: Request<ListBooksRequest>,
    ) -> Result<Response<ListBooksResponse>, Status> {
        let shelf = request.into_inner().shelf;
        self.run(move |store| {
            Ok(ListBooksResponse {
                books: store.list_books(shelf)?,
            })
        })
        .await
    }

    async fn create_book(
        &self,
        request: Request<CreateBookRequest>,
    ) -> Result<Response<Book>, Status> {
        let CreateBookRequest { shelf, book } = request.into_inner();
        let book = book.ok_or_else(|| Status::invalid_argument("book is required"))?;
        self.run(move |store| store.create_book(shelf, &book.author, &book.title))
            .await
    }

    async fn get_book(&self, request: Request<GetBookRequest>) -> Result<Response<Book>, Status> {
        let GetBookRequest { shelf, book } = request.into_inner();
        self.run(move |store| store.get_book(shelf, book)).await
    }

    async fn delete_book(
        &self,
        request: Request<DeleteBookRequest>,
    ) -> Result<Response<()>, Status> {
        let DeleteBookRequest { shelf, book } = request.into_inner();
        self.run(move |store| store.delete_book(shelf, book)).await
    }
}
