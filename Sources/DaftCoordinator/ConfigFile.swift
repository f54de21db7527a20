import Foundation

/// A value read from a `--config` file: a string, integer, float, boolean or array of values.
public enum ConfigValue: Equatable, Sendable, CustomStringConvertible {
    /// A quoted (or, in YAML, plain) string.
    case string(String)
    /// An integer.
    case int(Int)
    /// A floating-point number.
    case double(Double)
    /// `true` / `false`.
    case bool(Bool)
    /// An array (`[a, b]`, or a YAML `- item` list).
    case array([ConfigValue])

    /// The value as it would be written as a command-line argument: strings verbatim, numbers in Swift's
    /// shortest round-tripping form, booleans as `true`/`false`, arrays comma-joined.
    public var description: String {
        switch self {
        case .string(let s): return s
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        case .bool(let b): return b ? "true" : "false"
        case .array(let items): return items.map(\.description).joined(separator: ",")
        }
    }
}

/// A problem in a config file: `description` is one line, `FILE:LINE: what is wrong`.
public struct ConfigFileError: Error, Equatable, Sendable, CustomStringConvertible, LocalizedError {
    /// The file's path as given.
    public let path: String
    /// The 1-based line number, or nil for problems with the file as a whole.
    public let line: Int?
    /// What is wrong.
    public let message: String

    /// Creates an error.
    public init(path: String, line: Int?, message: String) {
        self.path = path
        self.line = line
        self.message = message
    }

    /// `PATH:LINE: message` (or `PATH: message`).
    public var description: String {
        if let line { return "\(path):\(line): \(message)" }
        return "\(path): \(message)"
    }

    /// Same as `description`.
    public var errorDescription: String? { description }
}

