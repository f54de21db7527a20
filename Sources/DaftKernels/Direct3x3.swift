import Foundation
import CCPUID
#if arch(x86_64)
import DaftKernelsAVX512
#endif

/// Which implementation of the direct 3×3 kernels `Conv2D` runs.
///
/// `.avx512` is the 16-lane (zmm) family of the DaftKernelsAVX512 target: 8 output channels × 32 pixels per
/// register tile. It is used only when the CPU and OS support AVX-512 (`avx512Supported`, a cpuid/xgetbv
/// probe); asking for it elsewhere runs `.avx2`. `.avx2` is the 8-lane family of this file (4 output channels
/// × 24 pixels): AVX2 + FMA on the default x86_64 build, baseline SSE with DAFT_PORTABLE=1, NEON on arm64.
/// The two differ only by float rounding.
public enum DirectKernelISA: Equatable, Sendable {
    case avx2
    case avx512

    /// Whether this CPU implements AVX-512 F/CD/BW/DQ/VL and the OS saves the zmm state.
    public static let avx512Supported: Bool = daft_cpu_has_avx512() != 0

    /// The default of every `ConvWorkspace`: `.avx512` when supported, unless the environment of the process
    /// sets DAFT_NO_AVX512=1.
    public static let preferred: DirectKernelISA =
        preferred(environment: ProcessInfo.processInfo.environment, avx512Supported: avx512Supported)

    /// The choice `preferred` makes for a given environment and CPU.
    public static func preferred(environment: [String: String], avx512Supported: Bool) -> DirectKernelISA {
        avx512Supported && environment["DAFT_NO_AVX512"] != "1" ? .avx512 : .avx2
    }
}

/// Which 3×3, stride-1, padding-1 convolutions `Conv2D` computes with its direct kernels instead of
/// im2col + OpenBLAS `sgemm`.
public enum DirectConvolutionPolicy: Equatable, Sendable {
    /// The layers where the direct kernels measured faster: few channels (`Conv2D.directMaxChannels`) on
    /// planes of at least `Conv2D.directMinSpatial` pixels.
    case automatic
    /// Every convolution goes through im2col + `sgemm`.
    case never
    /// Every 3×3, stride-1, padding-1 convolution uses the direct kernels (tests and measurements).
    case always
}

/// Layout of one zero-padded plane for the direct 3×3 kernels, holding the planes of `samples` samples side by side.
///
/// The `samples` planes of `h×w` of one channel are stored next to each other in rows of `wp = samples·(w + 1) + 1`
/// floats, with one zero column before, between and after them and a zero row above and below: sample j's
/// pixel (r, c) sits at padded row r + 1, column 1 + j·(w + 1) + c. Output pixel (oh, ow) of sample j gets the
/// flat index `q = oh·wp + j·(w + 1) + ow`, and kernel tap (ki, kj) then reads the padded plane at
/// `q + ki·wp + kj`: every tap is a constant shift, so a run of `tile` consecutive q (24 = three 8-float
/// vectors, or 32 = two 16-float vectors on the AVX-512 path) is computed with plain unaligned loads. The q of
/// the zero columns are junk, never copied out. Side by side, small planes waste fewer lanes on junk
/// (`samplesPerGroup`). `q` rounds `h·wp` up to whole tiles and `stride` (a multiple of 16 floats) leaves
/// zeroed room for the farthest tap of the last tile.
struct Direct3x3Layout {
    let h: Int, w: Int, samples: Int, wp: Int, q: Int, stride: Int

    init(h: Int, w: Int, samples: Int = 1, tile: Int = 24) {
        precondition(samples >= 1)
        self.h = h; self.w = w; self.samples = samples
        wp = samples * (w + 1) + 1
        q = (h * wp + tile - 1) / tile * tile
        stride = (q + 2 * wp + 2 + 15) / 16 * 16
    }

    /// The output index of sample j's pixel (oh, 0).
    @inline(__always) func outputRow(_ oh: Int, sample j: Int) -> Int { oh * wp + j * (w + 1) }

    /// Useful output lanes per computed lane: `samples·h·w / q`.
    var utilisation: Double { Double(samples * h * w) / Double(q) }

