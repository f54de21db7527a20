import ArgumentParser
import Foundation
import TOMLKit
import Yams

/// A value read from a `--config` file: a string, integer, float, boolean or a list of those.
public enum ConfigValue: Equatable, Sendable, CustomStringConvertible {
    /// A string.
    case string(String)
    /// An integer.
    case int(Int)
    /// A floating-point number.
    case double(Double)
    /// `true` / `false`.
    case bool(Bool)
    /// A list of scalars (lists and tables inside lists are rejected when the file is read).
    case array([ConfigValue])

    /// The value as it is written as a command-line argument: strings verbatim, numbers in Swift's shortest
    /// round-tripping form, booleans as `true`/`false`, lists comma-joined.
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

/// A problem with a config file: `description` is one line, `FILE:LINE: what is wrong` or `FILE: what is wrong`
/// (problems with a key name the key).
public struct ConfigFileError: Error, Equatable, Sendable, CustomStringConvertible, LocalizedError {
    /// The file's path as given.
    public let path: String
    /// The 1-based line number, or nil when the problem is not tied to a line.
    public let line: Int?
    /// What is wrong (one line).
    public let message: String

    /// Creates an error; line breaks in `message` become spaces.
    public init(path: String, line: Int?, message: String) {
        self.path = path
        self.line = line
        self.message = message.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }.joined(separator: " ")
    }

    /// `PATH:LINE: message` (or `PATH: message`).
    public var description: String {
        if let line { return "\(path):\(line): \(message)" }
        return "\(path): \(message)"
    }

    /// Same as `description`.
    public var errorDescription: String? { description }
}

/// `--config FILE`: settings for any flag in a TOML file (read by TOMLKit) or a YAML file (read by Yams), merged
/// into the command line before ArgumentParser sees it.
///
/// Both formats give a flat dictionary of dotted keys: TOML `[ood]` + `rotate = "…"` and YAML `ood:` + indented
/// `rotate: …` both give `ood.rotate`. YAML scalars are typed by the YAML 1.2 core schema (`true`/`false`,
/// decimal/`0x`/`0o` integers, floats, `.inf`, `.nan`; `yes`, `on`, `010` or dates stay strings); quoted
/// scalars are strings. Values that no flag can take are errors naming the key: TOML dates and times, YAML
/// nulls, and lists or tables inside lists.
///
/// Turning a config into arguments: a key `batch_size`/`batch-size` becomes `--batch-size VALUE` (`_` is
/// normalised to `-`); a list repeats the flag once per item; `true` gives the bare flag, `false` gives nothing;
/// a value starting with `-` is passed as `--flag=VALUE` so it is not taken for an option. A key inside a
/// table, `ood.rotate = "fashion-mnist:test@rotate"`, becomes `--ood rotate=fashion-mnist:test@rotate` (the
/// table name is the flag, the rest of the key and the value are joined by `=`; only the table name is
/// normalised). Command-line flags win: every config key whose flag appears on the command line (as `--flag`,
/// `--flag=…`, or its `--no-flag` inverse) is dropped, including all keys of a table (`--ood` on the command
/// line replaces every `ood.*`). A `config` key is ignored (no nested configs).
///
/// Keys are checked against the flags of the command being run (`CommandFlags`, read from ArgumentParser): a
/// key that names no flag, a flag given a non-boolean, `true`/`false` or a list for a one-value option, and a
/// table for an option that does not repeat are one-line errors naming the file and the key. A value
/// ArgumentParser itself rejects (`epochs = "three"`) is reported with the key whose value it was.
public enum ConfigFile {
    /// Parses the file at `path` as TOML (`.toml`) or YAML (`.yaml`, `.yml`) into dotted keys → values.
    /// Throws `ConfigFileError` (one line naming the file as given, and the line number when there is one).
    public static func load(_ path: String) throws -> [String: ConfigValue] {
        let url = URL(fileURLWithPath: path)
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

    /// Parses TOML text with TOMLKit; `path` is used in error messages.
    public static func parseTOML(_ text: String, path: String = "<toml>") throws -> [String: ConfigValue] {
        try checkTableHeaders(text, path: path)
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigFileError(path: path, line: error.source.begin.line, message: error.description)
        }
        var result: [String: ConfigValue] = [:]
        try addTOML(table, prefix: "", to: &result, path: path)
        return result
    }

