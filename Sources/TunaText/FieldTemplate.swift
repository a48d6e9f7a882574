import Foundation

/// A string with `{column}` placeholders, e.g. `"{quote} - {author}"`. `{{` and `}}` stand
/// for literal braces. Parsed once per data set; filled once per row.
struct FieldTemplate: Sendable, Equatable {
    enum Piece: Sendable, Equatable {
        case literal(String)
        case column(String)
    }

    let pieces: [Piece]

    /// Columns the template reads.
    var columns: [String] {
        pieces.compactMap { if case let .column(name) = $0 { return name } else { return nil } }
    }

    init(_ template: String) throws(TextError) {
        var pieces: [Piece] = []
        var literal = ""
        var chars = template[...]
        while let c = chars.popFirst() {
            if c == "{" {
                if chars.first == "{" {
                    chars.removeFirst()
                    literal.append("{")
                    continue
                }
                guard let close = chars.firstIndex(of: "}") else {
                    throw .invalidSpec(reason: "template \(template.debugDescription): unclosed '{'")
                }
                let name = String(chars[..<close])
                guard !name.isEmpty, !name.contains("{") else {
                    throw .invalidSpec(reason: "template \(template.debugDescription): bad placeholder {\(name)}")
                }
                if !literal.isEmpty { pieces.append(.literal(literal)) }
                literal = ""
                pieces.append(.column(name))
                chars = chars[chars.index(after: close)...]
            } else if c == "}" {
                guard chars.first == "}" else {
                    throw .invalidSpec(reason: "template \(template.debugDescription): unmatched '}' (write '}}')")
                }
                chars.removeFirst()
                literal.append("}")
            } else {
                literal.append(c)
            }
        }
        if !literal.isEmpty { pieces.append(.literal(literal)) }
        self.pieces = pieces
    }

    /// Fills the placeholders; `value` returns a column's text or throws (missing column,
    /// unsupported type) with the row's location.
    func fill(_ value: (String) throws(TextError) -> String) throws(TextError) -> String {
        var out = ""
        for piece in pieces {
            switch piece {
            case let .literal(text): out += text
            case let .column(name): out += try value(name)
            }
        }
        return out
    }
}
