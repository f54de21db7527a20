// libFuzzer target: IDXArray.parse on arbitrary (uncompressed) bytes (launch/fuzz.sh idx).
// A parse either throws a one-line DataError naming the file, or returns an array whose encoding is the input.
import CFuzzMain
import DaftData
import Foundation

let source = URL(fileURLWithPath: "/fuzz/input-idx3-ubyte")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    do {
        let array = try IDXArray.parse(bytes, file: source)
        precondition(array.bytes.count == array.dims.reduce(1, *), "element count does not match the dimensions")
        precondition(array.encode() == bytes, "encode(parse(bytes)) is not the input")
    } catch let error as DataError {
        precondition(error.message.hasPrefix(source.path + ": ") && !error.message.contains("\n"),
                     "not a one-line error naming the file: \(error.message)")
    } catch {
        fatalError("parse threw a non-DataError: \(error)")
    }
    return 0
}