/// Reads `--config FILE` (TOML or YAML, chosen by the extension) and merges it with the command line.
///
/// Both formats produce a flat dictionary of dotted keys: TOML `[ood]` + `rotate = "…"` and YAML
/// `ood:` + indented `rotate: …` both give `ood.rotate`. Supported TOML: `key = value` with basic
/// (`"…"`, with escapes) and literal (`'…'`) strings, integers (decimal, `0x`, `0o`, `0b`, `_` separators),
/// floats (incl. `inf`/`nan`), booleans, arrays (may span lines, may nest), `# comments`, `[table]` and
/// `[a.b]` headers, dotted and quoted keys. Not supported (reported as errors): multi-line strings,
/// inline tables, arrays of tables, dates. Supported YAML: `key: value` mappings, nested mappings by
/// indentation, block lists (`- item`, indented or at the key's indentation), one-line flow lists
/// (`[a, "b", 3]`), single/double-quoted and plain scalars (plain `true`/`false`, integers and floats are
/// typed; anything else is a string), `# comments`, a leading `---`. Not supported (reported as errors):
/// block scalars (`|`, `>`), anchors/aliases, tags, flow mappings, mappings inside lists, multi-line plain
/// scalars, null values, several documents, tab indentation.
///
/// Turning a config into arguments (`mergedArguments`): a key `batch_size`/`batch-size` becomes
/// `--batch-size VALUE` (`_` is normalised to `-`); an array repeats the flag once per item; `true` gives
/// the bare flag, `false` gives nothing; a value starting with `-` is passed as `--flag=VALUE` so it is not
/// taken for an option. A key inside a table, `ood.rotate = "fashion-mnist:test@rotate"`, becomes
/// `--ood rotate=fashion-mnist:test@rotate` (the table name is the flag, the rest of the key and the
/// value are joined by `=`; only the table name is normalised). Command-line flags win: every config key
/// whose flag appears on the command line (as `--flag`, `--flag=…`, or its `--no-flag` inverse) is dropped,
/// including all keys of a table (`--ood` on the command line replaces every `ood.*`). A `config` key is
/// ignored (no nested configs).
public enum ConfigFile {
    /// Parses `url` as TOML (`.toml`) or YAML (`.yaml`, `.yml`) into dotted keys → values.
    /// Throws `ConfigFileError` (one line naming the file, and the line number when there is one).
    public static func load(_ url: URL) throws -> [String: ConfigValue] {
        let path = url.path
        let ext = url.pathExtension.lowercased()
        guard ["toml", "yaml", "yml"].contains(ext) else {
            throw ConfigFileError(path: path, line: nil,
                                  message: "unsupported config file extension '.\(ext)' (use .toml, .yaml or .yml)")
        }
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            let reason = FileManager.default.fileExists(atPath: path) ? "cannot read the file" : "no such file"
            throw ConfigFileError(path: path, line: nil, message: reason)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigFileError(path: path, line: nil, message: "the file is not valid UTF-8")
        }
        return ext == "toml" ? try parseTOML(text, path: path) : try parseYAML(text, path: path)
    }

    /// Parses TOML text (the subset described on `ConfigFile`); `path` is used in error messages.
    public static func parseTOML(_ text: String, path: String = "<toml>") throws -> [String: ConfigValue] {
        var parser = TOMLParser(text: text, path: path)
        return try parser.parse()
    }

    /// Parses YAML text (the subset described on `ConfigFile`); `path` is used in error messages.
    public static func parseYAML(_ text: String, path: String = "<yaml>") throws -> [String: ConfigValue] {
        var parser = try YAMLParser(text: text, path: path)
        return try parser.parse()
    }

    /// The value of `--config FILE` / `--config=FILE` in `arguments` (before any `--`), if present.
    public static func configPath(in arguments: [String]) -> String? {
        var index = 0
        while index < arguments.count {
            let arg = arguments[index]
            if arg == "--" { return nil }
            if arg == "--config" { return index + 1 < arguments.count ? arguments[index + 1] : nil }
            if arg.hasPrefix("--config=") { return String(arg.dropFirst("--config=".count)) }
            index += 1
        }
        return nil
    }

    /// `commandLine` with the config's settings appended as arguments (before a `--` terminator if there
    /// is one), minus every config key whose flag the command line already gives. Keys are emitted in sorted
    /// order. See `ConfigFile` for how keys and values become arguments.
    public static func mergedArguments(commandLine: [String], config: [String: ConfigValue]) -> [String] {
        let terminator = commandLine.firstIndex(of: "--")
        let head = terminator.map { Array(commandLine[..<$0]) } ?? commandLine
        let tail = terminator.map { Array(commandLine[$0...]) } ?? []

        var given = Set<String>()
        for token in head where token.hasPrefix("--") && token.count > 2 {
            var name = String(token.dropFirst(2))
            if let eq = name.firstIndex(of: "=") { name = String(name[..<eq]) }
            name = normalise(name)
            given.insert(name)
            if name.hasPrefix("no-") { given.insert(String(name.dropFirst(3))) } else { given.insert("no-" + name) }
        }

        var extra: [String] = []
        for key in config.keys.sorted() {
            let value = config[key]!
            let flag: String
            let subKey: String?
            if let dot = key.firstIndex(of: ".") {
                flag = normalise(String(key[..<dot]))
                subKey = String(key[key.index(after: dot)...])
            } else {
                flag = normalise(key)
                subKey = nil
            }
            if flag.isEmpty || flag == "config" || given.contains(flag) { continue }
            let items: [ConfigValue]
            if case .array(let list) = value { items = list } else { items = [value] }
            for item in items {
                if let subKey {
                    extra += ["--" + flag, subKey + "=" + item.description]
                    continue
                }
                switch item {
                case .bool(true):
                    extra.append("--" + flag)
                case .bool(false):
                    break
                default:
                    let text = item.description
                    if text.hasPrefix("-") {
                        extra.append("--" + flag + "=" + text)
                    } else {
                        extra += ["--" + flag, text]
                    }
                }
            }
        }
        return head + extra + tail
    }

    private static func normalise(_ name: String) -> String {
        name.replacingOccurrences(of: "_", with: "-")
    }
}

