"""Hardened XML parsing: the only place migplan turns untrusted bytes into lxml trees.

Every document migplan reads (host capabilities, domain XML, user files) may come
from a host or a person we do not control.  So: no DTD, no entity resolution,
no network access, a bounded size, and a clear ``InputError`` for everything
that is not well-formed XML.  No lxml element leaves the parsing modules.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

from lxml import etree

from planner.errors import InputError

#: Largest document accepted (bytes).  100,000 hosts of capabilities-sized
#: ``<cpu>`` elements are ~80 MiB; anything past this is refused, not read.
MAX_DOCUMENT_BYTES = 512 * 1024 * 1024

# libvirt never emits a DTD; a DOCTYPE or ENTITY declaration in what claims to
# be libvirt XML is either a mistake or an attack (XXE, billion laughs).
_DTD_RE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_XML_DECL_RE = re.compile(rb"<\?xml[^>]*\?>")


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        # Whitespace between elements is layout (libvirt reads text with
        # string(), which leaf whitespace keeps); dropping it makes the trees
        # of large concatenated files a third cheaper to build.
        remove_blank_text=True,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )


_local = threading.local()


def _shared_parser() -> etree.XMLParser:
    """This thread's parser, made once (lxml parsers must not be shared
    between threads).  Making a parser costs a third of parsing a guest's few
    KB, and a large load parses 100,000 of them; the options never change and
    libxml2 resets the parser's state for every document."""
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = _parser()
    return parser


def check_document(data: bytes, source: str, *, limit: int = MAX_DOCUMENT_BYTES) -> None:
    """What ``parse_document`` refuses before parsing (too large, empty, binary,
    DTD/ENTITY); also for bytes that are used without parsing (guest digests)."""
    if len(data) > limit:
        raise InputError(
            f"{source}: {len(data)} bytes is larger than the {limit}-byte limit for one document"
        )
    if not data or data.isspace():  # (no copy, unlike strip())
        raise InputError(f"{source}: the file is empty")
    if b"\x00" in data:
        raise InputError(f"{source}: binary data, not XML")
    if b"<!" in data and _DTD_RE.search(data):
        raise InputError(
            f"{source}: DOCTYPE/ENTITY declarations are refused (libvirt XML never has them)"
        )


def _syntax_error(source: str, err: etree.XMLSyntaxError, line_offset: int = 0) -> InputError:
    msg = str(err.msg) if err.msg else "malformed XML"
    # The documents of a file are read inside a <container> of migplan's own
    # (as virsh does): a truncated file shows up as a tag mismatch with it.
    msg = re.sub(r" and container(, line \d+, column \d+)?$", " and the end of the file", msg)
    line = err.lineno + line_offset if err.lineno else err.lineno
    where = f" (line {line})" if line else ""
    return InputError(f"{source}: not well-formed XML{where}: {msg}")


def parse_document(data: bytes, source: str, *, limit: int = MAX_DOCUMENT_BYTES) -> etree._Element:
    """Parse one XML document and return its root element."""
    check_document(data, source, limit=limit)
    try:
        return etree.fromstring(data, _shared_parser())
    except etree.XMLSyntaxError as err:
        raise _syntax_error(source, err) from None
    except ValueError as err:  # e.g. unicode strings with encoding declarations
        raise InputError(f"{source}: {err}") from None


def _concatenated_body(data: bytes, source: str, limit: int) -> bytes:
    check_document(data, source, limit=limit)
    body = _XML_DECL_RE.sub(b"", data)
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    return body


def parse_concatenated(
    data: bytes, source: str, *, limit: int = MAX_DOCUMENT_BYTES
) -> etree._Element:
    """Parse a file that may hold several XML documents one after another.

    ``virsh capabilities >> all.xml`` on many hosts yields such a file.  Like
    virsh's own ``cpu-baseline`` reader, the documents are wrapped in a
    ``<container>`` element; unlike virsh, every XML declaration is dropped (not
    just a leading one), so files concatenated from tools that print one work.
    """
    body = _concatenated_body(data, source, limit)
    try:
        return etree.fromstring(b"<container>" + body + b"</container>", _parser())
    except etree.XMLSyntaxError as err:
        raise _syntax_error(source, err) from None


#: The first element of a (concatenated) file: its documents end with its end tag.
_FIRST_TAG_RE = re.compile(rb"<([A-Za-z_][A-Za-z0-9_.:-]*)")
CHUNK_BYTES = 2 * 1024 * 1024
_CUT_ATTEMPTS = 3


