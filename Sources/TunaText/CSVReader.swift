import Foundation

/// RFC 4180 CSV: comma-separated fields, records ended by CRLF or LF, fields optionally in
/// double quotes where `""` is a literal quote and commas / line breaks are data.
///
/// Strict where leniency would hide corruption: a quote inside an unquoted field, text after
/// a closing quote, an unterminated quoted field, invalid UTF-8 and a record whose field
/// count differs from the header's are errors naming the file and line. Every record is
/// reported with the line it starts on, so multi-line fields keep later line numbers right.
struct CSVReader {
    struct Record: Equatable {
        /// 1-based line where the record starts.
        var line: Int
        var fields: [String]
    }

    let path: String

    /// Parses `bytes`; the first record is the header. A leading UTF-8 BOM is skipped.
    func parse(_ bytes: [UInt8]) throws(TextError) -> (header: [String], records: [Record]) {
        var records: [Record] = []
        var i = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        var line = 1
        let n = bytes.count
        while i < n {
            let recordLine = line
            var fields: [String] = []
            var field: [UInt8] = []
            var atRecordEnd = false
            while !atRecordEnd {
                if i < n, bytes[i] == 0x22 {  // quoted field
                    let quoteLine = line
                    i += 1
                    var closed = false
                    while i < n {
                        let b = bytes[i]
                        if b == 0x22 {
                            if i + 1 < n, bytes[i + 1] == 0x22 {
                                field.append(0x22)
                                i += 2
                                continue
                            }
                            i += 1
                            closed = true
                            break
                        }
                        if b == 0x0A { line += 1 }
                        field.append(b)
                        i += 1
                    }
                    guard closed else {
                        throw .malformedRow(path: path, line: quoteLine, reason: "unterminated quoted field")
                    }
                    if i < n, bytes[i] != 0x2C, bytes[i] != 0x0A, !(bytes[i] == 0x0D && i + 1 < n && bytes[i + 1] == 0x0A) {
                        throw .malformedRow(path: path, line: line, reason: "unexpected text after closing quote")
                    }
                } else {  // unquoted field: up to the next comma or line end
                    while i < n, bytes[i] != 0x2C, bytes[i] != 0x0A {
                        if bytes[i] == 0x0D, i + 1 < n, bytes[i + 1] == 0x0A { break }
                        if bytes[i] == 0x22 {
                            throw .malformedRow(path: path, line: line, reason: "quote inside an unquoted field")
                        }
                        field.append(bytes[i])
                        i += 1
                    }
                }
                fields.append(try text(field, line: recordLine))
                field.removeAll(keepingCapacity: true)
                if i < n, bytes[i] == 0x2C {
                    i += 1  // the next iteration reads the following (possibly empty) field
                    continue
                }
                // Line end (CRLF or LF) or end of file.
                if i < n, bytes[i] == 0x0D { i += 1 }
                if i < n, bytes[i] == 0x0A {
                    i += 1
                    line += 1
                }
                atRecordEnd = true
            }
            records.append(Record(line: recordLine, fields: fields))
        }
        guard let header = records.first else {
            throw .malformedRow(path: path, line: 1, reason: "empty CSV file (no header row)")
        }
        if let duplicate = Dictionary(grouping: header.fields, by: { $0 }).first(where: { $0.value.count > 1 }) {
            throw .malformedRow(path: path, line: header.line, reason: "duplicate column \(duplicate.key.debugDescription) in header")
        }
        let body = Array(records.dropFirst())
        for record in body where record.fields.count != header.fields.count {
            // A blank line is one empty field; the loader counts it as an empty row instead.
            if record.fields == [""] { continue }
            throw .malformedRow(path: path, line: record.line,
                                reason: "expected \(header.fields.count) fields (as in the header), found \(record.fields.count)")
        }
        return (header.fields, body)
    }

    private func text(_ bytes: [UInt8], line: Int) throws(TextError) -> String {
        guard let s = String(validating: bytes, as: UTF8.self) else {
            throw .malformedRow(path: path, line: line, reason: "invalid UTF-8")
        }
        return s
    }
}