    /// How many samples a group lays side by side for planes of `h×w`: the fewest whose utilisation is
    /// within 1% of the best one with at most `Direct3x3Layout.maxGroupRowFloats` floats of rows per plane
    /// (7×7: 8 samples, 68% → 86% of the lanes useful; 14×14: 3, 82% → 91%; 28×28 and larger: 1).
    static func samplesPerGroup(h: Int, w: Int, tile: Int) -> Int {
        let most = max(1, (maxGroupRowFloats / h - 1) / (w + 1))     // largest s with h·(s·(w+1)+1) ≤ the bound
        func utilisation(_ s: Int) -> Double { Direct3x3Layout(h: h, w: w, samples: s, tile: tile).utilisation }
        let best = (1...most).lazy.map(utilisation).max()!
        return (1...most).first { utilisation($0) >= best - 0.01 }!
    }

    /// Bound on `h·wp` of a group (floats): keeps a group's padded planes and kernel outputs in L2.
    static let maxGroupRowFloats = 1024

    /// Copies `channels` planes of each of `samples` samples of `src` (NCHW, h×w planes, sample k at
    /// `src + k·sampleStride`) into `dst` with zero borders, separators and tails, and zeroes the planes
    /// `channels ..< paddedChannels`.
    func pad(_ src: UnsafePointer<Float>, sampleStride: Int, channels: Int, paddedChannels: Int,
             _ dst: UnsafeMutablePointer<Float>) {
        let hw = h * w
        for c in 0..<channels {
            let d = dst + c * stride
            Vec.zero(d, wp)                                   // row 0
            for r in 0..<h {
                let row = d + (r + 1) * wp
                row[0] = 0
                for j in 0..<samples {
                    Vec.copy(src + j * sampleStride + c * hw + r * w, row + 1 + j * (w + 1), w)
                    row[(j + 1) * (w + 1)] = 0                // the column after sample j
                }
            }
            let tail = (h + 1) * wp
            Vec.zero(d + tail, stride - tail)
        }
        if paddedChannels > channels { Vec.zero(dst + channels * stride, (paddedChannels - channels) * stride) }
    }
}

/// The sample groups of one `ComputeThreads` part for the direct kernels: the part's samples (an even
/// split of the batch) in runs of `Direct3x3Layout.samplesPerGroup`, the last run shorter.
struct Direct3x3Groups: Sequence, IteratorProtocol {
    var next0: Int
    let end: Int, size: Int
    init(_ samples: Range<Int>, size: Int) { next0 = samples.lowerBound; end = samples.upperBound; self.size = size }
    mutating func next() -> (n0: Int, count: Int)? {
        guard next0 < end else { return nil }
        let g = (n0: next0, count: Swift.min(size, end - next0))
        next0 += g.count
        return g
    }
}

/// A 4 (output channels) × 24 (pixels) accumulator tile: twelve 8-float vectors kept in registers.
struct Tile4x24 {
    var c00 = F8(), c01 = F8(), c02 = F8()
    var c10 = F8(), c11 = F8(), c12 = F8()
    var c20 = F8(), c21 = F8(), c22 = F8()
    var c30 = F8(), c31 = F8(), c32 = F8()

    /// Adds w[j]·x[0 ..< 24] to row j, for the four weights w[0 ..< 4].
    @inline(__always)
    mutating func add(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>) {
        let x0 = load8(x), x1 = load8(x + 8), x2 = load8(x + 16)
        var b = F8(repeating: w[0])
        c00 = c00.addingProduct(x0, b); c01 = c01.addingProduct(x1, b); c02 = c02.addingProduct(x2, b)
        b = F8(repeating: w[1])
        c10 = c10.addingProduct(x0, b); c11 = c11.addingProduct(x1, b); c12 = c12.addingProduct(x2, b)
        b = F8(repeating: w[2])
        c20 = c20.addingProduct(x0, b); c21 = c21.addingProduct(x1, b); c22 = c22.addingProduct(x2, b)
        b = F8(repeating: w[3])
        c30 = c30.addingProduct(x0, b); c31 = c31.addingProduct(x1, b); c32 = c32.addingProduct(x2, b)
    }

