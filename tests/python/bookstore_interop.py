#!/usr/bin/env python3
"""Calls the Bookstore API with Python's grpcio, the way the ESP tutorials' client does.

Usage: bookstore_interop.py HOST:PORT [--auth-token T] [--api-key K]
                            [--expect-error CODE [--expect-message MSG]]

Stubs are generated at run time from examples/bookstore/proto with grpc_tools.protoc into a
temporary directory, so the check always uses the proto in the tree. Without --expect-error it
calls all 8 methods against a server holding the seed data and checks every result, including
NOT_FOUND for unknown ids; it cleans up what it creates. With --expect-error it makes one
ListShelves call and checks that it fails with that code (and message, if given), for checking
a proxy's rejections from a non-Rust client.

Exit status: 0 when every check passed; 1 with a "FAIL: ..." line on stderr otherwise; 2 when the
stubs cannot be generated or the command line is wrong.
"""

import argparse
import importlib
import sys
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO / "examples" / "bookstore" / "proto"


class CheckFailed(Exception):
    pass


def generate_stubs(out_dir):
    """Runs grpc_tools.protoc on bookstore.proto and the vendored google/api files."""
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        "bookstore.proto",
        "google/api/annotations.proto",
        "google/api/http.proto",
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"error: grpc_tools.protoc failed on {PROTO_DIR / 'bookstore.proto'}")
    sys.path.insert(0, str(out_dir))
    return importlib.import_module("bookstore_pb2"), importlib.import_module("bookstore_pb2_grpc")


class Checker:
    def __init__(self, stub, pb, metadata, timeout):
        self.stub = stub
        self.pb = pb
        self.metadata = metadata
        self.timeout = timeout
        self.passed = 0

    def call(self, method, request):
        return getattr(self.stub, method)(request, metadata=self.metadata, timeout=self.timeout)

    def ok(self, method, request):
        import grpc

        try:
            return self.call(method, request)
        except grpc.RpcError as err:
            raise CheckFailed(f"{method}: {err.code().name}: {err.details()}") from None

    def expect(self, what, got, want):
        if got != want:
            raise CheckFailed(f"{what}: got {got!r}, want {want!r}")
        self.passed += 1

    def expect_error(self, method, request, code_name, message=None):
        import grpc

        try:
            reply = self.call(method, request)
        except grpc.RpcError as err:
            self.expect(f"{method} status code", err.code().name, code_name)
            if message is not None:
                self.expect(f"{method} status message", err.details(), message)
            return
        raise CheckFailed(f"{method}: succeeded with {reply!r}, want {code_name}")


def shelf_tuple(shelf):
    return (shelf.id, shelf.theme)


def book_tuple(book):
    return (book.id, book.author, book.title)


