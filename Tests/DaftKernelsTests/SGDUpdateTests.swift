import XCTest
@testable import DaftKernels

/// `Elementwise.sgdUpdate` against the per-element rule of `torch.optim.SGD` written out here in float, bit for
/// bit, for every combination of weight decay, momentum (first step or later), dampening and Nesterov, over a
/// count with two 8-float blocks and a 5-float tail.
final class SGDUpdateTests: XCTestCase {
    func testEveryElementFollowsTheScalarRule() {
        var rng = GradientCheckTests.RNG(77)
        let n = 21
        let p0 = GradientCheckTests.floats(rng.normal(n)), g = GradientCheckTests.floats(rng.normal(n))
        let b0 = GradientCheckTests.floats(rng.normal(n))
        for wd: Float in [0, 1e-2] {
            for mu: Float in [0, 0.9] {
                for damp: Float in [1, 0.75] {
                    for first in [false, true] {
                        for nesterov in [false, true] {
                            var p = p0, b = b0
                            var pRef = p0, bRef = b0
                            for i in 0..<n {
                                var d = g[i]
                                if wd != 0 { d += wd * pRef[i] }
                                if mu != 0 {
                                    let buf = first ? d : mu * bRef[i] + damp * d
                                    bRef[i] = buf
                                    d = nesterov ? d + mu * buf : buf
                                }
                                pRef[i] -= 0.1 * d
                            }
                            Elementwise.sgdUpdate(&p, gradient: g, momentum: &b, count: n, lr: 0.1, mu: mu, damp: damp, wd: wd,
                                                  first: first, nesterov: nesterov)
                            let what = "wd \(wd) mu \(mu) damp \(damp) first \(first) nesterov \(nesterov)"
                            XCTAssertEqual(p.map(\.bitPattern), pRef.map(\.bitPattern), "parameters, \(what)")
                            XCTAssertEqual(b.map(\.bitPattern), bRef.map(\.bitPattern), "momentum, \(what)")
                            XCTAssertNotEqual(p, p0, "the step moved the parameters, \(what)")
                        }
                    }
                }
            }
        }
    }
}
