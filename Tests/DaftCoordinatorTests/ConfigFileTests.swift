import Foundation
import XCTest
@testable import DaftCoordinator

final class ConfigFileTests: XCTestCase {
    // MARK: TOML

    func testTOMLSubset() throws {
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
        nested = [[1, 2], ["x"]]
        "quoted key" = "v"
        dotted.key = 1.5

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
        XCTAssertEqual(config["nested"], .array([.array([.int(1), .int(2)]), .array([.string("x")])]))
        XCTAssertEqual(config["quoted key"], .string("v"))
        XCTAssertEqual(config["dotted.key"], .double(1.5))
        XCTAssertEqual(config["ood.rotate"], .string("fashion-mnist:test@rotate"))
        XCTAssertEqual(config["ood.blur"], .string("fashion-mnist:test@blur"))
        XCTAssertEqual(config["a.b.c"], .double(-.infinity))
        XCTAssertEqual(config.count, 20)
    }

    func testTOMLCRLFAndEmpty() throws {
        XCTAssertEqual(try ConfigFile.parseTOML("a = 1\r\nb = \"x\"\r\n"), ["a": .int(1), "b": .string("x")])
        XCTAssertEqual(try ConfigFile.parseTOML("\n# only a comment\n"), [:])
    }

    func testTOMLErrorsNameFileAndLine() {
        let cases: [(String, Int, String)] = [
            ("a = 1\nb 2\n", 2, "expected '=' after key 'b'"),
            ("a = \"open\n", 1, "unterminated string"),
            ("\n\nx = {a = 1}\n", 3, "inline tables ({...}) are not supported"),
            ("[[runs]]\n", 1, "arrays of tables ([[...]]) are not supported"),
            ("a = 1\n# c\na = 2\n", 3, "duplicate key 'a'"),
            ("[t]\nk = 1\n[t]\n", 3, "table [t] is defined twice"),
            ("method = daft\n", 1, "invalid value 'daft' (strings must be quoted)"),
            ("a = 1 2\n", 1, "unexpected text after the value: '2'"),
            ("s = \"\"\"x\"\"\"\n", 1, "multi-line strings"),
            ("d = 2024-01-01\n", 1, "dates and times are not supported"),
            ("a = [1,\n2\n", 3, "unterminated array (opened on line 1)"),
            ("a = [1 2]\n", 1, "expected ',' or ']' in array"),
            ("a =\n", 1, "missing value after '='"),
            ("big = 99999999999999999999\n", 1, "integer '99999999999999999999' is out of range"),
            ("s = \"\\q\"\n", 1, "invalid escape '\\q'"),
            ("[t\n", 1, "expected ']' to close the table header"),
            ("k@y = 1\n", 1, "invalid character '@' in key"),
        ]
        for (text, line, phrase) in cases {
            XCTAssertThrowsError(try ConfigFile.parseTOML(text, path: "cfg.toml"), text) { error in
                let message = String(describing: error)
                XCTAssertTrue(message.hasPrefix("cfg.toml:\(line): "), "\(text.debugDescription) -> \(message)")
                XCTAssertTrue(message.contains(phrase), "\(text.debugDescription) -> \(message)")
                XCTAssertFalse(message.contains("\n"))
                XCTAssertEqual((error as? ConfigFileError)?.line, line)
            }
        }
    }

    // MARK: YAML

    func testYAMLSubset() throws {
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
        widths: [16, 32, "64", [1, 2]]
        empty: []
        extra-args:
          - --foo
          - "bar baz"   # quoted item
          - 3
        same-indent-list:
        - a
        - b
        ood:
          rotate: fashion-mnist:test@rotate
          blur: "fashion-mnist:test@blur"
          deeper:
            level: 2
        after: 1.5
        ...
        ignored: after the document end
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
        XCTAssertEqual(config["widths"], .array([.int(16), .int(32), .string("64"), .array([.int(1), .int(2)])]))
        XCTAssertEqual(config["empty"], .array([]))
        XCTAssertEqual(config["extra-args"], .array([.string("--foo"), .string("bar baz"), .int(3)]))
        XCTAssertEqual(config["same-indent-list"], .array([.string("a"), .string("b")]))
        XCTAssertEqual(config["ood.rotate"], .string("fashion-mnist:test@rotate"))
        XCTAssertEqual(config["ood.blur"], .string("fashion-mnist:test@blur"))
        XCTAssertEqual(config["ood.deeper.level"], .int(2))
        XCTAssertEqual(config["after"], .double(1.5))
        XCTAssertEqual(config.count, 20)
    }

