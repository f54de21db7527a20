// The 16-lane (zmm) versions of DaftKernels' direct 3×3 convolution kernels.
//
// This target is compiled with `-target-cpu skylake-avx512` (see Package.swift), so every function here may
// contain AVX-512 instructions. DaftKernels calls the two entry points only after `daft_cpu_has_avx512()`
// (CCPUID) reported the CPU and OS support, and never touches anything else of this module, so a CPU
// without AVX-512 never executes its code. Everything below the entry points is `@inline(__always)`, so the
// object file defines no shared (linker-deduplicated) helper that another module's call could resolve to.
#if arch(x86_64)

typealias F16 = SIMD16<Float>

@inline(__always)
func load16(_ p: UnsafePointer<Float>) -> F16 { UnsafeRawPointer(p).loadUnaligned(as: F16.self) }

@inline(__always)
func store16(_ v: F16, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: F16.self) }

/// One output channel's 32 pixel sums of the forward tile (two zmm registers).
struct Row32 {
    var lo = F16(), hi = F16()

    @inline(__always)
    mutating func add(_ x0: F16, _ x1: F16, _ w: Float) {
        let b = F16(repeating: w)
        lo = lo.addingProduct(x0, b); hi = hi.addingProduct(x1, b)
    }

    @inline(__always)
    func store(_ p: UnsafeMutablePointer<Float>) { store16(lo, p); store16(hi, p + 16) }
}

/// An 8 (output channels) × 32 (pixels) accumulator tile: sixteen zmm registers.
struct Tile8x32 {
    var r0 = Row32(), r1 = Row32(), r2 = Row32(), r3 = Row32()
    var r4 = Row32(), r5 = Row32(), r6 = Row32(), r7 = Row32()

    /// Adds w[j]·x[0 ..< 32] to row j, for the eight weights w[0 ..< 8].
    @inline(__always)
    mutating func add(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>) {
        let x0 = load16(x), x1 = load16(x + 16)
        r0.add(x0, x1, w[0]); r1.add(x0, x1, w[1]); r2.add(x0, x1, w[2]); r3.add(x0, x1, w[3])
        r4.add(x0, x1, w[4]); r5.add(x0, x1, w[5]); r6.add(x0, x1, w[6]); r7.add(x0, x1, w[7])
    }

    /// Stores row j at `out + j·ld`.
    @inline(__always)
    func store(_ out: UnsafeMutablePointer<Float>, _ ld: Int) {
        r0.store(out); r1.store(out + ld); r2.store(out + 2 * ld); r3.store(out + 3 * ld)
        r4.store(out + 4 * ld); r5.store(out + 5 * ld); r6.store(out + 6 * ld); r7.store(out + 7 * ld)
    }
}

/// The three kernel-column sums (kj = 0, 1, 2) of one output channel in the weight-gradient reduction.
struct Taps3 {
    var c0 = F16(), c1 = F16(), c2 = F16()

    @inline(__always)
    mutating func add(_ d: F16, _ x0: F16, _ x1: F16, _ x2: F16) {
        c0 = c0.addingProduct(d, x0); c1 = c1.addingProduct(d, x1); c2 = c2.addingProduct(d, x2)
    }

    /// Adds the three sums into the 16-float partial-sum vectors at a, a + 16, a + 32.
    @inline(__always)
    func flush(_ a: UnsafeMutablePointer<Float>) {
        store16(load16(a) + c0, a); store16(load16(a + 16) + c1, a + 16); store16(load16(a + 32) + c2, a + 32)
    }
}

@inline(__always)
func load16(_ p: UnsafeMutablePointer<Float>) -> F16 { load16(UnsafePointer(p)) }