// MARK: - Scalar helpers shared by both parsers

private enum ScalarSyntax {
    static func isDigit(_ c: Character) -> Bool { c.isASCII && c.isNumber }

    /// Decimal / 0x / 0o / 0b integer with optional sign and `_` between digits; nil if not an integer.
    /// Throws a message if it is an integer that does not fit in `Int`.
    static func integer(_ token: String, allowUnderscores: Bool) throws -> Int? {
        var body = Substring(token)
        var negative = false
        if body.first == "+" || body.first == "-" {
            negative = body.first == "-"
            body = body.dropFirst()
        }
        var radix = 10
        if body.count > 2, body.first == "0", let marker = body.dropFirst().first, "xob".contains(marker) {
            if token.first == "+" || token.first == "-" { return nil }
            radix = marker == "x" ? 16 : marker == "o" ? 8 : 2
            body = body.dropFirst(2)
        }
        guard !body.isEmpty else { return nil }
        if allowUnderscores {
            if body.first == "_" || body.last == "_" || body.contains("__") { return nil }
            body = Substring(body.replacingOccurrences(of: "_", with: ""))
        }
        let validDigits = body.allSatisfy { c in
            guard let v = c.hexDigitValue, c.isASCII else { return false }
            return v < radix
        }
        guard validDigits else { return nil }
        guard let magnitude = UInt64(body, radix: radix) else { throw ScalarProblem(message: "integer '\(token)' is out of range") }
        if negative {
            guard magnitude <= UInt64(Int.max) + 1 else { throw ScalarProblem(message: "integer '\(token)' is out of range") }
            return magnitude == UInt64(Int.max) + 1 ? Int.min : -Int(magnitude)
        }
        guard magnitude <= UInt64(Int.max) else { throw ScalarProblem(message: "integer '\(token)' is out of range") }
        return Int(magnitude)
    }

    /// `[+-]digits[.digits][e[+-]digits]` or `[+-].digits…`; nil if not a float in that form.
    static func decimalFloat(_ token: String) -> Double? {
        let chars = Array(token)
        var i = 0
        if i < chars.count, chars[i] == "+" || chars[i] == "-" { i += 1 }
        var intDigits = 0, fracDigits = 0
        while i < chars.count, isDigit(chars[i]) { i += 1; intDigits += 1 }
        var sawDot = false
        if i < chars.count, chars[i] == "." {
            sawDot = true
            i += 1
            while i < chars.count, isDigit(chars[i]) { i += 1; fracDigits += 1 }
        }
        guard intDigits + fracDigits > 0 else { return nil }
        var sawExponent = false
        if i < chars.count, chars[i] == "e" || chars[i] == "E" {
            sawExponent = true
            i += 1
            if i < chars.count, chars[i] == "+" || chars[i] == "-" { i += 1 }
            var expDigits = 0
            while i < chars.count, isDigit(chars[i]) { i += 1; expDigits += 1 }
            guard expDigits > 0 else { return nil }
        }
        guard i == chars.count, sawDot || sawExponent else { return nil }
        return Double(token)
    }
}

private struct ScalarProblem: Error {
    var message: String
}

// MARK: - TOML

private struct TOMLParser {
    let chars: [Character]
    let path: String
    var pos = 0
    var line = 1
    var result: [String: ConfigValue] = [:]
    var tables: Set<String> = []

    init(text: String, path: String) {
        var body = text
        if body.hasPrefix("\u{FEFF}") { body.removeFirst() }
        // "\r\n" is a single Character in Swift; split it so line handling only sees "\n".
        self.chars = Array(body.replacingOccurrences(of: "\r\n", with: "\n"))
        self.path = path
    }

