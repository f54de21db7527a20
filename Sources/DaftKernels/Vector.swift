/// Explicitly vectorised helpers for the per-element loops of the kernels.
///
/// Swift does not reorder float reductions and often leaves simple loops over raw pointers scalar, so the
/// kernels use `SIMD8<Float>` (one AVX register on the x86-64-v3 build, two SSE registers on the portable
/// one) with unaligned loads and stores, plus a 4-float step and a scalar tail (rows of 28 and 14 floats). Reductions keep 16 float partial sums (two vectors) per pass, which is
/// also more accurate than one running float sum.
@usableFromInline typealias F8 = SIMD8<Float>

@inline(__always) @usableFromInline
func load8(_ p: UnsafePointer<Float>) -> F8 { UnsafeRawPointer(p).loadUnaligned(as: F8.self) }

@inline(__always) @usableFromInline
func load8(_ p: UnsafeMutablePointer<Float>) -> F8 { UnsafeRawPointer(p).loadUnaligned(as: F8.self) }

@inline(__always) @usableFromInline
func store8(_ v: F8, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: F8.self) }

@inline(__always) @usableFromInline
func load4(_ p: UnsafePointer<Float>) -> SIMD4<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Float>.self) }

@inline(__always) @usableFromInline
func load4(_ p: UnsafeMutablePointer<Float>) -> SIMD4<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Float>.self) }

@inline(__always) @usableFromInline
func store4(_ v: SIMD4<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD4<Float>.self)
}

/// max(v, 0) lane-wise, propagating NaN like PyTorch's ReLU (no call to the NaN-aware `pointwiseMax`).
@inline(__always) @usableFromInline
func relu8(_ v: F8) -> F8 { v.replacing(with: 0, where: v .< 0) }

enum Vec {
    /// dst[i] = src[i].
    @inline(__always)
    static func copy(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        // long spans: libc's memmove picks the widest vectors the CPU has at run time
        if n >= 128 { dst.update(from: src, count: n); return }
        var i = 0
        while i &+ 8 <= n { store8(load8(src + i), dst + i); i &+= 8 }
        if i &+ 4 <= n { store4(load4(src + i), dst + i); i &+= 4 }
        while i < n { dst[i] = src[i]; i &+= 1 }
    }

    /// dst[i] = 0.
    @inline(__always)
    static func zero(_ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        if n >= 128 { dst.update(repeating: 0, count: n); return }
        var i = 0
        let z = F8()
        while i &+ 8 <= n { store8(z, dst + i); i &+= 8 }
        while i < n { dst[i] = 0; i &+= 1 }
    }

    /// dst[i] += src[i].
    @inline(__always)
    static func addInPlace(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        while i &+ 8 <= n { store8(load8(dst + i) + load8(src + i), dst + i); i &+= 8 }
        if i &+ 4 <= n { store4(load4(dst + i) + load4(src + i), dst + i); i &+= 4 }
        while i < n { dst[i] += src[i]; i &+= 1 }
    }

    /// dst[i] = src[i] + b.
    @inline(__always)
    static func copyAddingScalar(_ src: UnsafePointer<Float>, _ b: Float, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        let bv = F8(repeating: b)
        while i &+ 8 <= n { store8(load8(src + i) + bv, dst + i); i &+= 8 }
        if i &+ 4 <= n { store4(load4(src + i) + SIMD4(repeating: b), dst + i); i &+= 4 }
        while i < n { dst[i] = src[i] + b; i &+= 1 }
    }

    /// Σ p[i] in float with 16 partial sums.
    @inline(__always)
    static func sum(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
        var a = F8(), b = F8()
        var i = 0
        while i &+ 16 <= n { a += load8(p + i); b += load8(p + i + 8); i &+= 16 }
        if i &+ 8 <= n { a += load8(p + i); i &+= 8 }
        var s = (a + b).sum()
        while i < n { s += p[i]; i &+= 1 }
        return s
    }
}
