"""SplitMix64 as in Sources/TunaRandom/SplitMix64.swift, and the seeded train/validation split
Sources/TunaText/DatasetSplit.swift documents: both written here independently of the Swift
code, from the algorithms' descriptions (text_goldens.py turns them into goldens, demo_data.py
draws the demo data set with the generator)."""

MASK64 = (1 << 64) - 1


class SplitMix64:
    """The generator (an iterator of uint64: `next(g)`)."""

    def __init__(self, seed):
        self.state = seed & MASK64

    def __iter__(self):
        return self

    def __next__(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def between(self, lo, hi):
        """Uniform in lo..hi inclusive (modulo bias is irrelevant at the demo data's ranges)."""
        return lo + next(self) % (hi - lo + 1)


def validation_indices(n, val_fraction, seed):
    """The documented split algorithm, independently of the Swift code."""
    if n == 0:
        return []
    k = min(n, max(0, int(n * val_fraction + 0.5)))  # round half away from zero (n, fraction >= 0)
    order = list(range(n))
    rng = SplitMix64(seed)

    def below(bound):
        threshold = ((1 << 64) - bound) % bound
        while True:
            r = next(rng)
            if r >= threshold:
                return r % bound

    for i in range(n - 1, 0, -1):
        j = below(i + 1)
        order[i], order[j] = order[j], order[i]
    return sorted(order[:k])