    func fail(_ message: String, line: Int? = nil) -> ConfigFileError {
        ConfigFileError(path: path, line: line ?? self.line, message: message)
    }

    var atEnd: Bool { pos >= chars.count }
    var current: Character? { pos < chars.count ? chars[pos] : nil }

    mutating func skipSpaces() {
        while let c = current, c == " " || c == "\t" { pos += 1 }
    }

    mutating func skipComment() {
        if current == "#" {
            while let c = current, c != "\n" { pos += 1 }
        }
    }

    /// After a header or key/value: only spaces, a comment, then a newline or the end.
    mutating func expectEndOfLine(_ what: String) throws {
        skipSpaces()
        skipComment()
        if atEnd { return }
        if current == "\n" { pos += 1; line += 1; return }
        throw fail("unexpected text after \(what): '\(restOfLine())'")
    }

    func restOfLine() -> String {
        var end = pos
        while end < chars.count, chars[end] != "\n" { end += 1 }
        return String(chars[pos..<end]).trimmingCharacters(in: .whitespaces)
    }

    mutating func parse() throws -> [String: ConfigValue] {
        var prefix = ""
        while !atEnd {
            skipSpaces()
            guard let c = current else { break }
            if c == "#" { skipComment(); continue }
            if c == "\n" { pos += 1; line += 1; continue }
            if c == "[" {
                pos += 1
                if current == "[" { throw fail("arrays of tables ([[...]]) are not supported") }
                skipSpaces()
                let parts = try parseKey()
                skipSpaces()
                guard current == "]" else { throw fail("expected ']' to close the table header") }
                pos += 1
                let name = parts.joined(separator: ".")
                if tables.contains(name) { throw fail("table [\(name)] is defined twice") }
                tables.insert(name)
                prefix = name + "."
                try expectEndOfLine("the table header")
                continue
            }
            let keyLine = line
            let parts = try parseKey()
            skipSpaces()
            guard current == "=" else {
                if let c = current, c != "\n", c != "#", !chars[pos - 1].isWhitespace {
                    throw fail("invalid character '\(c)' in key (bare keys use A-Z a-z 0-9 _ -; quote other keys)")
                }
                throw fail("expected '=' after key '\(parts.joined(separator: "."))'")
            }
            pos += 1
            skipSpaces()
            let value = try parseValue()
            let key = prefix + parts.joined(separator: ".")
            if result[key] != nil { throw fail("duplicate key '\(key)'", line: keyLine) }
            result[key] = value
            try expectEndOfLine("the value")
        }
        return result
    }

    mutating func parseKey() throws -> [String] {
        var parts: [String] = []
        while true {
            skipSpaces()
            guard let c = current else { throw fail("expected a key") }
            if c == "\"" || c == "'" {
                if case .string(let s) = try parseString() { parts.append(s) }
            } else {
                var name = ""
                while let c = current, c.isASCII, c.isLetter || c.isNumber || c == "_" || c == "-" {
                    name.append(c)
                    pos += 1
                }
                if name.isEmpty {
                    if c == "\n" || c == "=" { throw fail("expected a key") }
                    throw fail("invalid character '\(c)' in key (bare keys use A-Z a-z 0-9 _ -; quote other keys)")
                }
                parts.append(name)
            }
            skipSpaces()
            if current == "." { pos += 1; continue }
            return parts
        }
    }

