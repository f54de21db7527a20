import ArgumentParser
import Foundation
import XCTest
@testable import DaftCommandLine

/// A small command tree standing in for `daft` (the same kinds of flags: one-value and repeatable options,
/// bare and counted flags, an inversion, a nested subcommand).
struct ConfigTestTool: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tool", subcommands: [Train.self, Group.self])

    struct Train: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "train")
        @Option(name: .customLong("batch-size")) var batchSize: Int = 128
        @Option var epochs: Int = 1
        @Option var method: String = "daft"
        @Option var weights: String
        @Option(name: .customLong("lr-head")) var lrHead: Double?
        @Option(name: .customLong("lr-backbone")) var lrBackbone: Double?
        @Option var ood: [String] = []
        @Option var tags: [String] = []
        @Option var shift: Int?
        @Option var resume: String?
        @Option var keep: Int = 3
        @Option var config: String?
        @Flag var verbose = false
        @Flag var amp = false
        @Flag(inversion: .prefixedNo) var pretrained = true
        @Flag var x: Int
        @Argument var rest: [String] = []
    }

    struct Group: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "group", subcommands: [Sub.self])

        struct Sub: ParsableCommand {
            static let configuration = CommandConfiguration(commandName: "sub")
            @Option var out: String?
        }
    }
}

final class ConfigFileTests: XCTestCase {
    private var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("daft-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: dir)
    }