def parse_concatenated_chunks(
    data: bytes, source: str, *, limit: int = MAX_DOCUMENT_BYTES, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[etree._Element]:
    """``parse_concatenated`` in pieces: yields ``<container>`` roots whose
    children, in order, are exactly the children ``parse_concatenated`` gives.

    One lxml tree of 100,000 capabilities documents costs seconds and gigabytes
    (libxml2 slows down as one tree grows); pieces of a few MiB stay fast and
    can be dropped as soon as they are read.  A cut is taken after a document's
    end tag and kept only when the piece before it parses on its own: well-formed
    content ending in '>' is balanced, so the cut lies between two top-level
    nodes (never inside a comment, CDATA, PI or element) and the pieces'
    children concatenate to the whole file's.  When a piece does not parse, the
    rest of the file is parsed at once, so errors are the same as for the whole.
    """
    body = _concatenated_body(data, source, limit)
    parser = _parser()
    first = _FIRST_TAG_RE.search(body)
    doc_end = re.compile(b"</" + re.escape(first.group(1)) + rb"\s*>") if first else None
    start = 0
    n = len(body)
    while start < n:
        root = None
        pos = start + chunk_bytes
        for _ in range(_CUT_ATTEMPTS):
            if doc_end is None or n - start <= 2 * chunk_bytes:
                break
            m = doc_end.search(body, pos)
            if m is None:
                break
            try:
                root = etree.fromstring(b"<container>" + body[start:m.end()] + b"</container>",
                                        parser)
            except etree.XMLSyntaxError:
                pos = m.end()  # not between documents (nested, in a comment...): next one
                continue
            end = m.end()
            break
        if root is None:  # the rest at once: same tree, or the same error, as the whole
            end = n
            try:
                root = etree.fromstring(b"<container>" + body[start:] + b"</container>", parser)
            except etree.XMLSyntaxError as err:
                raise _syntax_error(source, err, body.count(b"\n", 0, start)) from None
        yield root
        start = end


def parse_concatenated_unique(
    data: bytes, source: str, *, limit: int = MAX_DOCUMENT_BYTES
) -> Iterator[tuple[int, etree._Element]]:
    """``parse_concatenated`` for files that repeat the same documents many times.

    Yields ``(key, root)`` in file order: ``<container>`` roots whose children,
    in order, are those of ``parse_concatenated(data)``; a repeated document
    yields the same key and the same (already parsed) root again, so a caller
    can compute once per key.

    A cluster's hosts print a handful of distinct ``<cpu>``s, so the file is
    cut after each end tag of its first element and each distinct piece is
    parsed once.  Every distinct piece must parse on its own, so every cut lies
    between two top-level nodes (balanced content ends there; see
    ``parse_concatenated_chunks``) and the concatenation is the same tree.
    When the file does not cut that way or repeats little, it is parsed in
    chunks (``parse_concatenated_chunks``: lazily, same errors as at once).
    """
    body = _concatenated_body(data, source, limit)
    first = _FIRST_TAG_RE.search(body)
    if first is not None:
        doc_end = re.compile(b"</" + re.escape(first.group(1)) + rb"\s*>")
        index: dict[bytes, int] = {}
        pieces: list[bytes] = []
        sequence: list[int] = []
        prev = 0
        ends = [m.end() for m in doc_end.finditer(body)]
        if ends and ends[-1] < len(body) and body[ends[-1]:].strip(b" \t\r\n"):
            ends.append(len(body))
        for end in ends:
            # Whitespace around top-level nodes is container-level layout.
            piece = body[prev:end].strip(b" \t\r\n")
            prev = end
            i = index.get(piece)
            if i is None:
                if len(pieces) > len(ends) // 2:
                    break  # repeats little: chunks are cheaper than many tiny parses
                i = index[piece] = len(pieces)
                pieces.append(piece)
            sequence.append(i)
        else:
            del index
            parser = _parser()
            roots: list[etree._Element] = []
            try:
                for piece in pieces:
                    roots.append(etree.fromstring(b"<container>" + piece + b"</container>",
                                                  parser))
            except etree.XMLSyntaxError:
                pass  # not cut between documents, or malformed: the general path says which
            else:
                if roots:
                    for i in sequence:
                        yield i, roots[i]
                    return
    for n, root in enumerate(parse_concatenated_chunks(data, source, limit=limit)):
        yield -1 - n, root