    mutating func parseString() throws -> ConfigValue {
        let quote = chars[pos]
        if pos + 2 < chars.count, chars[pos + 1] == quote, chars[pos + 2] == quote {
            throw fail("multi-line strings (\(String(repeating: quote, count: 3))) are not supported")
        }
        pos += 1
        var out = ""
        while true {
            guard let c = current, c != "\n" else { throw fail("unterminated string") }
            pos += 1
            if c == quote { return .string(out) }
            if c == "\\" && quote == "\"" {
                guard let e = current else { throw fail("unterminated string") }
                pos += 1
                switch e {
                case "\"": out.append("\"")
                case "\\": out.append("\\")
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "r": out.append("\r")
                case "b": out.append("\u{08}")
                case "f": out.append("\u{0C}")
                case "u", "U":
                    let count = e == "u" ? 4 : 8
                    guard pos + count <= chars.count,
                          let code = UInt32(String(chars[pos..<pos + count]), radix: 16),
                          let scalar = Unicode.Scalar(code) else {
                        throw fail("invalid \\\(e) escape in string")
                    }
                    out.unicodeScalars.append(scalar)
                    pos += count
                default:
                    throw fail("invalid escape '\\\(e)' in string")
                }
                continue
            }
            out.append(c)
        }
    }

    /// Skips spaces, newlines and comments inside an array.
    mutating func skipArraySpace() {
        while let c = current {
            if c == " " || c == "\t" { pos += 1 } else if c == "\n" { pos += 1; line += 1 } else if c == "#" { skipComment() } else { break }
        }
    }

    mutating func parseValue() throws -> ConfigValue {
        guard let c = current, c != "\n", c != "#" else { throw fail("missing value after '='") }
        switch c {
        case "\"", "'":
            return try parseString()
        case "[":
            let startLine = line
            pos += 1
            var items: [ConfigValue] = []
            while true {
                skipArraySpace()
                guard let next = current else { throw fail("unterminated array (opened on line \(startLine))") }
                if next == "]" { pos += 1; return .array(items) }
                items.append(try parseValue())
                skipArraySpace()
                guard let sep = current else { throw fail("unterminated array (opened on line \(startLine))") }
                if sep == "," { pos += 1; continue }
                if sep == "]" { pos += 1; return .array(items) }
                throw fail("expected ',' or ']' in array, found '\(sep)'")
            }
        case "{":
            throw fail("inline tables ({...}) are not supported; use a [table] header")
        default:
            var token = ""
            while let c = current, c != " ", c != "\t", c != "\n", c != ",", c != "]", c != "#" {
                token.append(c)
                pos += 1
            }
            if token == "true" { return .bool(true) }
            if token == "false" { return .bool(false) }
            switch token {
            case "inf", "+inf": return .double(.infinity)
            case "-inf": return .double(-.infinity)
            case "nan", "+nan", "-nan": return .double(.nan)
            default: break
            }
            do {
                if let i = try ScalarSyntax.integer(token, allowUnderscores: true) { return .int(i) }
            } catch let problem as ScalarProblem {
                throw fail(problem.message)
            }
            let plain = token.replacingOccurrences(of: "_", with: "")
            if !token.hasPrefix("_"), !token.hasSuffix("_"), !token.contains("__"),
               let d = ScalarSyntax.decimalFloat(plain) {
                return .double(d)
            }
            if token.count >= 10, token.prefix(4).allSatisfy(ScalarSyntax.isDigit),
               token.dropFirst(4).first == "-" {
                throw fail("dates and times are not supported: '\(token)'")
            }
            throw fail("invalid value '\(token)' (strings must be quoted)")
        }
    }
}

// MARK: - YAML

private struct YAMLParser {
    struct Line {
        let number: Int
        let indent: Int
        let text: String
    }

    let path: String
    var lines: [Line] = []
    var index = 0
    var result: [String: ConfigValue] = [:]

