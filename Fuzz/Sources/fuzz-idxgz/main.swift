// libFuzzer target: IDXArray.read on a file holding arbitrary bytes, the path the MNIST `.gz` files take
// (zlib's gzread inflates gzip data and passes anything else through; launch/fuzz.sh idxgz). The input is
// written to a file in a private temporary directory because zlib's gzip reader takes a path.
// A read either throws a one-line DataError naming the file, or returns an array whose encoding, gzip-written
// and read again, gives the same array.
import CFuzzMain
import DaftData
import Foundation

let directory: URL = {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("daft-fuzz-idxgz-\(getpid())")
    try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}()
let input = directory.appendingPathComponent("input-idx3-ubyte.gz")
let rewritten = directory.appendingPathComponent("rewritten-idx3-ubyte.gz")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(bytes: data, count: size)
    try! bytes.write(to: input)
    do {
        let array = try IDXArray.read(input)
        precondition(array.bytes.count == array.dims.reduce(1, *), "element count does not match the dimensions")
        try array.write(to: rewritten, gzip: true)
        let again = try IDXArray.read(rewritten)
        precondition(again.dims == array.dims && again.bytes == array.bytes, "gzip write + read changed the array")
    } catch let error as DataError {
        precondition(error.message.hasPrefix(input.path + ": ") && !error.message.contains("\n"),
                     "not a one-line error naming the file: \(error.message)")
    } catch {
        fatalError("read threw a non-DataError: \(error)")
    }
    return 0
}