    func testYAMLErrorsNameFileAndLine() {
        let cases: [(String, Int, String)] = [
            ("a: 1\n\tb: 2\n", 2, "tabs are not allowed for indentation"),
            ("a: |\n  text\n", 1, "block scalars (| and >) are not supported"),
            ("a: &x 1\n", 1, "anchors and aliases"),
            ("a: !!str 1\n", 1, "tags (!) are not supported"),
            ("a: 1\n  b: 2\n", 2, "unexpected indentation"),
            ("a:\n  b: 1\n c: 2\n", 3, "unexpected indentation"),
            ("list:\n  - name: x\n", 2, "mappings inside lists are not supported"),
            ("list:\n  - - x\n", 2, "nested block lists are not supported"),
            ("a: null\n", 1, "null values are not supported"),
            ("# c\na:\nb: 1\n", 2, "key 'a' has no value"),
            ("a: {x: 1}\n", 1, "flow mappings ({...}) are not supported"),
            ("a: [1, 2\n", 1, "unterminated flow list"),
            ("a: 1\na: 2\n", 2, "duplicate key 'a'"),
            ("just text\n", 1, "expected 'key: value'"),
            ("- a\n- b\n", 1, "the top level must be a mapping"),
            ("a: 1\n---\nb: 2\n", 2, "multiple documents are not supported"),
            ("a: b: c\n", 1, "nested mappings must start on their own indented line"),
            ("a: \"open\n", 1, "unterminated quoted string"),
            ("a: \"x\" y\n", 1, "unexpected text after the value"),
            ("a: plain\n  continued\n", 2, "multi-line values are not supported"),
            ("a: *ref\n", 1, "anchors and aliases"),
        ]
        for (text, line, phrase) in cases {
            XCTAssertThrowsError(try ConfigFile.parseYAML(text, path: "cfg.yml"), text) { error in
                let message = String(describing: error)
                XCTAssertTrue(message.hasPrefix("cfg.yml:\(line): "), "\(text.debugDescription) -> \(message)")
                XCTAssertTrue(message.contains(phrase), "\(text.debugDescription) -> \(message)")
                XCTAssertFalse(message.contains("\n"))
            }
        }
    }

    // MARK: load

    func testLoadChoosesFormatByExtension() throws {
        let dir = try makeCheckpointTempDir("config")
        defer { try? FileManager.default.removeItem(at: dir) }
        let toml = dir.appendingPathComponent("run.toml")
        let yaml = dir.appendingPathComponent("run.yaml")
        let yml = dir.appendingPathComponent("run.YML")
        try "epochs = 3\n[ood]\nrotate = \"r\"\n".write(to: toml, atomically: true, encoding: .utf8)
        try "epochs: 3\nood:\n  rotate: r\n".write(to: yaml, atomically: true, encoding: .utf8)
        try "epochs: 3\nood:\n  rotate: r\n".write(to: yml, atomically: true, encoding: .utf8)
        let expected: [String: ConfigValue] = ["epochs": .int(3), "ood.rotate": .string("r")]
        XCTAssertEqual(try ConfigFile.load(toml), expected)
        XCTAssertEqual(try ConfigFile.load(yaml), expected)
        XCTAssertEqual(try ConfigFile.load(yml), expected)

        let json = dir.appendingPathComponent("run.json")
        try "{}".write(to: json, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ConfigFile.load(json)) {
            XCTAssertEqual(String(describing: $0),
                           "\(json.path): unsupported config file extension '.json' (use .toml, .yaml or .yml)")
        }
        let missing = dir.appendingPathComponent("missing.toml")
        XCTAssertThrowsError(try ConfigFile.load(missing)) {
            XCTAssertEqual(String(describing: $0), "\(missing.path): no such file")
        }
        let broken = dir.appendingPathComponent("broken.yaml")
        try "a: 1\nb: [\n".write(to: broken, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ConfigFile.load(broken)) {
            XCTAssertTrue(String(describing: $0).hasPrefix("\(broken.path):2: "), "\($0)")
        }
    }

    // MARK: merging

    func testMergedArgumentsCommandLineWins() {
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
        let commandLine = ["finetune", "--method", "daft", "--batch-size=64", "--config", "run.toml", "--lr-backbone", "0.5"]
        let merged = ConfigFile.mergedArguments(commandLine: commandLine, config: config)
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

    func testMergedArgumentsTablesInversionsAndTerminator() {
        let config: [String: ConfigValue] = [
            "ood.rotate": .string("r"),
            "pretrained": .bool(true),
            "resume": .string("auto"),
            "keep": .int(2),
        ]
        // `--ood` on the command line replaces every config `ood.*`; `--no-pretrained` drops `pretrained`.
        let commandLine = ["finetune", "--ood", "mine=x", "--no-pretrained", "--", "--keep"]
        XCTAssertEqual(ConfigFile.mergedArguments(commandLine: commandLine, config: config),
                       ["finetune", "--ood", "mine=x", "--no-pretrained", "--keep", "2", "--resume", "auto", "--", "--keep"])
        XCTAssertEqual(ConfigFile.mergedArguments(commandLine: [], config: ["x": .array([.bool(true), .bool(true)])]),
                       ["--x", "--x"])
        XCTAssertEqual(ConfigFile.configPath(in: ["finetune", "--config", "a.toml"]), "a.toml")
        XCTAssertEqual(ConfigFile.configPath(in: ["finetune", "--config=b.yaml"]), "b.yaml")
        XCTAssertNil(ConfigFile.configPath(in: ["finetune", "--", "--config", "c.toml"]))
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
        XCTAssertEqual(ConfigFile.mergedArguments(commandLine: ["finetune", "--lr-head", "0.2"], config: toml),
                       ["finetune", "--lr-head", "0.2", "--batch-size", "128", "--ood", "rotate=fashion-mnist:test@rotate"])
    }
}
