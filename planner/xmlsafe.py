"""Hardened XML parsing: the only place migplan turns untrusted bytes into lxml trees.

Every document migplan reads (host capabilities, domain XML, user files) may come
from a host or a person we do not control.  So: no DTD, no entity resolution,
no network access, a bounded size, and a clear ``InputError`` for everything
that is not well-formed XML.  No lxml element leaves the parsing modules.
"""

from __future__ import annotations

import re

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
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )


def _check(data: bytes, source: str, limit: int) -> None:
    if len(data) > limit:
        raise InputError(
            f"{source}: {len(data)} bytes is larger than the {limit}-byte limit for one document"
        )
    if not data.strip():
        raise InputError(f"{source}: the file is empty")
    if b"\x00" in data:
        raise InputError(f"{source}: binary data, not XML")
    if _DTD_RE.search(data):
        raise InputError(
            f"{source}: DOCTYPE/ENTITY declarations are refused (libvirt XML never has them)"
        )


def _syntax_error(source: str, err: etree.XMLSyntaxError) -> InputError:
    msg = str(err.msg) if err.msg else "malformed XML"
    line = err.lineno
    where = f" (line {line})" if line else ""
    return InputError(f"{source}: not well-formed XML{where}: {msg}")


def parse_document(data: bytes, source: str, *, limit: int = MAX_DOCUMENT_BYTES) -> etree._Element:
    """Parse one XML document and return its root element."""
    _check(data, source, limit)
    try:
        return etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as err:
        raise _syntax_error(source, err) from None
    except ValueError as err:  # e.g. unicode strings with encoding declarations
        raise InputError(f"{source}: {err}") from None


def parse_concatenated(
    data: bytes, source: str, *, limit: int = MAX_DOCUMENT_BYTES
) -> etree._Element:
    """Parse a file that may hold several XML documents one after another.

    ``virsh capabilities >> all.xml`` on many hosts yields such a file.  Like
    virsh's own ``cpu-baseline`` reader, the documents are wrapped in a
    ``<container>`` element; unlike virsh, every XML declaration is dropped (not
    just a leading one), so files concatenated from tools that print one work.
    """
    _check(data, source, limit)
    body = _XML_DECL_RE.sub(b"", data)
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    wrapped = b"<container>" + body + b"</container>"
    try:
        return etree.fromstring(wrapped, _parser())
    except etree.XMLSyntaxError as err:
        raise _syntax_error(source, err) from None
