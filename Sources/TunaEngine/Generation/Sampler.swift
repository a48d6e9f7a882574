import Foundation
import TunaRandom

/// How each next token is chosen. `temperature == 0` is greedy decoding: the first index of
/// the largest logit, as `torch.argmax` (and so transformers' `generate(do_sample=False)`)
/// picks it. Otherwise the logits are divided by the temperature, cut to the `topK` largest
/// (0 = no cut) and to the smallest set whose probability reaches `topP` (1 = no cut), in
/// that order (transformers' warper order), and one token is drawn with SplitMix64.
///
/// transformers' `generate` applies `top_k=50` to every sampled run unless told otherwise;
/// Tuna's `topK` defaults to 0 (no cut), gpt-oss's recommended setting (temperature 1, top-p 1).
public struct SamplingSettings: Sendable, Equatable, Codable {
    public var temperature: Double
    public var topK: Int
    public var topP: Double
    public var seed: UInt64

    public init(temperature: Double = 0, topK: Int = 0, topP: Double = 1, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
    }

    public static let greedy = SamplingSettings()

    public var isGreedy: Bool { temperature == 0 }

    /// Why the settings cannot be used, or nil.
    public var problem: String? {
        if !(temperature >= 0 && temperature.isFinite) { return "temperature must be a finite number >= 0 (0 = greedy)" }
        if topK < 0 { return "top-k must be >= 0 (0 = no cut)" }
        if !(topP > 0 && topP <= 1) { return "top-p must be in (0, 1]" }
        return nil
    }
}

/// Chooses tokens from logits under `SamplingSettings`. One sampler per generated sequence:
/// its random stream is seeded from (seed, sequence index), so a prompt's output does not
/// depend on which other prompts share its batch.
struct Sampler {
    let settings: SamplingSettings
    private var rng: SplitMix64

    init(settings: SamplingSettings, sequence: Int) {
        self.settings = settings
        // Each stream starts at a scrambled state: seeding with seed + i·(SplitMix64's own
        // increment) would start stream i where stream 0 is after i draws.
        var mixer = SplitMix64(seed: settings.seed ^ (UInt64(sequence) &* 0xD1B5_4A32_D192_ED03))
        rng = SplitMix64(seed: mixer.next())
    }

    mutating func next(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        settings.isGreedy ? Sampler.argmax(logits) : draw(logits)
    }

    /// The first index of the largest value (NaN never wins).
    static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        var best = 0, value = -Float.infinity
        for i in 0..<logits.count where logits[i] > value { best = i; value = logits[i] }
        return Int32(best)
    }

    /// The candidates left after temperature, top-k and top-p, with their probabilities
    /// (normalised over the candidates), most likely first.
    func candidates(_ logits: UnsafeBufferPointer<Float>) -> [(token: Int32, p: Double)] {
        let t = settings.temperature
        var top = -Double.infinity
        for i in 0..<logits.count { top = max(top, Double(logits[i]) / t) }
        // Tokens e^-30 (1e-13) below the most likely one cannot change a draw or a cut at double
        // precision (201,088 of them add < 2e-8); leaving them out keeps the sort short.
        var scored: [(token: Int32, score: Double)] = []
        for i in 0..<logits.count where Double(logits[i]) / t >= top - 30 { scored.append((Int32(i), Double(logits[i]) / t)) }
        scored.sort { $0.score > $1.score || ($0.score == $1.score && $0.token < $1.token) }
        if settings.topK > 0, settings.topK < scored.count {
            // transformers keeps every score equal to the k-th largest (ties at the boundary)
            let kth = scored[settings.topK - 1].score
            scored = Array(scored.prefix { $0.score >= kth })
        }
        var probs = scored.map { Foundation.exp($0.score - top) }
        let total = probs.reduce(0, +)
        for i in probs.indices { probs[i] /= total }
        if settings.topP < 1 {
            // transformers: drop the tokens whose ascending cumulative probability is <= 1 - top_p,
            // i.e. keep the most likely tokens until their mass reaches top_p
            var kept = 0, mass = 0.0
            while kept < probs.count {
                mass += probs[kept]
                kept += 1
                if mass >= settings.topP { break }
            }
            probs = Array(probs.prefix(kept))
            scored = Array(scored.prefix(kept))
            let sum = probs.reduce(0, +)
            for i in probs.indices { probs[i] /= sum }
        }
        return zip(scored, probs).map { (token: $0.token, p: $1) }
    }

    private mutating func draw(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        let options = candidates(logits)
        let u = rng.nextUnit()
        var mass = 0.0
        for option in options {
            mass += option.p
            if u < mass { return option.token }
        }
        return options.last?.token ?? 0
    }
}
