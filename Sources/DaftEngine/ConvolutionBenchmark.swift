import Foundation
import DaftKernels

/// One convolution layer's forward and backward (weight and input gradients) through several kernel paths,
/// alternated round by round in one process with an sgemm sample in each round (`daft bench-conv`): which path a
/// layer should take, measured without the drift of the host between separate runs. Each path's time is the median
/// over rounds, its ratio the median of the per-round ratios to the first path.
public struct ConvolutionBenchmark {
    /// The kernel paths a 3×3 stride-1 "same" convolution can take: the direct kernels or im2col + OpenBLAS `sgemm`.
    public enum Path: String, CaseIterable, Sendable {
        case sgemm, direct
        var policy: DirectConvolutionPolicy { self == .direct ? .always : .never }
    }

    /// One path's medians, and the timed rounds they come from.
    public struct PathTime {
        public let path: Path
        /// Seconds of each timed round, in order.
        public let forwardRounds: [Double], backwardRounds: [Double]
        public let forwardMilliseconds: Double, backwardMilliseconds: Double
        public let forwardGflops: Double, backwardGflops: Double
        /// Median over rounds of this path's time / the first path's time.
        public let forwardRatio: Double, backwardRatio: Double
    }

    public struct Result {
        public let paths: [PathTime]
        /// The sgemm rate over the rounds (`GemmPeak`), the yardstick for the GFLOP/s.
        public let sgemmGflops: Double
        /// The largest difference between any path's forward output, weight gradient or input gradient and the
        /// first path's, relative to the largest magnitude of that tensor: the paths compute the same thing.
        public let largestRelativeDifference: Double
    }

    public var geometry: ConvGeometry
    public var input: Shape4
    public var paths: [Path]
    /// Timed rounds (after one untimed warm-up round).
    public var rounds: Int

    public init(geometry: ConvGeometry, input: Shape4, paths: [Path], rounds: Int = 7) {
        self.geometry = geometry; self.input = input; self.paths = paths; self.rounds = rounds
    }

    public func run() -> Result {
        let g = geometry, xs = input, ys = g.outputShape(xs)
        var rng = SplitMix64(seed: 7)
        func tensor(_ n: Int) -> FloatBuffer {
            let b = FloatBuffer(capacity: n)
            for i in 0..<n { b.pointer[i] = Float(rng.nextNormal()) }
            return b
        }
        let x = tensor(xs.count), w = tensor(g.weightCount), dy = tensor(ys.count)
        let outputs = paths.map { _ in (y: FloatBuffer(capacity: ys.count), dW: FloatBuffer(capacity: g.weightCount), dx: FloatBuffer(capacity: xs.count)) }
        let workspaces = paths.map { ConvWorkspace(directPolicy: $0.policy) }
        let peak = GemmPeak()
        var forward = paths.map { _ in [Double]() }, backward = forward
        func seconds(_ body: () -> Void) -> Double {
            let t0 = DispatchTime.now().uptimeNanoseconds
            body()
            return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        }
        for round in 0...rounds {
            if round > 0 { peak.sample() }
            for (i, ws) in workspaces.enumerated() {
                let o = outputs[i]
                let f = seconds { Conv2D.forward(x.pointer, xs, weight: w.pointer, bias: nil, g, o.y.pointer, workspace: ws) }
                o.dW.zero(g.weightCount)
                let b = seconds {
                    Conv2D.backward(x.pointer, xs, weight: w.pointer, g, dy: dy.pointer, dWeight: o.dW.pointer, dBias: nil,
                                    dx: o.dx.pointer, overwritingDx: true, workspace: ws)
                }
                if round > 0 { forward[i].append(f); backward[i].append(b) }
            }
        }
        let flops = 2 * Double(g.forwardMACs(xs))
        let times = paths.indices.map { i -> PathTime in
            let f = Self.median(forward[i]), b = Self.median(backward[i])
            return PathTime(path: paths[i], forwardRounds: forward[i], backwardRounds: backward[i], forwardMilliseconds: 1000 * f, backwardMilliseconds: 1000 * b,
                            forwardGflops: flops / f / 1e9, backwardGflops: 2 * flops / b / 1e9,
                            forwardRatio: Self.median(zip(forward[i], forward[0]).map { $0 / $1 }),
                            backwardRatio: Self.median(zip(backward[i], backward[0]).map { $0 / $1 }))
        }
        var largest = 0.0
        for i in outputs.indices.dropFirst() {
            for (a, b, n) in [(outputs[i].y, outputs[0].y, ys.count), (outputs[i].dW, outputs[0].dW, g.weightCount),
                              (outputs[i].dx, outputs[0].dx, xs.count)] {
                var difference: Float = 0, scale: Float = 0
                for j in 0..<n { difference = max(difference, abs(a.pointer[j] - b.pointer[j])); scale = max(scale, abs(b.pointer[j])) }
                largest = max(largest, Double(difference / max(scale, .leastNormalMagnitude)))
            }
        }
        return Result(paths: times, sgemmGflops: peak.gflops, largestRelativeDifference: largest)
    }

    /// The middle value (the upper one of an even count).
    static func median(_ v: [Double]) -> Double { v.sorted()[v.count / 2] }
}
