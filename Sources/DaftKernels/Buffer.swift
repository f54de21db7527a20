import Foundation

/// A growable, owned block of Float32 storage for activations, gradients and workspaces.
///
/// Layers keep one per activation and grow it only when a larger batch arrives, so the
/// training step does no allocation once shapes are stable. Storage starts on a 64-byte boundary (a cache
/// line, one AVX-512 vector).
public final class FloatBuffer {
    public private(set) var pointer: UnsafeMutablePointer<Float>
    public private(set) var capacity: Int

    public init(capacity: Int = 0) {
        self.capacity = max(capacity, 1)
        pointer = FloatBuffer.allocate(self.capacity)
    }

    deinit { pointer.deallocate() }

    private static func allocate(_ count: Int) -> UnsafeMutablePointer<Float> {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: count * MemoryLayout<Float>.stride, alignment: 64)
        let p = raw.bindMemory(to: Float.self, capacity: count)
        p.initialize(repeating: 0, count: count)
        return p
    }

    /// Makes room for at least `count` floats. Contents are not preserved when it grows.
    @discardableResult
    public func reserve(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > capacity {
            pointer.deallocate()
            capacity = count
            pointer = FloatBuffer.allocate(capacity)
        }
        return pointer
    }

    /// Sets the first `count` floats to zero (split over `ComputeThreads` when long).
    public func zero(_ count: Int) {
        precondition(count <= capacity)
        Elementwise.zero(pointer, count: count)
    }

    /// Copies the first `count` floats out into an array.
    public func array(_ count: Int) -> [Float] {
        Array(UnsafeBufferPointer(start: pointer, count: count))
    }
}

/// Geometry of a float32 NCHW activation.
public struct Shape4: Equatable, CustomStringConvertible {
    public var n: Int, c: Int, h: Int, w: Int
    public init(_ n: Int, _ c: Int, _ h: Int, _ w: Int) { self.n = n; self.c = c; self.h = h; self.w = w }
    public var count: Int { n * c * h * w }
    public var spatial: Int { h * w }
    public var description: String { "\(n)x\(c)x\(h)x\(w)" }
}
