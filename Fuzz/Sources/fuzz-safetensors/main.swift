// libFuzzer target: SafeTensorsFile.decode on arbitrary bytes (launch/fuzz.sh safetensors).
// A decode either throws a one-line InteropError starting with the source name, or returns a file whose every
// tensor reads through the accessors its dtype allows and which re-encodes to bytes that decode to the same file.
import CFuzzMain
import DaftInterop

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let file: SafeTensorsFile
    do {
        file = try SafeTensorsFile.decode(bytes, source: "fuzz.safetensors")
    } catch let error as InteropError {
        precondition(error.message.hasPrefix("fuzz.safetensors: ") && !error.message.contains("\n"),
                     "not a one-line error naming the source: \(error.message)")
        return 0
    } catch {
        fatalError("decode threw a non-InteropError: \(error)")
    }
    for (_, tensor) in file.tensors {
        switch tensor.dtype {
        case .F32, .F64, .F16, .BF16:
            precondition((try? tensor.floats())?.count == tensor.elementCount, "floats() of a valid tensor failed")
            precondition((try? tensor.doubles())?.count == tensor.elementCount, "doubles() of a valid tensor failed")
        case .I64, .I32, .I16, .I8, .U8:
            precondition((try? tensor.int64s())?.count == tensor.elementCount, "int64s() of a valid tensor failed")
        case .BOOL:
            precondition((try? tensor.floats()) == nil, "floats() of a BOOL tensor succeeded")
        }
    }
    do {
        let again = try SafeTensorsFile.decode(try file.encode(), source: "re-encoded")
        precondition(again == file, "decode(encode(file)) differs from file")
    } catch {
        fatalError("a decoded file does not round-trip: \(error)")
    }
    return 0
}
