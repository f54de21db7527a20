// libFuzzer target: NpyArray.decode on arbitrary bytes (launch/fuzz.sh npy).
// A decode either throws a one-line InteropError starting with the source name, or returns an array whose
// accessors for its dtype work and which re-encodes to bytes that decode to the same array.
import CFuzzMain
import DaftInterop

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let array: NpyArray
    do {
        array = try NpyArray.decode(bytes, source: "fuzz.npy")
    } catch let error as InteropError {
        precondition(error.message.hasPrefix("fuzz.npy: ") && !error.message.contains("\n"),
                     "not a one-line error naming the source: \(error.message)")
        return 0
    } catch {
        fatalError("decode threw a non-InteropError: \(error)")
    }
    let count = array.elementCount
    switch array.dtype {
    case .uint8:
        precondition((try? array.uint8s())?.count == count, "uint8s() of a valid array failed")
        precondition((try? array.int64s())?.count == count, "int64s() of a valid uint8 array failed")
    case .float32, .float64:
        precondition((try? array.floats())?.count == count, "floats() of a valid array failed")
        precondition((try? array.doubles())?.count == count, "doubles() of a valid array failed")
    default:
        precondition((try? array.int64s())?.count == count, "int64s() of a valid integer array failed")
    }
    do {
        let again = try NpyArray.decode(try array.encode(), source: "re-encoded")
        precondition(again == array, "decode(encode(array)) differs from array")
    } catch {
        fatalError("a decoded array does not round-trip: \(error)")
    }
    return 0
}