    /// Stores row j at `out + j·ld`.
    @inline(__always)
    func store(_ out: UnsafeMutablePointer<Float>, _ ld: Int) {
        store8(c00, out); store8(c01, out + 8); store8(c02, out + 16)
        let o1 = out + ld, o2 = o1 + ld, o3 = o2 + ld
        store8(c10, o1); store8(c11, o1 + 8); store8(c12, o1 + 16)
        store8(c20, o2); store8(c21, o2 + 8); store8(c22, o2 + 16)
        store8(c30, o3); store8(c31, o3 + 8); store8(c32, o3 + 16)
    }
}

extension Conv2D {
    /// `.automatic` uses the direct kernels (either family) when input and output channels are at most this many…
    public static let directMaxChannels = 128
    /// …and the input plane has at least this many pixels. Measured with the 8-lane kernels on a Zen 3 (samples
    /// side by side, `Direct3x3Layout.samplesPerGroup`): resnet20 (28×28, batch 128) step 455 → 395–403 ms with
    /// its 64-channel 7×7 layers direct; at 224 px (resnet18/50, batch 16) the 64-channel 56×56 layers direct
    /// save 5–10% of the 3×3 time. Layer by layer against im2col + `sgemm` (`daft bench-conv`, forward / backward
    /// time): 128 channels direct take 0.83–0.95 / 0.80–0.99 of the time at 7×7 to 56×56, 192 and 256 channels
    /// 0.96–1.09 / 0.98–1.07 (docs/benchmarks.md), so the bound is 128. The AVX-512 kernels had the 64-channel
    /// bounds on a Zen 4 (resnet20 step 354 → 335 ms with the 7×7 layers direct); 128 is not measured there.
    public static let directMinSpatial = 49

    /// Whether `forward`/`backward` take the direct 3×3 path for this geometry and input under `policy`,
    /// with the direct kernels `kernels` (both families have the same `.automatic` bounds).
    public static func usesDirect3x3(_ g: ConvGeometry, _ xs: Shape4, policy: DirectConvolutionPolicy,
                                     kernels: DirectKernelISA = .preferred) -> Bool {
        guard g.kh == 3 && g.kw == 3 && g.strideH == 1 && g.strideW == 1 && g.padH == 1 && g.padW == 1 else { return false }
        switch policy {
        case .never: return false
        case .always: return true
        case .automatic:
            return g.cin <= directMaxChannels && g.cout <= directMaxChannels && xs.spatial >= directMinSpatial
        }
    }

    /// Packs `cout × cin × 9` weights as `⌈cout/group⌉` blocks of `cin·9` groups of `group` (4, or 8 on the
    /// AVX-512 path) output channels (zero for channels past `cout`); with `flipTransposed` it packs the
    /// input-gradient weights instead, whose output channels are `cin`, input channels `cout`, taps reversed.
    static func packDirect3x3(_ w: UnsafePointer<Float>, cin: Int, cout: Int, flipTransposed: Bool, group: Int = 4,
                              _ dst: UnsafeMutablePointer<Float>) {
        let outC = flipTransposed ? cin : cout, inC = flipTransposed ? cout : cin
        let blocks = (outC + group - 1) / group
        for b in 0..<blocks {
            for i in 0..<inC {
                for t in 0..<9 {
                    let d = dst + ((b * inC + i) * 9 + t) * group
                    for j in 0..<group {
                        let o = b * group + j
                        if o >= outC { d[j] = 0; continue }
                        d[j] = flipTransposed ? w[(i * cin + o) * 9 + 8 - t] : w[(o * cin + i) * 9 + t]
                    }
                }
            }
        }
    }

    /// out[o, q] = Σ_i Σ_t pw[o, i, t] · p[i, q + shift(t)] for every q-tile, `blocks` groups of 4 output
    /// channels; `p` holds `inC` padded planes of layout `L`, `out` rows are `L.q` floats.
    static func direct3x3Planes(_ p: UnsafePointer<Float>, inC: Int, _ L: Direct3x3Layout,
                                packed pw: UnsafePointer<Float>, blocks: Int, _ out: UnsafeMutablePointer<Float>) {
        let wp = L.wp, S = L.stride, Q = L.q
        var q = 0
        while q < Q {
            for b in 0..<blocks {
                var t = Tile4x24()
                var wk = pw + b * inC * 36
                var src = p + q
                for _ in 0..<inC {
                    var r = src
                    for _ in 0..<3 {
                        t.add(r, wk); t.add(r + 1, wk + 4); t.add(r + 2, wk + 8)
                        wk += 12; r += wp
                    }
                    src += S
                }
                t.store(out + b * 4 * Q + q, Q)
            }
            q += 24
        }
    }