    /// toml++ 3.4 (inside TOMLKit) asserts, aborting the process (in release builds too), on a table header
    /// whose first character after `[` or `[[` (and spaces) cannot start a key: `[=]`, `[.a]`, `[é]`, `[` at the
    /// end of a line; and on a `}` where an array expects a value (`t = [}`, `t = [1, }`). This finds both before
    /// TOMLKit sees the text and throws a one-line error. A header is a `[` that starts a line outside any
    /// string, comment or value (brackets and braces of arrays and inline tables are tracked), which is where
    /// toml++ parses one.
    static func checkTableHeaders(_ text: String, path: String) throws {
        let s = Array(text.unicodeScalars)
        var i = s.first == "\u{FEFF}" ? 1 : 0, line = 1, lineStart = true   // toml++ skips a byte-order mark
        var open: [Unicode.Scalar] = []          // the unclosed [ and { outside strings and comments
        var previous: Unicode.Scalar = "\n"      // the last character outside strings, comments and white space
        func at(_ k: Int) -> Unicode.Scalar? { k < s.count ? s[k] : nil }
        func startsKey(_ c: Unicode.Scalar) -> Bool {
            c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c) || c == "_" || c == "-")
                || c == "\"" || c == "'" || c == "]"
        }
        while i < s.count {
            let c = s[i]
            if c == "\n" { line += 1; lineStart = true; i += 1; continue }
            if c == " " || c == "\t" || c == "\r" { i += 1; continue }
            if lineStart && open.isEmpty && c == "[" {
                var k = i + 1
                if at(k) == "[" { k += 1 }
                while at(k) == " " || at(k) == "\t" { k += 1 }
                if let next = at(k), !startsKey(next) {
                    let shown = next == "\n" || next == "\r" ? "the end of the line" : "'\(next)'"
                    throw ConfigFileError(path: path, line: line,
                                          message: "table header: expected a bare key or a quoted key after '[', saw \(shown)")
                }
            }
            lineStart = false
            switch c {
            case "#":
                while i < s.count && s[i] != "\n" { i += 1 }
                continue
            case "\"", "'":
                previous = c
                let multi = at(i + 1) == c && at(i + 2) == c
                i += multi ? 3 : 1
                while i < s.count {
                    if c == "\"" && s[i] == "\\" {
                        if at(i + 1) == "\n" { line += 1 }
                        i += 2
                        continue
                    }
                    if s[i] == "\n" {
                        if !multi { break }
                        line += 1
                    }
                    if s[i] == c && (!multi || (at(i + 1) == c && at(i + 2) == c)) {
                        i += multi ? 3 : 1
                        while multi && at(i) == c { i += 1 }  // up to two quotes may end the content
                        break
                    }
                    i += 1
                }
                continue
            case "[", "{": open.append(c)
            case "}" where open.last == "[" && (previous == "[" || previous == ","):
                throw ConfigFileError(path: path, line: line, message: "array: expected a value or ']', saw '}'")
            case "]", "}": _ = open.popLast()
            default: break
            }
            previous = c
            i += 1
        }
    }

    /// Parses YAML text (one document whose top level is a mapping) with Yams; `path` is used in error messages.
    public static func parseYAML(_ text: String, path: String = "<yaml>") throws -> [String: ConfigValue] {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text, coreSchema)
        } catch let error as YamlError {
            throw yamlError(error, path: path)
        }
        guard let root else { return [:] }
        guard case .mapping(let mapping) = root else {
            throw ConfigFileError(path: path, line: root.mark?.line, message: "the top level must be a mapping (key: value)")
        }
        var result: [String: ConfigValue] = [:]
        try addYAML(mapping, prefix: "", to: &result, path: path)
        return result
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

    /// `commandLine` with the config's settings appended as arguments (before a `--` terminator if there is
    /// one), minus every key whose flag the command line already gives; keys in sorted order. Throws
    /// `ConfigFileError` naming `path` and the key for a key `flags` does not know or a value of the wrong kind.
    public static func mergedArguments(commandLine: [String], config: [String: ConfigValue], flags: CommandFlags,
                                       path: String) throws -> [String] {
        let (head, tail) = splitAtTerminator(commandLine)
        return head + (try argumentsByKey(config: config, flags: flags, given: head, path: path)).flatMap(\.arguments) + tail
    }

    /// Parses `commandLine` with `root` after merging the file named by its `--config` (if any): the one call
    /// the executable makes. ArgumentParser errors caused by a config value are rethrown as `ConfigFileError`
    /// naming the key; every other error is ArgumentParser's own.
    public static func parseCommand(_ root: ParsableCommand.Type, commandLine: [String]) throws -> ParsableCommand {
        guard let path = configPath(in: commandLine) else { return try root.parseAsRoot(commandLine) }
        let config = try load(path)
        let flags = try CommandFlags.of(root, commandLine: commandLine)
        let (head, tail) = splitAtTerminator(commandLine)
        let byKey = try argumentsByKey(config: config, flags: flags, given: head, path: path)
        do {
            return try root.parseAsRoot(head + byKey.flatMap(\.arguments) + tail)
        } catch {
            // The culprit is the key without whose arguments the rest parses.
            for index in byKey.indices {
                var others = byKey
                others.remove(at: index)
                if (try? root.parseAsRoot(head + others.flatMap(\.arguments) + tail)) != nil {
                    throw ConfigFileError(path: path, line: nil, message: "key '\(byKey[index].key)': \(root.message(for: error))")
                }
            }
            throw error
        }
    }

    // MARK: - Merging

    private static func splitAtTerminator(_ commandLine: [String]) -> (head: [String], tail: [String]) {
        guard let terminator = commandLine.firstIndex(of: "--") else { return (commandLine, []) }
        return (Array(commandLine[..<terminator]), Array(commandLine[terminator...]))
    }

    /// The arguments each config key contributes (sorted by key; keys the command line overrides give none).
    private static func argumentsByKey(config: [String: ConfigValue], flags: CommandFlags, given head: [String],
                                       path: String) throws -> [(key: String, arguments: [String])] {
        var given = Set<String>()
        for token in head where token.hasPrefix("--") && token.count > 2 {
            var name = String(token.dropFirst(2))
            if let eq = name.firstIndex(of: "=") { name = String(name[..<eq]) }
            name = normalise(name)
            given.insert(name)
            if name.hasPrefix("no-") { given.insert(String(name.dropFirst(3))) } else { given.insert("no-" + name) }
        }

        var result: [(key: String, arguments: [String])] = []
        for key in config.keys.sorted() {
            let value = config[key]!
            let flag: String
            let tableKey: String?
            if let dot = key.firstIndex(of: ".") {
                flag = normalise(String(key[..<dot]))
                tableKey = String(key[key.index(after: dot)...])
            } else {
                flag = normalise(key)
                tableKey = nil
            }
            if flag == "config" { continue }
            func wrong(_ message: String) -> ConfigFileError {
                ConfigFileError(path: path, line: nil, message: "key '\(key)': \(message)")
            }
            guard let kind = flags.flags[flag] else {
                throw ConfigFileError(path: path, line: nil, message: "unknown key '\(key)' (\(flags.commandName) has no --\(flag))")
            }
            if given.contains(flag) { continue }
            let items: [ConfigValue]
            if case .array(let list) = value { items = list } else { items = [value] }
            var arguments: [String] = []
            switch kind {
            case .flag, .repeatingFlag:
                if tableKey != nil { throw wrong("--\(flag) is a flag, not a table of NAME=VALUE entries") }
                if case .array = value, kind == .flag { throw wrong("--\(flag) is a flag: use true or false, not a list") }
                for item in items {
                    guard case .bool(let on) = item else { throw wrong("--\(flag) is a flag: use true or false, not '\(item)'") }
                    if on { arguments.append("--" + flag) }
                }
            case .option, .repeatingOption:
                if kind == .option {
                    if tableKey != nil { throw wrong("--\(flag) takes one value, not a table of NAME=VALUE entries") }
                    if case .array = value { throw wrong("--\(flag) takes one value, not a list") }
                }
                for item in items {
                    if case .bool(let b) = item { throw wrong("--\(flag) takes a value, not \(b) (quote it for the text)") }
                    if let tableKey {
                        arguments += ["--" + flag, tableKey + "=" + item.description]
                    } else if item.description.hasPrefix("-") {
                        arguments.append("--" + flag + "=" + item.description)
                    } else {
                        arguments += ["--" + flag, item.description]
                    }
                }
            }
            result.append((key, arguments))
        }
        return result
    }

    private static func normalise(_ name: String) -> String {
        name.replacingOccurrences(of: "_", with: "-")
    }

    // MARK: - TOML

    private static func addTOML(_ table: TOMLTable, prefix: String, to result: inout [String: ConfigValue], path: String) throws {
        for (name, value) in table {
            let key = prefix + name
            if let sub = value.table {
                try addTOML(sub, prefix: key + ".", to: &result, path: path)
            } else {
                result[key] = try tomlScalarOrList(value, key: key, path: path, inList: false)
            }
        }
    }

    private static func tomlScalarOrList(_ value: TOMLValueConvertible, key: String, path: String, inList: Bool) throws -> ConfigValue {
        func wrong(_ message: String) -> ConfigFileError { ConfigFileError(path: path, line: nil, message: "key '\(key)': \(message)") }
        switch value.type {
        case .string: return .string(value.string!)
        case .int: return .int(value.int!)
        case .double: return .double(value.double!)
        case .bool: return .bool(value.bool!)
        case .date, .time, .dateTime: throw wrong("dates and times are not flag values (quote them)")
        case .table: throw wrong("tables inside lists are not flag values")
        case .array:
            if inList { throw wrong("lists inside lists are not flag values") }
            return .array(try value.array!.map { try tomlScalarOrList($0, key: key, path: path, inList: true) })
        }
    }

    // MARK: - YAML

    /// The YAML 1.2 core schema (Yams' default resolver is YAML 1.1's: `yes`/`on` booleans, `010` octal,
    /// `1:30` sexagesimal, dates).
    private static let coreSchema = Resolver.basic
        .appending(try! Resolver.Rule(.null, "^(?:~|null|Null|NULL|)$"))
        .appending(try! Resolver.Rule(.bool, "^(?:true|True|TRUE|false|False|FALSE)$"))
        .appending(try! Resolver.Rule(.int, "^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"))
        .appending(try! Resolver.Rule(.float, "^(?:[-+]?(?:\\.[0-9]+|[0-9]+(?:\\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\\.(?:inf|Inf|INF)|\\.(?:nan|NaN|NAN))$"))

    private static func addYAML(_ mapping: Node.Mapping, prefix: String, to result: inout [String: ConfigValue], path: String) throws {
        for (keyNode, value) in mapping {
            guard case .scalar(let scalar) = keyNode else {
                throw ConfigFileError(path: path, line: keyNode.mark?.line, message: "keys must be plain strings")
            }
            let key = prefix + scalar.string
            if case .mapping(let sub) = value {
                try addYAML(sub, prefix: key + ".", to: &result, path: path)
                continue
            }
            if result[key] != nil {
                throw ConfigFileError(path: path, line: keyNode.mark?.line, message: "duplicate key '\(key)'")
            }
            result[key] = try yamlScalarOrList(value, key: key, path: path, inList: false)
        }
    }

    private static func yamlScalarOrList(_ node: Node, key: String, path: String, inList: Bool) throws -> ConfigValue {
        func wrong(_ message: String) -> ConfigFileError {
            ConfigFileError(path: path, line: node.mark?.line, message: "key '\(key)': \(message)")
        }
        switch node {
        case .mapping: throw wrong("mappings inside lists are not flag values")
        case .alias: throw wrong("aliases are not flag values")
        case .sequence(let sequence):
            if inList { throw wrong("lists inside lists are not flag values") }
            return .array(try sequence.map { try yamlScalarOrList($0, key: key, path: path, inList: true) })
        case .scalar(let scalar):
            let text = scalar.string
            switch Tag.Name(rawValue: node.tag.rawValue) {
            case .null: throw wrong("null is not a flag value (give a value or leave the key out)")
            case .bool: return .bool(text.lowercased() == "true")
            case .int:
                let parsed: Int?
                if text.hasPrefix("0x") { parsed = Int(text.dropFirst(2), radix: 16) }
                else if text.hasPrefix("0o") { parsed = Int(text.dropFirst(2), radix: 8) }
                else { parsed = Int(text) }
                guard let parsed else { throw wrong("integer '\(text)' is out of range") }
                return .int(parsed)
            case .float:
                switch text.lowercased() {
                case ".inf", "+.inf": return .double(.infinity)
                case "-.inf": return .double(-.infinity)
                case ".nan": return .double(.nan)
                default: return .double(Double(text)!)
                }
            default: return .string(text)
            }
        }
    }

    private static func yamlError(_ error: YamlError, path: String) -> ConfigFileError {
        func message(_ context: YamlError.Context?, _ problem: String) -> String {
            [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ", ")
        }
        switch error {
        case .scanner(let context, let problem, let mark, _),
             .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            return ConfigFileError(path: path, line: mark.line, message: message(context, problem))
        case .duplicatedKeysInMapping(let duplicates, let context):
            return ConfigFileError(path: path, line: context.mark.line,
                                   message: "duplicate key \(duplicates.map { "'\($0)'" }.joined(separator: ", "))")
        case .reader(let problem, _, _, _):
            return ConfigFileError(path: path, line: nil, message: problem)
        default:
            return ConfigFileError(path: path, line: nil, message: error.description)
        }
    }
}
