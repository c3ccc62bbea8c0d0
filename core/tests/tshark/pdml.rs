//! Reading tshark's PDML output: every protocol and field of every packet, with its position,
//! size, displayed value (`show`) and raw bytes (`value`).

use roxmltree::{Document, Node};

/// The `<packet>` elements, in capture order.
pub(crate) fn packets<'a, 'i>(doc: &'a Document<'i>) -> Vec<Node<'a, 'i>> {
    doc.root_element()
        .children()
        .filter(|n| n.has_tag_name("packet"))
        .collect()
}

/// The `<proto>` of the given name in a packet.
pub(crate) fn proto<'a, 'i>(packet: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    packet
        .children()
        .find(|n| n.has_tag_name("proto") && n.attribute("name") == Some(name))
}

/// Every field of the given name under `scope`, in document order.
pub(crate) fn fields<'a, 'i>(scope: Node<'a, 'i>, name: &str) -> Vec<Node<'a, 'i>> {
    scope
        .descendants()
        .filter(|n| n.has_tag_name("field") && n.attribute("name") == Some(name))
        .collect()
}

/// Every unnamed (text) field under `scope` whose displayed text starts with `prefix`.
pub(crate) fn text_items<'a, 'i>(scope: Node<'a, 'i>, prefix: &str) -> Vec<Node<'a, 'i>> {
    scope
        .descendants()
        .filter(|n| {
            n.has_tag_name("field")
                && n.attribute("name") == Some("")
                && show(*n).starts_with(prefix)
        })
        .collect()
}

/// Every element under `scope` (fields and protocols) whose name starts with `prefix`.
pub(crate) fn any_named<'a, 'i>(scope: Node<'a, 'i>, prefix: &str) -> Vec<Node<'a, 'i>> {
    scope
        .descendants()
        .filter(|n| n.attribute("name").is_some_and(|a| a.starts_with(prefix)))
        .collect()
}

/// The `show` attribute: the value as tshark displays it.
pub(crate) fn show<'a>(n: Node<'a, '_>) -> &'a str {
    n.attribute("show").unwrap_or("")
}

/// The `showname` attribute: the whole line as tshark displays it.
pub(crate) fn showname<'a>(n: Node<'a, '_>) -> &'a str {
    n.attribute("showname").unwrap_or("")
}

/// The `pos` attribute: the field's offset in the frame.
pub(crate) fn pos(n: Node<'_, '_>) -> Option<usize> {
    n.attribute("pos")?.parse().ok()
}

/// The `size` attribute: the field's length in the frame.
pub(crate) fn size(n: Node<'_, '_>) -> Option<usize> {
    n.attribute("size")?.parse().ok()
}

/// The `value` attribute (the field's bytes, in hex) decoded.
pub(crate) fn value_bytes(n: Node<'_, '_>) -> Option<Vec<u8>> {
    hex(n.attribute("value")?)
}

/// Decodes a string of hex digits, with or without `:` separators.
pub(crate) fn hex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s.bytes().filter(|&b| b != b':').collect();
    if digits.len() % 2 != 0 {
        return None;
    }
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

/// A displayed number: `0x`-prefixed hexadecimal or decimal.
pub(crate) fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}