/// Direct 3×3, stride-1 convolution kernels on 16-float vectors (AVX-512), for DaftKernels' run-time dispatch.
///
/// The data layout is DaftKernels' padded-plane layout (`Direct3x3Layout`) with 32-pixel tiles: planes of
/// rows of `wp = w + 2` floats, `planeStride` floats apart, `q` output positions per plane (a multiple of
/// 32), and weights packed in blocks of 8 output channels. Call only when `daft_cpu_has_avx512()` is 1.
public enum Direct3x3AVX512 {
    /// out[o, q] = Σ_i Σ_t pw[o, i, t] · p[i, q + shift(t)] for every 32-pixel tile and `blocks` groups of 8
    /// output channels. `p` holds `inC` padded planes, `pw` is `blocks × inC × 9 × 8` packed weights, `out`
    /// rows are `q` floats (`8·blocks` rows).
    @inline(never)
    public static func planes(_ p: UnsafePointer<Float>, inC: Int, wp: Int, planeStride S: Int, q Q: Int,
                              packed pw: UnsafePointer<Float>, blocks: Int, _ out: UnsafeMutablePointer<Float>) {
        var q = 0
        while q < Q {
            var b = 0
            while b < blocks {
                var t = Tile8x32()
                var wk = pw + b &* inC &* 72
                var src = p + q
                var i = 0
                while i < inC {
                    var r = src
                    for _ in 0..<3 {
                        t.add(r, wk); t.add(r + 1, wk + 8); t.add(r + 2, wk + 16)
                        wk += 24; r += wp
                    }
                    src += S
                    i &+= 1
                }
                t.store(out + b &* 8 &* Q + q, Q)
                b &+= 1
            }
            q &+= 32
        }
    }

    /// acc[o, i, t] += Σ_q dy[o, q] · x[i, q + shift(t)] as 16-lane partial sums, for one sample: `pd` holds
    /// `8·blocks` padded dy planes, `px` the `cin` padded input planes, `acc` is `8·blocks × cin × 9`
    /// vectors of 16 floats. `q` must be a multiple of 16.
    @inline(never)
    public static func weightGradPlanes(_ px: UnsafePointer<Float>, cin: Int, _ pd: UnsafePointer<Float>, blocks: Int,
                                        wp: Int, planeStride S: Int, q Q: Int, _ acc: UnsafeMutablePointer<Float>) {
        let rowStride = cin &* 9 &* 16
        var b = 0
        while b < blocks {
            // dy[o, oh, ow] sits at padded index q + wp + 1; it is zero at every junk q
            let d0 = pd + b &* 8 &* S + wp + 1, d1 = d0 + S, d2 = d1 + S, d3 = d2 + S
            let d4 = d3 + S, d5 = d4 + S, d6 = d5 + S, d7 = d6 + S
            for i in 0..<cin {
                for ki in 0..<3 {
                    let xr = px + i &* S + ki &* wp
                    var t0 = Taps3(), t1 = Taps3(), t2 = Taps3(), t3 = Taps3()
                    var t4 = Taps3(), t5 = Taps3(), t6 = Taps3(), t7 = Taps3()
                    var q = 0
                    while q < Q {
                        let x0 = load16(xr + q), x1 = load16(xr + q + 1), x2 = load16(xr + q + 2)
                        t0.add(load16(d0 + q), x0, x1, x2); t1.add(load16(d1 + q), x0, x1, x2)
                        t2.add(load16(d2 + q), x0, x1, x2); t3.add(load16(d3 + q), x0, x1, x2)
                        t4.add(load16(d4 + q), x0, x1, x2); t5.add(load16(d5 + q), x0, x1, x2)
                        t6.add(load16(d6 + q), x0, x1, x2); t7.add(load16(d7 + q), x0, x1, x2)
                        q &+= 16
                    }
                    // vectors of (o = 8b + j, i, t = 3ki + kj) are 16 floats apart along t
                    let a0 = acc + ((b &* 8 &* cin &+ i) &* 9 &+ ki &* 3) &* 16
                    t0.flush(a0); t1.flush(a0 + rowStride); t2.flush(a0 + 2 &* rowStride); t3.flush(a0 + 3 &* rowStride)
                    t4.flush(a0 + 4 &* rowStride); t5.flush(a0 + 5 &* rowStride)
                    t6.flush(a0 + 6 &* rowStride); t7.flush(a0 + 7 &* rowStride)
                }
            }
            b &+= 1
        }
    }
}
#endif
