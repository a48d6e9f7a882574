import Foundation

/// Reader for tiktoken's `.tiktoken` ranks files: one `base64(token bytes) SP rank` per line.
enum TiktokenFile {
    /// Parses the file at `url` into a ranks table.
    static func load(_ url: URL) throws(TextError) -> RankTable {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw .tokenizerFile(path: url.path, line: nil, reason: "cannot read: \(error.localizedDescription)")
        }
        return try parse([UInt8](data), path: url.path)
    }

    /// Parses the contents of a `.tiktoken` file. `path` is only used in error messages.
    static func parse(_ bytes: [UInt8], path: String) throws(TextError) -> RankTable {
        var entries: [(bytes: [UInt8], rank: Int)] = []
        entries.reserveCapacity(bytes.count / 16)
        var lineNumber = 0
        var lineStart = 0
        while lineStart < bytes.count {
            lineNumber += 1
            var lineEnd = lineStart
            while lineEnd < bytes.count, bytes[lineEnd] != 0x0A { lineEnd += 1 }
            var contentEnd = lineEnd
            if contentEnd > lineStart, bytes[contentEnd - 1] == 0x0D { contentEnd -= 1 }  // CRLF files
            defer { lineStart = lineEnd + 1 }
            if contentEnd == lineStart { continue }  // tiktoken skips empty lines too

            guard let space = bytes[lineStart..<contentEnd].firstIndex(of: 0x20) else {
                throw .tokenizerFile(path: path, line: lineNumber, reason: "expected '<base64 token> <rank>'")
            }
            guard let token = Base64.decode(bytes[lineStart..<space]), !token.isEmpty else {
                throw .tokenizerFile(path: path, line: lineNumber, reason: "invalid base64 token")
            }
            guard let rankText = String(bytes: bytes[(space + 1)..<contentEnd], encoding: .ascii),
                  let rank = Int(rankText), rank >= 0
            else {
                throw .tokenizerFile(path: path, line: lineNumber, reason: "invalid rank")
            }
            entries.append((token, rank))
        }
        guard !entries.isEmpty else {
            throw .tokenizerFile(path: path, line: nil, reason: "no tokens in file")
        }
        do {
            return try RankTable(entries: entries)
        } catch {
            throw .tokenizerFile(path: path, line: nil, reason: error.reason)
        }
    }
}

/// Minimal standard base64 decoding (with `=` padding), without going through `Data`:
/// the vocabulary has 200k lines and this runs on every process start.
enum Base64 {
    private static let values: [Int8] = {
        var table = [Int8](repeating: -1, count: 256)
        for (i, c) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8.enumerated() {
            table[Int(c)] = Int8(i)
        }
        return table
    }()

    /// Decoded bytes, or nil when `text` is not valid padded base64.
    static func decode(_ text: ArraySlice<UInt8>) -> [UInt8]? {
        guard text.count % 4 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(text.count / 4 * 3)
        var index = text.startIndex
        while index < text.endIndex {
            var quad: UInt32 = 0
            var padding = 0
            for k in 0..<4 {
                let c = text[index + k]
                if c == 0x3D {  // '=' only in the last two positions of the last quad
                    guard k >= 2, index + 4 == text.endIndex else { return nil }
                    padding += 1
                    quad <<= 6
                    continue
                }
                guard padding == 0 else { return nil }
                let v = values[Int(c)]
                if v < 0 { return nil }
                quad = quad << 6 | UInt32(v)
            }
            out.append(UInt8(quad >> 16 & 0xFF))
            if padding < 2 { out.append(UInt8(quad >> 8 & 0xFF)) }
            if padding < 1 { out.append(UInt8(quad & 0xFF)) }
            index += 4
        }
        return out
    }
}
