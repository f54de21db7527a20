// libFuzzer target: IDXArray.read on a file holding arbitrary bytes, the path the MNIST `.gz` files take
// (zlib's gzread inflates gzip data and passes anything else through; launch/fuzz.sh idxgz). The input is
// written to a file in a private temporary directory because zlib's gzip reader takes a path.
// A read either throws a one-line DataError naming the file, or returns an array whose encoding, gzip-written
// and read again, gives the same array.
import CFuzzMain
import DaftData
import Foundation

// /dev/shm when there is one: the file is rewritten for every input.
let directory: URL = {
    let base = FileManager.default.fileExists(atPath: "/dev/shm") ? URL(fileURLWithPath: "/dev/shm")
        : FileManager.default.temporaryDirectory
    let url = base.appendingPathComponent("daft-fuzz-idxgz-\(getpid())")
    try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}()
let input = directory.appendingPathComponent("input-idx3-ubyte.gz")
let rewritten = directory.appendingPathComponent("rewritten-idx3-ubyte.gz")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    // plain write(2): Foundation's Data.write fsyncs, which would be most of the time per input
    let fd = open(input.path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    precondition(fd >= 0 && write(fd, data, size) == size && close(fd) == 0, "cannot write \(input.path)")
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
