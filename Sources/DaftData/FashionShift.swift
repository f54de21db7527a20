import Foundation

/// The "fashion-shift" benchmark (method.md §9): Fashion-MNIST with a clean source domain, a shifted
/// target (ID) domain, and OOD domains that add one more shift to the ID shift.
///
/// Order of operations inside an OOD domain follows a simple imaging model: scene geometry
/// (rotation, scale, elastic) and optics/resolution (blur, pixelation) act on the clean image first,
/// then the ID "sensor" shift (contrast, brightness, noise), then post-processing corruptions
/// (impulse noise, inversion). The ID steps keep the same random streams in every domain, so for a
/// given image an OOD domain differs from `id` by its extra shift only.
public enum FashionShift {
    /// The ID (target) shift: lower contrast and a brighter background, then gaussian sensor noise.
    public static let idShifts: [ImageShift] = [
        .intensity(gain: 0.45...0.60, bias: 0.20...0.30),
        .gaussianNoise(sigma: 0.06),
    ]

    /// The target (ID) domain.
    public static let id = Domain(name: "id", summary: "target shift: contrast ×0.45–0.60, brightness +0.20–0.30, gaussian noise σ 0.06",
                                  shifts: idShifts)

    /// An OOD domain: `extra` before the ID shift (`before == true`) or after it.
    static func ood(_ name: String, _ summary: String, _ extra: ImageShift, before: Bool) -> Domain {
        let step = Domain.Step(extra, stream: DataHash.fnv1a("0/\(name)/extra"))
        return Domain(name: name, summary: summary, steps: before ? [step] + id.steps : id.steps + [step])
    }

    /// The OOD domains that add one shift to `id`, in report order.
    public static let oodShifted: [Domain] = [
        ood("rotate", "id + rotation by 25–45° either way (before the id shift)", .rotation(degrees: 25...45), before: true),
        ood("scale", "id + shrink to ×0.55–0.70 about the centre (before the id shift)", .scale(factor: 0.55...0.70), before: true),
        ood("elastic", "id + elastic deformation, RMS 1.5 px, smoothness σ 3 px (before the id shift)", .elastic(alpha: 1.5, sigma: 3), before: true),
        ood("blur", "id + gaussian blur σ 1.2 px (before the id shift)", .gaussianBlur(sigma: 1.2), before: true),
        ood("pixelate", "id + pixelation in 3×3 blocks (before the id shift)", .pixelate(block: 3), before: true),
        ood("impulse", "id + salt-and-pepper noise on 8% of pixels (after the id shift)", .impulseNoise(fraction: 0.08), before: false),
        ood("invert", "id + photometric inversion (after the id shift)", .invert, before: false),
    ]

    /// Every named domain: `clean`, `id`, then the OOD shifts.
    public static let domains: [Domain] = [Domain.clean, id] + oodShifted

    /// The names of the OOD evaluation domains: the clean images and every OOD shift.
    public static let oodDomainNames: [String] = ["clean"] + oodShifted.map(\.name)

    /// The domain called `name`, if any.
    public static func domain(named name: String) -> Domain? {
        domains.first { $0.name == name }
    }
}