def check_all_methods(c):
    pb = c.pb
    empty = importlib.import_module("google.protobuf.empty_pb2").Empty()

    # Seed data.
    shelves = [shelf_tuple(s) for s in c.ok("ListShelves", empty).shelves]
    c.expect("seed shelves", shelves[:2], [(1, "Fiction"), (2, "Fantasy")])
    c.expect(
        "seed book 1/1",
        book_tuple(c.ok("GetBook", pb.GetBookRequest(shelf=1, book=1))),
        (1, "Neal Stephenson", "README"),
    )
    c.expect(
        "seed books of shelf 2",
        [book_tuple(b) for b in c.ok("ListBooks", pb.ListBooksRequest(shelf=2)).books],
        [(1, "George R.R. Martin", "A Game of Thrones")],
    )

    # Create, read, delete.
    theme = f"Interop {uuid.uuid4().hex[:8]} ✓"
    shelf = c.ok("CreateShelf", pb.CreateShelfRequest(shelf=pb.Shelf(theme=theme)))
    c.expect("created shelf theme", shelf.theme, theme)
    if shelf.id <= 2:
        raise CheckFailed(f"CreateShelf: got id {shelf.id}, want a new id above the seed")
    c.expect("GetShelf", shelf_tuple(c.ok("GetShelf", pb.GetShelfRequest(shelf=shelf.id))),
             (shelf.id, theme))
    listed = [shelf_tuple(s) for s in c.ok("ListShelves", empty).shelves]
    c.expect("ListShelves has the new shelf", (shelf.id, theme) in listed, True)

    book = c.ok("CreateBook", pb.CreateBookRequest(
        shelf=shelf.id, book=pb.Book(author="Python grpcio", title="Interop")))
    c.expect("created book", (book.author, book.title), ("Python grpcio", "Interop"))
    c.expect("GetBook", book_tuple(c.ok("GetBook", pb.GetBookRequest(shelf=shelf.id, book=book.id))),
             book_tuple(book))
    c.expect("ListBooks",
             [book_tuple(b) for b in c.ok("ListBooks", pb.ListBooksRequest(shelf=shelf.id)).books],
             [book_tuple(book)])
    c.ok("DeleteBook", pb.DeleteBookRequest(shelf=shelf.id, book=book.id))
    c.expect_error("GetBook", pb.GetBookRequest(shelf=shelf.id, book=book.id), "NOT_FOUND")
    c.expect("ListBooks after DeleteBook",
             list(c.ok("ListBooks", pb.ListBooksRequest(shelf=shelf.id)).books), [])
    c.ok("DeleteShelf", pb.DeleteShelfRequest(shelf=shelf.id))

    # Unknown ids: NOT_FOUND on every method that takes one.
    gone = shelf.id
    c.expect_error("GetShelf", pb.GetShelfRequest(shelf=gone), "NOT_FOUND")
    c.expect_error("DeleteShelf", pb.DeleteShelfRequest(shelf=gone), "NOT_FOUND")
    c.expect_error("ListBooks", pb.ListBooksRequest(shelf=gone), "NOT_FOUND")
    c.expect_error("CreateBook", pb.CreateBookRequest(
        shelf=gone, book=pb.Book(author="a", title="t")), "NOT_FOUND")
    c.expect_error("GetBook", pb.GetBookRequest(shelf=1, book=999999), "NOT_FOUND")
    c.expect_error("DeleteBook", pb.DeleteBookRequest(shelf=1, book=999999), "NOT_FOUND")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="HOST:PORT of the server or proxy")
    parser.add_argument("--auth-token", "--auth_token", help="sent as authorization: Bearer T")
    parser.add_argument("--api-key", "--api_key", help="sent as x-api-key")
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline of each call (s)")
    parser.add_argument("--expect-error", metavar="CODE",
                        help="expect ListShelves to fail with this code (e.g. UNAUTHENTICATED)")
    parser.add_argument("--expect-message", help="with --expect-error: the exact status message")
    args = parser.parse_args()

    try:
        import grpc
    except ImportError as err:
        print(f"FAIL: grpcio is not installed: {err} (run scripts/python-env.sh)", file=sys.stderr)
        return 1

    metadata = []
    if args.api_key is not None:
        metadata.append(("x-api-key", args.api_key))
    if args.auth_token is not None:
        metadata.append(("authorization", f"Bearer {args.auth_token}"))

    with tempfile.TemporaryDirectory(prefix="bookstore-stubs-") as out_dir:
        pb, pb_grpc = generate_stubs(out_dir)
        with grpc.insecure_channel(args.target) as channel:
            checker = Checker(pb_grpc.BookstoreStub(channel), pb, metadata, args.timeout)
            try:
                if args.expect_error:
                    empty = importlib.import_module("google.protobuf.empty_pb2").Empty()
                    checker.expect_error("ListShelves", empty, args.expect_error,
                                         args.expect_message)
                else:
                    check_all_methods(checker)
            except CheckFailed as err:
                print(f"FAIL: {err}", file=sys.stderr)
                return 1
    print(f"ok: {checker.passed} checks passed against {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