    /// Forward of a 3×3, stride-1, padding-1 convolution, a group of samples at a time (the samples split over
    /// `ComputeThreads` parts, each cut into `Direct3x3Layout.samplesPerGroup` groups): pad, direct kernel,
    /// copy the valid columns out (adding the bias). Every output is the same sum in the same order whatever
    /// the grouping and thread count.
    static func direct3x3Forward(_ x: UnsafePointer<Float>, _ xs: Shape4, weight: UnsafePointer<Float>,
                                 bias: UnsafePointer<Float>?, _ g: ConvGeometry, _ y: UnsafeMutablePointer<Float>,
                                 workspace ws: ConvWorkspace) {
        let k = ws.directKernels
        let hw = xs.spatial, blocks = (g.cout + k.group - 1) / k.group
        let groupSize = Direct3x3Layout.samplesPerGroup(h: xs.h, w: xs.w, tile: k.tile)
        let full = Direct3x3Layout(h: xs.h, w: xs.w, samples: min(groupSize, xs.n), tile: k.tile)
        let pw = ws.directWeights.reserve(blocks * k.group * g.cin * 9)
        packDirect3x3(weight, cin: g.cin, cout: g.cout, flipTransposed: false, group: k.group, pw)
        let parts = ComputeThreads.parts(xs.n)
        let scratch = ws.scratch(parts: parts)
        ComputeThreads.run(parts) { part in
            let p = scratch[part].padded.reserve(g.cin * full.stride)
            let out = scratch[part].gemmOut.reserve(blocks * k.group * full.q)
            for group in Direct3x3Groups(ComputeThreads.range(part, of: parts, total: xs.n), size: groupSize) {
                let L = Direct3x3Layout(h: xs.h, w: xs.w, samples: group.count, tile: k.tile)
                L.pad(x + group.n0 * g.cin * hw, sampleStride: g.cin * hw, channels: g.cin, paddedChannels: g.cin, p)
                k.planes(p, inC: g.cin, L, packed: pw, blocks: blocks, out)
                for j in 0..<group.count {
                    for co in 0..<g.cout {
                        let src = out + co * L.q, dst = y + ((group.n0 + j) * g.cout + co) * hw
                        for oh in 0..<xs.h {
                            let row = src + L.outputRow(oh, sample: j)
                            if let bias {
                                Vec.copyAddingScalar(row, bias[co], dst + oh * xs.w, xs.w)
                            } else {
                                Vec.copy(row, dst + oh * xs.w, xs.w)
                            }
                        }
                    }
                }
            }
        }
    }

