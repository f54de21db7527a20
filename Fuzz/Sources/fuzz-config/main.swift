// libFuzzer target: the --config file parsers (launch/fuzz.sh config). The input, as UTF-8 text (invalid
// sequences replaced, as a file that passed the UTF-8 check would be), goes through both ConfigFile.parseTOML
// (TOMLKit) and ConfigFile.parseYAML (Yams). Each either throws a one-line ConfigFileError naming the path, or
// returns keys whose values all print.
import CFuzzMain
import DaftCommandLine

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    for (path, parse) in [("fuzz.toml", ConfigFile.parseTOML), ("fuzz.yaml", ConfigFile.parseYAML)] {
        do {
            let values = try parse(text, path)
            for (_, value) in values { _ = value.description }   // an empty key ('': 1) is legal; merging names it
        } catch let error as ConfigFileError {
            precondition(error.path == path && error.description.hasPrefix(path) && !error.description.contains("\n"),
                         "not a one-line error naming the file: \(error.description)")
        } catch {
            fatalError("\(path): the parser threw a non-ConfigFileError: \(error)")
        }
    }
    return 0
}