    private func file(_ name: String, _ text: String) throws -> String {
        let url = dir.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    private var trainFlags: CommandFlags {
        get throws { try CommandFlags.of(ConfigTestTool.self, commandLine: ["train"]) }
    }

    // MARK: TOML (TOMLKit)

    func testTOMLValuesAndTables() throws {
        let text = """
        # daft finetune settings
        method = "daft"            # trailing comment
        arch = 'resnet20'
        batch-size = 128
        lr_head = 0.1
        lr-backbone = 1e-3
        weight_decay = 5_000e-7
        epochs = +3
        max-steps = 0x10
        seed = -7
        amp = false
        verbose = true
        widths = [16, 32, 64]
        names = [ "a#b", 'c"d',
                  "e\\tf\\u00e9",   # arrays may span lines
        ]
        empty = []
        "quoted key" = "v"
        dotted.key = 1.5
        inline = { a = 1, b = "two" }

        [ood]
        rotate = "fashion-mnist:test@rotate"
        blur   = "fashion-mnist:test@blur"

        [a.b]
        c = -inf
        """
        let config = try ConfigFile.parseTOML(text, path: "run.toml")
        XCTAssertEqual(config["method"], .string("daft"))
        XCTAssertEqual(config["arch"], .string("resnet20"))
        XCTAssertEqual(config["batch-size"], .int(128))
        XCTAssertEqual(config["lr_head"], .double(0.1))
        XCTAssertEqual(config["lr-backbone"], .double(0.001))
        XCTAssertEqual(config["weight_decay"], .double(5e-4))
        XCTAssertEqual(config["epochs"], .int(3))
        XCTAssertEqual(config["max-steps"], .int(16))
        XCTAssertEqual(config["seed"], .int(-7))
        XCTAssertEqual(config["amp"], .bool(false))
        XCTAssertEqual(config["verbose"], .bool(true))
        XCTAssertEqual(config["widths"], .array([.int(16), .int(32), .int(64)]))
        XCTAssertEqual(config["names"], .array([.string("a#b"), .string("c\"d"), .string("e\tf\u{e9}")]))
        XCTAssertEqual(config["empty"], .array([]))
        XCTAssertEqual(config["quoted key"], .string("v"))
        XCTAssertEqual(config["dotted.key"], .double(1.5))
        XCTAssertEqual(config["inline.a"], .int(1))
        XCTAssertEqual(config["inline.b"], .string("two"))
        XCTAssertEqual(config["ood.rotate"], .string("fashion-mnist:test@rotate"))
        XCTAssertEqual(config["ood.blur"], .string("fashion-mnist:test@blur"))
        XCTAssertEqual(config["a.b.c"], .double(-.infinity))
        XCTAssertEqual(config.count, 21)
    }

    func testTOMLCRLFAndEmpty() throws {
        XCTAssertEqual(try ConfigFile.parseTOML("a = 1\r\nb = \"x\"\r\n"), ["a": .int(1), "b": .string("x")])
        XCTAssertEqual(try ConfigFile.parseTOML("\n# only a comment\n"), [:])
    }

    /// Syntax errors are TOMLKit's (toml++'s) messages, on one line after `FILE:LINE: `.
    func testTOMLErrorsNameFileAndLine() {
        let cases: [(String, Int)] = [
            ("a = 1\nb 2\n", 2),
            ("a = \"open\n", 1),
            ("a = 1\n# c\na = 2\n", 3),
            ("[t]\nk = 1\n[t]\n", 3),
            ("method = daft\n", 1),
            ("a = 1 2\n", 1),
            ("a = [1,\n2\n", 2),
            ("a = [1 2]\n", 1),
            ("a =\n", 1),
            ("big = 99999999999999999999\n", 1),
            ("s = \"\\q\"\n", 1),
            ("[t\n", 1),
            ("k@y = 1\n", 1),
        ]
        for (text, line) in cases {
            XCTAssertThrowsError(try ConfigFile.parseTOML(text, path: "cfg.toml"), text) { error in
                let message = String(describing: error)
                XCTAssertTrue(message.hasPrefix("cfg.toml:\(line): "), "\(text.debugDescription) -> \(message)")
                XCTAssertGreaterThan(message.count, "cfg.toml:\(line): ".count + 5, message)
                XCTAssertFalse(message.contains("\n"), message)
                XCTAssertEqual((error as? ConfigFileError)?.line, line)
            }
        }
    }

    /// toml++ asserts (aborting `daft`, release builds included) on a table header whose first character cannot
    /// start a key; ConfigFile finds such headers first. Found by `launch/fuzz.sh config`: the first case is its
    /// input (Fuzz/regressions/config/toml-header-non-key-char.toml), bytes 0x87... after '[' on line 7.
    func testTOMLTableHeaderThatCannotStartAKeyIsAnErrorNotAnAbort() throws {
        let fuzzed = String(decoding: Array("method = \"daft\"\nepochs = 3\nbatch-size = 64\nlr-head = 0.5\naugment = false\nseed = 7\n[".utf8)
            + [0x87, 0x90, 0x9b, 0xa2, 0xf5, 0x8d, 0x90, 0x8b] + Array("ate = \"data/rot\"\n[data]\nfolders = [\"a\", \"b\"]\n".utf8),
            as: UTF8.self)
        let cases: [(String, String)] = [
            (fuzzed, "cfg.toml:7: table header: expected a bare key or a quoted key after '[', saw '\u{FFFD}'"),
            ("[=]\na = 1\n", "cfg.toml:1: table header: expected a bare key or a quoted key after '[', saw '='"),
            ("a = 1\n  [[ .x]]\n", "cfg.toml:2: table header: expected a bare key or a quoted key after '[', saw '.'"),
            ("s = \"\"\"\nx\n\"\"\"\n[é]\n", "cfg.toml:4: table header: expected a bare key or a quoted key after '[', saw 'é'"),
            ("x = 1\n[\n", "cfg.toml:2: table header: expected a bare key or a quoted key after '[', saw the end of the line"),
            ("[[[a]]]\n", "cfg.toml:1: table header: expected a bare key or a quoted key after '[', saw '['"),
            ("\u{FEFF}[[[[[[[", "cfg.toml:1: table header: expected a bare key or a quoted key after '[', saw '['"),  // fuzzed: BOM first
            ("t = [}", "cfg.toml:1: array: expected a value or ']', saw '}'"),  // fuzzed: toml++ asserted in parse_value
            ("a = 1\nt = [\n  1, # c\n}\n", "cfg.toml:4: array: expected a value or ']', saw '}'"),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try ConfigFile.parseTOML(text, path: "cfg.toml"), text.debugDescription) {
                XCTAssertEqual(String(describing: $0), expected)
            }
        }
        // A '[' starting a line inside a string, a comment or a value is not a header, and valid headers pass.
        XCTAssertEqual(try ConfigFile.parseTOML("s = \"\"\"\n[=]\n\"\"\"\nt = '''\n[.x]\n'''\n# [=]\n"),
                       ["s": .string("[=]\n"), "t": .string("[.x]\n")])
        XCTAssertEqual(try ConfigFile.parseTOML("a = [\n  1,\n]\n[\"quoted\"]\nk = 1\n[ t-1 ]\nj = \"]\"\n"),
                       ["a": .array([.int(1)]), "quoted.k": .int(1), "t-1.j": .string("]")])
        XCTAssertThrowsError(try ConfigFile.parseTOML("a = [\n[=],\n]\n", path: "cfg.toml")) {
            XCTAssertFalse(String(describing: $0).contains("table header"), "\($0)")
        }
        XCTAssertEqual(try ConfigFile.parseTOML("t = { a = [1, 2] }\nu = [\"}\", '{']\n"),
                       ["t.a": .array([.int(1), .int(2)]), "u": .array([.string("}"), .string("{")])])
        XCTAssertThrowsError(try ConfigFile.parseTOML("t = [1 }", path: "cfg.toml")) {   // toml++'s own error
            XCTAssertFalse(String(describing: $0).contains("array: expected a value"), "\($0)")
        }
    }