    /// acc[o, i, t] += Σ_q dy[o, q] · x[i, q + shift(t)] as 8-lane partial sums, for one group of samples: `pd` holds
    /// `4·blocks` padded dy planes, `px` the `cin` padded input planes, `acc` is `4·blocks × cin × 9` vectors.
    static func direct3x3WeightGradPlanes(_ px: UnsafePointer<Float>, cin: Int, _ pd: UnsafePointer<Float>, blocks: Int,
                                          _ L: Direct3x3Layout, _ acc: UnsafeMutablePointer<Float>) {
        let wp = L.wp, S = L.stride, Q = L.q
        for b in 0..<blocks {
            // dy[o, oh, ow] sits at padded index q + wp + 1; it is zero at every junk q
            let d0 = pd + b * 4 * S + wp + 1, d1 = d0 + S, d2 = d1 + S, d3 = d2 + S
            for i in 0..<cin {
                for ki in 0..<3 {
                    let xr = px + i * S + ki * wp
                    var t = Tile4x24()
                    var q = 0
                    while q < Q {
                        let x0 = load8(xr + q), x1 = load8(xr + q + 1), x2 = load8(xr + q + 2)
                        var d = load8(d0 + q)
                        t.c00 = t.c00.addingProduct(d, x0); t.c01 = t.c01.addingProduct(d, x1); t.c02 = t.c02.addingProduct(d, x2)
                        d = load8(d1 + q)
                        t.c10 = t.c10.addingProduct(d, x0); t.c11 = t.c11.addingProduct(d, x1); t.c12 = t.c12.addingProduct(d, x2)
                        d = load8(d2 + q)
                        t.c20 = t.c20.addingProduct(d, x0); t.c21 = t.c21.addingProduct(d, x1); t.c22 = t.c22.addingProduct(d, x2)
                        d = load8(d3 + q)
                        t.c30 = t.c30.addingProduct(d, x0); t.c31 = t.c31.addingProduct(d, x1); t.c32 = t.c32.addingProduct(d, x2)
                        q &+= 8
                    }
                    // vectors of (o = 4b + j, i, t = 3ki + kj) are 8 floats apart along t
                    let a0 = acc + ((b * 4 * cin + i) * 9 + ki * 3) * 8, rowStride = cin * 9 * 8
                    let a1 = a0 + rowStride, a2 = a1 + rowStride, a3 = a2 + rowStride
                    store8(load8(a0) + t.c00, a0); store8(load8(a0 + 8) + t.c01, a0 + 8); store8(load8(a0 + 16) + t.c02, a0 + 16)
                    store8(load8(a1) + t.c10, a1); store8(load8(a1 + 8) + t.c11, a1 + 8); store8(load8(a1 + 16) + t.c12, a1 + 16)
                    store8(load8(a2) + t.c20, a2); store8(load8(a2 + 8) + t.c21, a2 + 8); store8(load8(a2 + 16) + t.c22, a2 + 16)
                    store8(load8(a3) + t.c30, a3); store8(load8(a3 + 8) + t.c31, a3 + 8); store8(load8(a3 + 16) + t.c32, a3 + 16)
                }
            }
        }
    }

    /// Backward of a 3×3, stride-1, padding-1 convolution, a group of samples at a time (the samples split over
    /// `ComputeThreads` parts as in the forward, each part with its own weight-gradient partial sums, added in
    /// part order): dW by the direct reduction, dx as the direct convolution of padded dy with the flipped,
    /// transposed kernel, added into dx or, with `overwritingDx`, written there.
    static func direct3x3Backward(_ x: UnsafePointer<Float>, _ xs: Shape4, weight: UnsafePointer<Float>, _ g: ConvGeometry,
                                  dy: UnsafePointer<Float>, dWeight: UnsafeMutablePointer<Float>?,
                                  dBias: UnsafeMutablePointer<Float>?, dx: UnsafeMutablePointer<Float>?,
                                  overwritingDx: Bool = false, workspace ws: ConvWorkspace) {
        let k = ws.directKernels
        let hw = xs.spatial
        let outBlocks = (g.cout + k.group - 1) / k.group, inBlocks = (g.cin + k.group - 1) / k.group
        if let dBias { accumulateBiasGradient(dy, g.outputShape(xs), dBias) }
        if dWeight == nil && dx == nil { return }
        let groupSize = Direct3x3Layout.samplesPerGroup(h: xs.h, w: xs.w, tile: k.tile)
        let full = Direct3x3Layout(h: xs.h, w: xs.w, samples: min(groupSize, xs.n), tile: k.tile)
        let accCount = outBlocks * k.group * g.cin * 9 * k.lanes
        let pw = dx != nil ? ws.directWeights.reserve(inBlocks * k.group * g.cout * 9) : ws.directWeights.pointer
        if dx != nil { packDirect3x3(weight, cin: g.cin, cout: g.cout, flipTransposed: true, group: k.group, pw) }
        let parts = ComputeThreads.parts(xs.n)
        let scratch = ws.scratch(parts: parts)
        ComputeThreads.run(parts) { part in
            let s = scratch[part]
            let pd = s.paddedGrad.reserve(outBlocks * k.group * full.stride)
            let px = dWeight != nil ? s.padded.reserve(g.cin * full.stride) : s.padded.pointer
            let acc = dWeight != nil ? s.weightGradAcc.reserve(accCount) : s.weightGradAcc.pointer
            if dWeight != nil { Vec.zero(acc, accCount) }
            let out = dx != nil ? s.dxOut.reserve(inBlocks * k.group * full.q) : s.dxOut.pointer
            for group in Direct3x3Groups(ComputeThreads.range(part, of: parts, total: xs.n), size: groupSize) {
                let L = Direct3x3Layout(h: xs.h, w: xs.w, samples: group.count, tile: k.tile)
                L.pad(dy + group.n0 * g.cout * hw, sampleStride: g.cout * hw, channels: g.cout,
                      paddedChannels: outBlocks * k.group, pd)
                if dWeight != nil {
                    L.pad(x + group.n0 * g.cin * hw, sampleStride: g.cin * hw, channels: g.cin, paddedChannels: g.cin, px)
                    k.weightGradPlanes(px, cin: g.cin, pd, blocks: outBlocks, L, acc)
                }
                if let dx {
                    k.planes(pd, inC: g.cout, L, packed: pw, blocks: inBlocks, out)
                    for j in 0..<group.count {
                        for ci in 0..<g.cin {
                            let src = out + ci * L.q, dst = dx + ((group.n0 + j) * g.cin + ci) * hw
                            for ih in 0..<xs.h {
                                if overwritingDx {
                                    Vec.copy(src + L.outputRow(ih, sample: j), dst + ih * xs.w, xs.w)
                                } else {
                                    Vec.addInPlace(src + L.outputRow(ih, sample: j), dst + ih * xs.w, xs.w)
                                }
                            }
                        }
                    }
                }
            }
        }
        if let dWeight {
            // the parts' partial sums, added in part order; the output channels split over the threads
            let floatsPerChannel = g.cin * 9 * k.lanes
            ComputeThreads.forEachRange(g.cout, minimumPerPart: max(1, Elementwise.floatsPerPart / floatsPerChannel)) { cos in
                for part in 0..<parts {
                    let acc = scratch[part].weightGradAcc.pointer
                    for co in cos {
                        for t in 0..<(g.cin * 9) {
                            let a = acc + (co * g.cin * 9 + t) * k.lanes
                            dWeight[co * g.cin * 9 + t] += k.lanes == 16 ? (load8(a) + load8(a + 8)).sum() : load8(a).sum()
                        }
                    }
                }
            }
        }
    }
}

