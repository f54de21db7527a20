import DaftInterop
import Foundation

extension ImageDataset {
    /// Loads a dataset from two NPY files.
    ///
    /// - `x`: uint8 N×C×H×W (NCHW), or uint8 N×H×W (read as C = 1). float32/float64 arrays of the same
    ///   shapes are accepted only with values in [0, 1]; they are converted with `round(v · 255)`.
    ///   Float values outside [0, 1] are rejected (convert [0, 255] data to uint8 first) so that the
    ///   fixed preprocessing `pixel/255` is never applied to the wrong range, and so are NaN and ±inf; the
    ///   error names the file, the image index and the element.
    /// - `y`: int64, int32 or uint8 labels, shape N (or N×1); labels must be in `0 ..< numClasses`.
    /// - `numClasses == nil` means "largest label + 1".
    ///
    /// Errors are one-line `DataError`s (shape, dtype, range problems) or `InteropError`s (unreadable
    /// NPY), each naming the file.
    public static func loadNPY(x: URL, y: URL, numClasses: Int? = nil, name: String? = nil) throws -> ImageDataset {
        let xa = try NpyArray.read(x)
        let ya = try NpyArray.read(y)
        let dims: [Int]
        switch xa.shape.count {
        case 4: dims = xa.shape
        case 3: dims = [xa.shape[0], 1, xa.shape[1], xa.shape[2]]
        default:
            throw DataError(file: x, "expected images of shape N×C×H×W or N×H×W, got shape \(xa.shape)")
        }
        let pixels: [UInt8]
        switch xa.dtype {
        case .uint8:
            pixels = try xa.uint8s()
        case .float32:
            pixels = try pixelBytes(fromUnitFloats: try xa.floats(), imageSize: dims[1] * dims[2] * dims[3], file: x)
        case .float64:
            // as Double, so a value beyond Float's range is reported as itself rather than as inf
            pixels = try pixelBytes(fromUnitFloats: try xa.doubles(), imageSize: dims[1] * dims[2] * dims[3], file: x)
        default:
            throw DataError(file: x, "unsupported image dtype \(xa.dtype.descr); expected uint8 (or float32/float64 in [0, 1])")
        }
        guard ya.shape.count == 1 || (ya.shape.count == 2 && ya.shape[1] == 1) else {
            throw DataError(file: y, "expected labels of shape N, got shape \(ya.shape)")
        }
        let labels64: [Int64]
        switch ya.dtype {
        case .int64, .int32, .uint8: labels64 = try ya.int64s()
        default: throw DataError(file: y, "unsupported label dtype \(ya.dtype.descr); expected int64, int32 or uint8")
        }
        guard labels64.count == dims[0] else {
            throw DataError(file: y, "has \(labels64.count) labels but \(x.lastPathComponent) has \(dims[0]) images")
        }
        let classes = numClasses ?? Int((labels64.max() ?? 0) + 1)
        if let bad = labels64.firstIndex(where: { $0 < 0 || $0 >= Int64(classes) }) {
            throw DataError(file: y, "label \(labels64[bad]) at index \(bad) is out of range for \(classes) classes (0...\(classes - 1))")
        }
        do {
            return try ImageDataset(name: name ?? "npy:\(x.path),\(y.path)", channels: dims[1], height: dims[2],
                                    width: dims[3], numClasses: classes, pixels: pixels,
                                    labels: labels64.map { Int32($0) })
        } catch let e as DataError {
            throw DataError(file: x, e.message)
        }
    }

    /// Float pixels in [0, 1] as bytes, `round(v · 255)` in Float. Every value is checked before any step uses
    /// the data: the first one outside [0, 1], NaN and ±inf included (NaN compares false), is a one-line error
    /// naming `file`, the image index and the element inside the image.
    static func pixelBytes<F: BinaryFloatingPoint>(fromUnitFloats values: [F], imageSize: Int, file: URL) throws -> [UInt8] {
        if let bad = values.firstIndex(where: { !($0 >= 0 && $0 <= 1) }) {
            let (image, element) = bad.quotientAndRemainder(dividingBy: imageSize)   // imageSize > 0: element `bad` exists
            let place = "image \(image), element \(element) (flat index \(bad))"
            let value = Double(values[bad])
            if value.isFinite {
                throw DataError(file: file, "float value \(value) at \(place) is outside [0, 1]; float images must be in [0, 1] (store [0, 255] data as uint8)")
            }
            throw DataError(file: file, "float value \(value) at \(place) is not finite; float images must hold finite values in [0, 1]")
        }
        return values.map { UInt8((Float($0) * 255).rounded()) }
    }

    /// Writes the dataset as `x` (uint8, N×C×H×W) and `y` (int64, N) NPY files.
    public func exportNPY(x: URL, y: URL) throws {
        try NpyArray(uint8s: pixels, shape: [count, channels, height, width]).write(to: x)
        try NpyArray(int64s: labels.map(Int64.init), shape: [count]).write(to: y)
    }
}