    /// Valid TOML that no flag can take: an error naming the file and the key.
    func testTOMLValuesNoFlagTakesNameTheKey() {
        let cases: [(String, String)] = [
            ("d = 2024-01-01\n", "cfg.toml: key 'd': dates and times are not flag values (quote them)"),
            ("[t]\nwhen = 07:32:00\n", "cfg.toml: key 't.when': dates and times are not flag values (quote them)"),
            ("[[runs]]\nname = \"a\"\n", "cfg.toml: key 'runs': tables inside lists are not flag values"),
            ("nested = [[1, 2], [\"x\"]]\n", "cfg.toml: key 'nested': lists inside lists are not flag values"),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try ConfigFile.parseTOML(text, path: "cfg.toml"), text) {
                XCTAssertEqual(String(describing: $0), expected)
            }
        }
    }

    // MARK: YAML (Yams)

    func testYAMLValuesAndMappings() throws {
        let text = """
        ---
        # daft finetune settings
        method: daft
        arch: "resnet20"   # comment
        batch-size: 128
        lr_head: 0.1
        lr-backbone: 1e-3
        seed: -7
        amp: false
        verbose: True
        data: npy:/data/x.npy,/data/y.npy
        note: it's C#, not a comment # a comment
        quoted: 'it''s "fine"'
        escaped: "tab\\there \\u00e9"
        widths: [16, 32, "64"]
        empty: []
        extra-args:
          - --foo
          - "bar baz"   # quoted item
          - 3
        same-indent-list:
        - a
        - b
        core-schema: [yes, on, "010", 010, 0x10, 1:30, 2024-01-01, .inf]
        ood:
          rotate: fashion-mnist:test@rotate
          blur: "fashion-mnist:test@blur"
          deeper:
            level: 2
        flow: {a: 1, b: x}
        after: 1.5
        ...
        """
        let config = try ConfigFile.parseYAML(text, path: "run.yaml")
        XCTAssertEqual(config["method"], .string("daft"))
        XCTAssertEqual(config["arch"], .string("resnet20"))
        XCTAssertEqual(config["batch-size"], .int(128))
        XCTAssertEqual(config["lr_head"], .double(0.1))
        XCTAssertEqual(config["lr-backbone"], .double(0.001))
        XCTAssertEqual(config["seed"], .int(-7))
        XCTAssertEqual(config["amp"], .bool(false))
        XCTAssertEqual(config["verbose"], .bool(true))
        XCTAssertEqual(config["data"], .string("npy:/data/x.npy,/data/y.npy"))
        XCTAssertEqual(config["note"], .string("it's C#, not a comment"))
        XCTAssertEqual(config["quoted"], .string("it's \"fine\""))
        XCTAssertEqual(config["escaped"], .string("tab\there \u{e9}"))
        XCTAssertEqual(config["widths"], .array([.int(16), .int(32), .string("64")]))
        XCTAssertEqual(config["empty"], .array([]))
        XCTAssertEqual(config["extra-args"], .array([.string("--foo"), .string("bar baz"), .int(3)]))
        XCTAssertEqual(config["same-indent-list"], .array([.string("a"), .string("b")]))
        XCTAssertEqual(config["core-schema"], .array([.string("yes"), .string("on"), .string("010"), .int(10), .int(16),
                                                      .string("1:30"), .string("2024-01-01"), .double(.infinity)]))
        XCTAssertEqual(config["ood.rotate"], .string("fashion-mnist:test@rotate"))
        XCTAssertEqual(config["ood.blur"], .string("fashion-mnist:test@blur"))
        XCTAssertEqual(config["ood.deeper.level"], .int(2))
        XCTAssertEqual(config["flow.a"], .int(1))
        XCTAssertEqual(config["flow.b"], .string("x"))
        XCTAssertEqual(config["after"], .double(1.5))
        XCTAssertEqual(config.count, 23)
        XCTAssertEqual(try ConfigFile.parseYAML("# nothing\n"), [:])
    }

    /// Syntax errors are Yams' (libyaml's) problems on one line after `FILE:LINE: `; values no flag takes and
    /// the top level name what is wrong.
    func testYAMLErrorsNameFileAndLine() {
        let cases: [(String, Int, String?)] = [
            ("a: 1\n\tb: 2\n", 2, nil),
            ("a: 1\n  b: 2\n", 2, nil),
            ("a:\n  b: 1\n c: 2\n", 3, nil),
            ("a: [1, 2\n", 2, nil),
            ("a: 1\na: 2\n", 1, "duplicate key 'a'"),
            ("a: b: c\n", 1, nil),
            ("a: \"open\n", 2, nil),
            ("a: \"x\" y\n", 1, nil),
            ("a: 1\n---\nb: 2\n", 2, "expected a single document in the stream"),
            ("a: *ref\n", 1, nil),
            ("- a\n- b\n", 1, "the top level must be a mapping (key: value)"),
            ("just text\n", 1, "the top level must be a mapping (key: value)"),
            ("a: null\n", 1, "key 'a': null is not a flag value (give a value or leave the key out)"),
            ("# c\na:\nb: 1\n", 2, "key 'a': null is not a flag value (give a value or leave the key out)"),
            ("list:\n  - name: x\n", 2, "key 'list': mappings inside lists are not flag values"),
            ("list:\n  - - x\n", 2, "key 'list': lists inside lists are not flag values"),
            ("big: 99999999999999999999\n", 1, "key 'big': integer '99999999999999999999' is out of range"),
        ]
        for (text, line, phrase) in cases {
            XCTAssertThrowsError(try ConfigFile.parseYAML(text, path: "cfg.yml"), text) { error in
                let message = String(describing: error)
                XCTAssertTrue(message.hasPrefix("cfg.yml:\(line): "), "\(text.debugDescription) -> \(message)")
                XCTAssertGreaterThan(message.count, "cfg.yml:\(line): ".count + 5, message)
                if let phrase { XCTAssertTrue(message.contains(phrase), "\(text.debugDescription) -> \(message)") }
                XCTAssertFalse(message.contains("\n"), message)
            }
        }
    }

    // MARK: load

    func testLoadChoosesFormatByExtension() throws {
        let toml = try file("run.toml", "epochs = 3\n[ood]\nrotate = \"r\"\n")
        let yaml = try file("run.yaml", "epochs: 3\nood:\n  rotate: r\n")
        let yml = try file("run.YML", "epochs: 3\nood:\n  rotate: r\n")
        let expected: [String: ConfigValue] = ["epochs": .int(3), "ood.rotate": .string("r")]
        XCTAssertEqual(try ConfigFile.load(toml), expected)
        XCTAssertEqual(try ConfigFile.load(yaml), expected)
        XCTAssertEqual(try ConfigFile.load(yml), expected)

        let json = try file("run.json", "{}")
        XCTAssertThrowsError(try ConfigFile.load(json)) {
            XCTAssertEqual(String(describing: $0), "\(json): unsupported config file extension '.json' (use .toml, .yaml or .yml)")
        }
        let missing = dir.appendingPathComponent("missing.toml").path
        XCTAssertThrowsError(try ConfigFile.load(missing)) {
            XCTAssertEqual(String(describing: $0), "\(missing): no such file")
        }
        let broken = try file("broken.yaml", "a: 1\nb: [\n")
        XCTAssertThrowsError(try ConfigFile.load(broken)) {
            XCTAssertTrue(String(describing: $0).hasPrefix("\(broken):3: "), "\($0)")
        }
        let latin1 = dir.appendingPathComponent("latin1.toml")
        try Data([0x61, 0x20, 0x3d, 0x20, 0x22, 0xe9, 0x22, 0x0a]).write(to: latin1)
        XCTAssertThrowsError(try ConfigFile.load(latin1.path)) {
            XCTAssertEqual(String(describing: $0), "\(latin1.path): the file is not valid UTF-8")
        }
    }

    // MARK: merging

    func testMergedArgumentsCommandLineWins() throws {
        let config: [String: ConfigValue] = [
            "batch_size": .int(256),
            "lr-head": .double(0.01),
            "lr_backbone": .double(0.001),
            "epochs": .int(3),
            "method": .string("lp-ft"),
            "verbose": .bool(true),
            "amp": .bool(false),
            "ood.rotate": .string("fashion-mnist:test@rotate"),
            "ood.blur": .string("fashion-mnist:test@blur"),
            "tags": .array([.string("a"), .string("b")]),
            "shift": .int(-2),
            "config": .string("other.toml"),
        ]
        let commandLine = ["train", "--method", "daft", "--batch-size=64", "--config", "run.toml", "--lr-backbone", "0.5"]
        let merged = try ConfigFile.mergedArguments(commandLine: commandLine, config: config, flags: trainFlags, path: "run.toml")
        XCTAssertEqual(merged, commandLine + [
            "--epochs", "3",
            "--lr-head", "0.01",
            "--ood", "blur=fashion-mnist:test@blur",
            "--ood", "rotate=fashion-mnist:test@rotate",
            "--shift=-2",
            "--tags", "a", "--tags", "b",
            "--verbose",
        ])
    }

    func testMergedArgumentsTablesInversionsAndTerminator() throws {
        let config: [String: ConfigValue] = [
            "ood.rotate": .string("r"),
            "pretrained": .bool(true),
            "resume": .string("auto"),
            "keep": .int(2),
        ]
        // `--ood` on the command line replaces every config `ood.*`; `--no-pretrained` drops `pretrained`.
        let commandLine = ["train", "--ood", "mine=x", "--no-pretrained", "--", "--keep"]
        XCTAssertEqual(try ConfigFile.mergedArguments(commandLine: commandLine, config: config, flags: trainFlags, path: "c.toml"),
                       ["train", "--ood", "mine=x", "--no-pretrained", "--keep", "2", "--resume", "auto", "--", "--keep"])
        // a counted flag repeats once per `true`
        XCTAssertEqual(try ConfigFile.mergedArguments(commandLine: ["train"], config: ["x": .array([.bool(true), .bool(true)])],
                                                      flags: trainFlags, path: "c.toml"),
                       ["train", "--x", "--x"])
        XCTAssertEqual(ConfigFile.configPath(in: ["train", "--config", "a.toml"]), "a.toml")
        XCTAssertEqual(ConfigFile.configPath(in: ["train", "--config=b.yaml"]), "b.yaml")
        XCTAssertNil(ConfigFile.configPath(in: ["train", "--", "--config", "c.toml"]))
    }

    func testLoadedConfigMergesEndToEnd() throws {
        let toml = try ConfigFile.parseTOML("""
        batch_size = 128
        lr-head = 0.1
        [ood]
        rotate = "fashion-mnist:test@rotate"
        """)
        let yaml = try ConfigFile.parseYAML("""
        batch_size: 128
        lr-head: 0.1
        ood:
          rotate: fashion-mnist:test@rotate
        """)
        XCTAssertEqual(toml, yaml)
        XCTAssertEqual(try ConfigFile.mergedArguments(commandLine: ["train", "--lr-head", "0.2"], config: toml, flags: trainFlags, path: "r.toml"),
                       ["train", "--lr-head", "0.2", "--batch-size", "128", "--ood", "rotate=fashion-mnist:test@rotate"])
    }

    /// Keys are checked against the command's flags: one line naming the file and the key.
    func testUnknownKeysAndWrongKindsNameFileAndKey() throws {
        let cases: [([String: ConfigValue], String)] = [
            (["bogus": .int(1)], "run.toml: unknown key 'bogus' (tool train has no --bogus)"),
            (["rest": .string("x")], "run.toml: unknown key 'rest' (tool train has no --rest)"),
            (["bogus.a": .int(1)], "run.toml: unknown key 'bogus.a' (tool train has no --bogus)"),
            (["verbose": .int(3)], "run.toml: key 'verbose': --verbose is a flag: use true or false, not '3'"),
            (["verbose": .array([.bool(true)])], "run.toml: key 'verbose': --verbose is a flag: use true or false, not a list"),
            (["verbose.a": .bool(true)], "run.toml: key 'verbose.a': --verbose is a flag, not a table of NAME=VALUE entries"),
            (["epochs": .array([.int(1), .int(2)])], "run.toml: key 'epochs': --epochs takes one value, not a list"),
            (["epochs": .bool(true)], "run.toml: key 'epochs': --epochs takes a value, not true (quote it for the text)"),
            (["epochs.a": .int(1)], "run.toml: key 'epochs.a': --epochs takes one value, not a table of NAME=VALUE entries"),
            (["tags": .array([.string("a"), .bool(false)])], "run.toml: key 'tags': --tags takes a value, not false (quote it for the text)"),
        ]
        for (config, expected) in cases {
            XCTAssertThrowsError(try ConfigFile.mergedArguments(commandLine: ["train"], config: config, flags: trainFlags, path: "run.toml")) {
                XCTAssertEqual(String(describing: $0), expected)
            }
        }
        // a key the command line overrides is still checked: a typo stays an error
        XCTAssertThrowsError(try ConfigFile.mergedArguments(commandLine: ["train", "--epochs", "2"], config: ["epoch": .int(1)],
                                                            flags: trainFlags, path: "run.toml"))
    }

    /// The whole path the executable takes: read the file, merge, parse; ArgumentParser's complaint about a
    /// config value names the key, a complaint about the command line stays ArgumentParser's.
    func testParseCommandMergesAndNamesTheKeyArgumentParserRejects() throws {
        let good = try file("good.toml", "weights = \"w.safetensors\"\nepochs = 4\nlr_head = 0.5\n[ood]\nblur = \"b\"\n")
        let parsed = try ConfigFile.parseCommand(ConfigTestTool.self, commandLine: ["train", "--config", good, "--epochs", "2", "extra"])
        let train = try XCTUnwrap(parsed as? ConfigTestTool.Train)
        XCTAssertEqual(train.weights, "w.safetensors")
        XCTAssertEqual(train.epochs, 2)
        XCTAssertEqual(train.lrHead, 0.5)
        XCTAssertEqual(train.ood, ["blur=b"])
        XCTAssertEqual(train.rest, ["extra"])
        XCTAssertEqual(train.config, good)

        let three = try file("three.yaml", "weights: w\nepochs: three\n")
        XCTAssertThrowsError(try ConfigFile.parseCommand(ConfigTestTool.self, commandLine: ["train", "--config", three])) {
            XCTAssertEqual(String(describing: $0), "\(three): key 'epochs': The value 'three' is invalid for '--epochs <epochs>'")
        }
        let fraction = try file("fraction.toml", "weights = \"w\"\nkeep = 2.5\n")
        XCTAssertThrowsError(try ConfigFile.parseCommand(ConfigTestTool.self, commandLine: ["train", "--config", fraction])) {
            XCTAssertEqual(String(describing: $0), "\(fraction): key 'keep': The value '2.5' is invalid for '--keep <keep>'")
        }
        XCTAssertThrowsError(try ConfigFile.parseCommand(ConfigTestTool.self, commandLine: ["train", "--config", good, "--keep", "x"])) {
            XCTAssertNil($0 as? ConfigFileError, "\($0)")
        }
        let unknown = try file("unknown.toml", "out = \"d\"\n")
        XCTAssertThrowsError(try ConfigFile.parseCommand(ConfigTestTool.self, commandLine: ["train", "--config", unknown])) {
            XCTAssertEqual(String(describing: $0), "\(unknown): unknown key 'out' (tool train has no --out)")
        }
        // without --config the command line goes to ArgumentParser untouched
        let plain = try XCTUnwrap(try ConfigFile.parseCommand(ConfigTestTool.self, commandLine: ["train", "--weights", "w"]) as? ConfigTestTool.Train)
        XCTAssertEqual(plain.epochs, 1)
    }

    /// The flag table is ArgumentParser's own: the subcommand the leading words name, long names, kinds.
    func testCommandFlagsComeFromArgumentParser() throws {
        let train = try trainFlags
        XCTAssertEqual(train.commandName, "tool train")
        XCTAssertEqual(train.flags["batch-size"], .option)
        XCTAssertEqual(train.flags["ood"], .repeatingOption)
        XCTAssertEqual(train.flags["verbose"], .flag)
        XCTAssertEqual(train.flags["x"], .repeatingFlag)
        XCTAssertEqual(train.flags["pretrained"], .flag)
        XCTAssertEqual(train.flags["no-pretrained"], .flag)
        XCTAssertNil(train.flags["rest"], "positionals cannot be set from a file")
        XCTAssertNil(train.flags["batchSize"])
        let sub = try CommandFlags.of(ConfigTestTool.self, commandLine: ["group", "sub", "--out", "group"])
        XCTAssertEqual(sub.commandName, "tool group sub")
        XCTAssertEqual(sub.flags["out"], .option)
        XCTAssertNil(sub.flags["epochs"])
        XCTAssertEqual(try CommandFlags.of(ConfigTestTool.self, commandLine: ["--epochs", "train"]).commandName, "tool")
    }
}
