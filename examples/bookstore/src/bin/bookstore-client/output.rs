//! How the client prints results: one line per resource, or proto3 JSON.

use bookstore::pb::{Book, ListBooksResponse, ListShelvesResponse, Shelf};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

/// What a successful call returned.
#[derive(Debug)]
pub enum Outcome {
    Shelves(ListShelvesResponse),
    Shelf(Shelf),
    Books(ListBooksResponse),
    Book(Book),
    ShelfDeleted {
        shelf: i64,
    },
    BookDeleted {
        shelf: i64,
        book: i64,
    },
    /// `grpc.health.v1` said `SERVING` (the status's name).
    Health(String),
}

pub fn render(outcome: &Outcome, json: bool) -> anyhow::Result<String> {
    if json {
        render_json(outcome)
    } else {
        Ok(render_text(outcome))
    }
}

fn shelf_line(shelf: &Shelf) -> String {
    format!("shelf {}: {}", shelf.id, shelf.theme)
}

fn book_line(book: &Book) -> String {
    format!("book {}: {} by {}", book.id, book.title, book.author)
}

fn render_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Shelves(list) if list.shelves.is_empty() => "no shelves".to_owned(),
        Outcome::Shelves(list) => lines(list.shelves.iter().map(shelf_line)),
        Outcome::Shelf(shelf) => shelf_line(shelf),
        Outcome::Books(list) if list.books.is_empty() => "no books".to_owned(),
        Outcome::Books(list) => lines(list.books.iter().map(book_line)),
        Outcome::Book(book) => book_line(book),
        Outcome::ShelfDeleted { shelf } => format!("deleted shelf {shelf}"),
        Outcome::BookDeleted { shelf, book } => format!("deleted book {book} from shelf {shelf}"),
        Outcome::Health(status) => status.clone(),
    }
}

fn lines(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join("\n")
}

/// Proto3 JSON of the response message (int64 as strings, defaults included).
fn render_json(outcome: &Outcome) -> anyhow::Result<String> {
    let (name, bytes) = match outcome {
        Outcome::Shelves(m) => ("ListShelvesResponse", m.encode_to_vec()),
        Outcome::Shelf(m) => ("Shelf", m.encode_to_vec()),
        Outcome::Books(m) => ("ListBooksResponse", m.encode_to_vec()),
        Outcome::Book(m) => ("Book", m.encode_to_vec()),
        Outcome::ShelfDeleted { .. } | Outcome::BookDeleted { .. } => return Ok("{}".to_owned()),
        Outcome::Health(status) => return Ok(serde_json::json!({ "status": status }).to_string()),
    };
    let pool = DescriptorPool::decode(bookstore::FILE_DESCRIPTOR_SET)?;
    let full_name = format!("endpoints.examples.bookstore.{name}");
    let descriptor = pool
        .get_message_by_name(&full_name)
        .ok_or_else(|| anyhow::anyhow!("{full_name} is not in the descriptor set"))?;
    let message = DynamicMessage::decode(descriptor, bytes.as_slice())?;
    let options = SerializeOptions::new().skip_default_fields(false);
    // Straight to text, so fields keep their proto order.
    let mut out = Vec::new();
    message.serialize_with_options(&mut serde_json::Serializer::new(&mut out), &options)?;
    Ok(String::from_utf8(out)?)
}