extension DirectKernelISA {
    /// Whether the 16-lane kernels run: `.avx512` on a CPU that supports it.
    var wide: Bool { self == .avx512 && DirectKernelISA.avx512Supported }
    /// Pixels per register tile (the layout's `q` granularity).
    var tile: Int { wide ? 32 : 24 }
    /// Output channels per register tile (the weight-packing group).
    var group: Int { wide ? 8 : 4 }
    /// Floats per weight-gradient partial-sum vector.
    var lanes: Int { wide ? 16 : 8 }

    /// The forward / input-gradient tile loop of this family (`Conv2D.direct3x3Planes` or its AVX-512 twin).
    func planes(_ p: UnsafePointer<Float>, inC: Int, _ L: Direct3x3Layout, packed pw: UnsafePointer<Float>, blocks: Int,
                _ out: UnsafeMutablePointer<Float>) {
        #if arch(x86_64)
        if wide {
            Direct3x3AVX512.planes(p, inC: inC, wp: L.wp, planeStride: L.stride, q: L.q, packed: pw, blocks: blocks, out)
            return
        }
        #endif
        Conv2D.direct3x3Planes(p, inC: inC, L, packed: pw, blocks: blocks, out)
    }

    /// The weight-gradient reduction of this family (`Conv2D.direct3x3WeightGradPlanes` or its AVX-512 twin).
    func weightGradPlanes(_ px: UnsafePointer<Float>, cin: Int, _ pd: UnsafePointer<Float>, blocks: Int,
                          _ L: Direct3x3Layout, _ acc: UnsafeMutablePointer<Float>) {
        #if arch(x86_64)
        if wide {
            Direct3x3AVX512.weightGradPlanes(px, cin: cin, pd, blocks: blocks, wp: L.wp, planeStride: L.stride, q: L.q, acc)
            return
        }
        #endif
        Conv2D.direct3x3WeightGradPlanes(px, cin: cin, pd, blocks: blocks, L, acc)
    }
}