    init(text: String, path: String) throws {
        self.path = path
        var body = text
        if body.hasPrefix("\u{FEFF}") { body.removeFirst() }
        body = body.replacingOccurrences(of: "\r\n", with: "\n")
        var sawContent = false
        for (offset, raw) in body.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = offset + 1
            var indent = 0
            var rest = Substring(raw)
            while let c = rest.first, c == " " || c == "\t" {
                if c == "\t" {
                    let trimmed = rest.drop { $0 == " " || $0 == "\t" }
                    if trimmed.isEmpty || trimmed.first == "#" { break }
                    throw ConfigFileError(path: path, line: number, message: "tabs are not allowed for indentation")
                }
                indent += 1
                rest = rest.dropFirst()
            }
            let content = String(rest).trimmingCharacters(in: .whitespaces)
            if content.isEmpty || content.hasPrefix("#") { continue }
            if indent == 0, content == "---" || content.hasPrefix("--- ") {
                if sawContent {
                    throw ConfigFileError(path: path, line: number, message: "multiple documents are not supported")
                }
                let after = content.dropFirst(3).trimmingCharacters(in: .whitespaces)
                if !after.isEmpty && !after.hasPrefix("#") {
                    throw ConfigFileError(path: path, line: number, message: "content after '---' is not supported")
                }
                continue
            }
            if indent == 0, content == "..." { break }
            if indent == 0, content.hasPrefix("%") {
                throw ConfigFileError(path: path, line: number, message: "directives (%...) are not supported")
            }
            sawContent = true
            lines.append(Line(number: number, indent: indent, text: content))
        }
    }

    func fail(_ line: Line, _ message: String) -> ConfigFileError {
        ConfigFileError(path: path, line: line.number, message: message)
    }

    static func isListItem(_ text: String) -> Bool {
        text == "-" || text.hasPrefix("- ") || text.hasPrefix("-\t")
    }

    mutating func parse() throws -> [String: ConfigValue] {
        guard let first = lines.first else { return [:] }
        if YAMLParser.isListItem(first.text) { throw fail(first, "the top level must be a mapping (key: value)") }
        try parseMapping(indent: first.indent, prefix: "")
        if index < lines.count { throw fail(lines[index], "unexpected indentation") }
        return result
    }

    mutating func store(_ key: String, _ value: ConfigValue, _ line: Line) throws {
        if result[key] != nil { throw fail(line, "duplicate key '\(key)'") }
        result[key] = value
    }

    mutating func parseMapping(indent: Int, prefix: String) throws {
        while index < lines.count {
            let line = lines[index]
            if line.indent < indent { return }
            if line.indent > indent { throw fail(line, "unexpected indentation") }
            if YAMLParser.isListItem(line.text) { throw fail(line, "unexpected list item (expected 'key: value')") }
            let (key, rest) = try splitKey(line)
            let fullKey = prefix + key
            index += 1
            let value = rest.hasPrefix("#") ? "" : rest
            if !value.isEmpty {
                try store(fullKey, try parseInline(value, line), line)
                if index < lines.count, lines[index].indent > indent {
                    throw fail(lines[index], "unexpected indentation (multi-line values are not supported)")
                }
                continue
            }
            guard index < lines.count else { throw fail(line, "key '\(fullKey)' has no value") }
            let next = lines[index]
            if YAMLParser.isListItem(next.text) && next.indent >= indent {
                try store(fullKey, .array(try parseList(indent: next.indent)), line)
            } else if next.indent > indent {
                try parseMapping(indent: next.indent, prefix: fullKey + ".")
            } else {
                throw fail(line, "key '\(fullKey)' has no value")
            }
        }
    }

    mutating func parseList(indent: Int) throws -> [ConfigValue] {
        var items: [ConfigValue] = []
        while index < lines.count, lines[index].indent == indent, YAMLParser.isListItem(lines[index].text) {
            let line = lines[index]
            let item = String(line.text.dropFirst()).trimmingCharacters(in: .whitespaces)
            if item.isEmpty || item.hasPrefix("#") {
                throw fail(line, "empty list item (nested lists and mappings inside lists are not supported)")
            }
            if YAMLParser.isListItem(item) { throw fail(line, "nested block lists are not supported; use [a, b]") }
            if item.first != "\"" && item.first != "'" && item.first != "[" && YAMLParser.mappingColon(in: item) != nil {
                throw fail(line, "mappings inside lists are not supported")
            }
            items.append(try parseInline(item, line))
            index += 1
            if index < lines.count, lines[index].indent > indent {
                throw fail(lines[index], "unexpected indentation (multi-line values are not supported)")
            }
        }
        return items
    }

    /// Index of the `:` that separates a plain key from its value (followed by a space or the end).
    static func mappingColon(in text: String) -> String.Index? {
        var i = text.startIndex
        while i < text.endIndex {
            if text[i] == ":" {
                let after = text.index(after: i)
                if after == text.endIndex || text[after] == " " || text[after] == "\t" { return i }
            }
            if text[i] == "#", i > text.startIndex, text[text.index(before: i)] == " " { return nil }
            i = text.index(after: i)
        }
        return nil
    }

    func splitKey(_ line: Line) throws -> (String, String) {
        let text = line.text
        if text.first == "\"" || text.first == "'" {
            var cursor = InlineCursor(chars: Array(text))
            let key = try quoted(&cursor, line)
            cursor.skipSpaces()
            guard cursor.current == ":" else { throw fail(line, "expected ':' after the quoted key") }
            cursor.pos += 1
            guard cursor.atEnd || cursor.current == " " || cursor.current == "\t" else {
                throw fail(line, "expected a space after ':'")
            }
            return (key, cursor.rest().trimmingCharacters(in: .whitespaces))
        }
        guard let colon = YAMLParser.mappingColon(in: text) else {
            if text.hasPrefix("[") || text.hasPrefix("{") { throw fail(line, "flow collections must be the value of a key") }
            throw fail(line, "expected 'key: value'")
        }
        let key = text[..<colon].trimmingCharacters(in: .whitespaces)
        if key.isEmpty { throw fail(line, "empty key") }
        if let c = key.first, "&*!?|>{[".contains(c) {
            throw fail(line, "unsupported key syntax '\(key)'")
        }
        let rest = text[text.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        return (key, rest)
    }

    /// A value on the same line as its key or dash: quoted scalar, flow list or plain scalar, then only a
    /// comment may follow.
    func parseInline(_ text: String, _ line: Line) throws -> ConfigValue {
        var cursor = InlineCursor(chars: Array(text))
        let value: ConfigValue
        if let c = cursor.current, c == "[" || c == "\"" || c == "'" {
            value = try flowValue(&cursor, line, inList: false)
        } else {
            let plain = YAMLParser.stripPlainComment(text)
            return try plainScalar(plain, line, inList: false)
        }
        cursor.skipSpaces()
        if !cursor.atEnd && cursor.current != "#" {
            throw fail(line, "unexpected text after the value: '\(cursor.rest())'")
        }
        return value
    }

    static func stripPlainComment(_ text: String) -> String {
        var previous: Character = " "
        var out = ""
        for c in text {
            if c == "#" && (previous == " " || previous == "\t") { break }
            out.append(c)
            previous = c
        }
        return out.trimmingCharacters(in: .whitespaces)
    }

    func flowValue(_ cursor: inout InlineCursor, _ line: Line, inList: Bool) throws -> ConfigValue {
        cursor.skipSpaces()
        guard let c = cursor.current else { throw fail(line, "unterminated flow list (flow lists must fit on one line)") }
        if c == "\"" || c == "'" { return .string(try quoted(&cursor, line)) }
        if c == "{" { throw fail(line, "flow mappings ({...}) are not supported") }
        if c == "[" {
            cursor.pos += 1
            var items: [ConfigValue] = []
            while true {
                cursor.skipSpaces()
                guard let next = cursor.current else {
                    throw fail(line, "unterminated flow list (flow lists must fit on one line)")
                }
                if next == "]" { cursor.pos += 1; return .array(items) }
                items.append(try flowValue(&cursor, line, inList: true))
                cursor.skipSpaces()
                guard let sep = cursor.current else {
                    throw fail(line, "unterminated flow list (flow lists must fit on one line)")
                }
                if sep == "," { cursor.pos += 1; continue }
                if sep == "]" { cursor.pos += 1; return .array(items) }
                throw fail(line, "expected ',' or ']' in flow list, found '\(sep)'")
            }
        }
        var token = ""
        while let c = cursor.current, c != ",", c != "]", c != "[", c != "{", c != "}" {
            if c == "#", token.last == " " { break }
            token.append(c)
            cursor.pos += 1
        }
        return try plainScalar(token.trimmingCharacters(in: .whitespaces), line, inList: inList)
    }

    func quoted(_ cursor: inout InlineCursor, _ line: Line) throws -> String {
        let quote = cursor.current!
        cursor.pos += 1
        var out = ""
        while true {
            guard let c = cursor.current else { throw fail(line, "unterminated quoted string (must fit on one line)") }
            cursor.pos += 1
            if c == quote {
                if quote == "'" && cursor.current == "'" {
                    out.append("'")
                    cursor.pos += 1
                    continue
                }
                return out
            }
            if c == "\\" && quote == "\"" {
                guard let e = cursor.current else { throw fail(line, "unterminated quoted string") }
                cursor.pos += 1
                switch e {
                case "\"": out.append("\"")
                case "\\": out.append("\\")
                case "/": out.append("/")
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "r": out.append("\r")
                case "0": out.append("\0")
                case " ": out.append(" ")
                case "x", "u", "U":
                    let count = e == "x" ? 2 : e == "u" ? 4 : 8
                    guard cursor.pos + count <= cursor.chars.count,
                          let code = UInt32(String(cursor.chars[cursor.pos..<cursor.pos + count]), radix: 16),
                          let scalar = Unicode.Scalar(code) else {
                        throw fail(line, "invalid \\\(e) escape in string")
                    }
                    out.unicodeScalars.append(scalar)
                    cursor.pos += count
                default:
                    throw fail(line, "invalid escape '\\\(e)' in string")
                }
                continue
            }
            out.append(c)
        }
    }

    func plainScalar(_ token: String, _ line: Line, inList: Bool) throws -> ConfigValue {
        guard let first = token.first else {
            throw fail(line, inList ? "empty item in flow list" : "missing value")
        }
        switch first {
        case "&", "*": throw fail(line, "anchors and aliases (&, *) are not supported")
        case "!": throw fail(line, "tags (!) are not supported")
        case "|", ">": throw fail(line, "block scalars (| and >) are not supported")
        case "{": throw fail(line, "flow mappings ({...}) are not supported")
        case "@", "`": throw fail(line, "a plain value cannot start with '\(first)'; quote it")
        default: break
        }
        if YAMLParser.mappingColon(in: token) != nil || token.hasSuffix(":") {
            throw fail(line, "nested mappings must start on their own indented line")
        }
        switch token {
        case "true", "True", "TRUE": return .bool(true)
        case "false", "False", "FALSE": return .bool(false)
        case "null", "Null", "NULL", "~": throw fail(line, "null values are not supported")
        case ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF": return .double(.infinity)
        case "-.inf", "-.Inf", "-.INF": return .double(-.infinity)
        case ".nan", ".NaN", ".NAN": return .double(.nan)
        default: break
        }
        do {
            if let i = try ScalarSyntax.integer(token, allowUnderscores: false) { return .int(i) }
        } catch let problem as ScalarProblem {
            throw fail(line, problem.message)
        }
        if let d = ScalarSyntax.decimalFloat(token) { return .double(d) }
        return .string(token)
    }
}

private struct InlineCursor {
    let chars: [Character]
    var pos = 0

    var atEnd: Bool { pos >= chars.count }
    var current: Character? { pos < chars.count ? chars[pos] : nil }

    mutating func skipSpaces() {
        while let c = current, c == " " || c == "\t" { pos += 1 }
    }

    func rest() -> String { String(chars[min(pos, chars.count)...]) }
}
