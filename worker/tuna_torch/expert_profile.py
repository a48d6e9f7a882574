"""The expert profile: what the router and the experts did on calibration data, per layer and
expert, and the scores pruning ranks experts by. A line-for-line mirror of
Sources/TunaEngine/Pruning/ExpertProfile.swift (same sums, same scores, same choice of kept
experts, same file), so a torch prune job keeps exactly the experts a native one keeps.

Only real (non-padding: attention mask 1) tokens count. Per routed (token, expert) pair, with w
the gate weight (the softmax over the token's top-k logits) and y the expert's output on the
token before w is applied (biases included):

  counts    number of top-k selections                        frequency = counts
  gate_mass sum of w                                           (routing-mass share)
  reap_sum  sum of w * ||y||                                   reap = reap_sum / counts
  easy_sum  sum of w * ||y|| * (1 - cos(h, h'))                easy_ep = easy_sum
  max_norm  max of ||y||                                       (super experts)

h / h' are the residual stream before / after the MoE block. Sums in float64 (the native ones
are Double), norms in float32 from the model's dtype (the native ones are Float).
"""
import torch

FORMAT = "tuna-expert-profile-1"
SCORES = ("frequency", "reap", "easy_ep")
_TENSORS = ("counts", "gate_mass", "reap_sum", "easy_sum", "max_norm")


class ExpertProfile:
    def __init__(self, layers, experts, device="cpu"):
        self.layers, self.experts = layers, experts
        self.tokens = 0
        # [layers, experts] float64 each; on the model's device while profiling (no host sync
        # per layer), moved to the CPU by `to_cpu` before anything reads them.
        for name in _TENSORS:
            setattr(self, name, torch.zeros(layers, experts, dtype=torch.float64, device=device))

    def to_cpu(self):
        for name in _TENSORS:
            setattr(self, name, getattr(self, name).cpu())
        return self

    def add(self, layer, h, moe, indices, weights, norms, real):
        """One layer's MoE block on one batch, all flattened over (row, position):
        h [N, C] the residual stream entering the block, moe [N, C] the block's output,
        indices / weights [N, k] the router's top-k experts and gate weights, norms [N, k]
        ||y|| of each chosen expert's output, real [N] bool (attention mask)."""
        k = indices.shape[1]
        # 1 - cos(h, h + moe) per token, in float64 (0 where either vector is zero), as the
        # native profile computes it from the Float residual stream and MoE output.
        hd = h.double()
        od = hd + moe.double()
        dot, hh, oo = (hd * od).sum(-1), (hd * hd).sum(-1), (od * od).sum(-1)
        change = torch.where((hh > 0) & (oo > 0), 1 - dot / (hh.sqrt() * oo.sqrt()), torch.zeros_like(dot))
        e = indices[real].reshape(-1).long()
        w = weights[real].double().reshape(-1)
        y = norms[real].double().reshape(-1)
        c = change[real].repeat_interleave(k)
        self.counts[layer].index_add_(0, e, torch.ones_like(w))
        self.gate_mass[layer].index_add_(0, e, w)
        self.reap_sum[layer].index_add_(0, e, w * y)
        self.easy_sum[layer].index_add_(0, e, w * y * c)
        self.max_norm[layer].scatter_reduce_(0, e, y, reduce="amax", include_self=True)
        if layer == 0:
            self.tokens += int(real.sum())

    # -- scores and the choice of experts (plain Python floats from here on, as the native
    #    code's Doubles, so ties and sums go exactly the same way)

    def _rows(self, t):
        return [[float(v) for v in row] for row in t.tolist()]

    def scores(self, kind):
        counts = self._rows(self.counts)
        if kind == "frequency":
            return counts
        if kind == "reap":
            return [[r / n if n > 0 else 0.0 for r, n in zip(rr, nn)] for rr, nn in zip(self._rows(self.reap_sum), counts)]
        if kind == "easy_ep":
            return self._rows(self.easy_sum)
        raise ValueError(f"prune.score: {kind!r} is not frequency, reap or easy_ep")

    def super_experts(self, ratio):
        """Experts whose largest output norm exceeds `ratio` x the median of the layer's
        per-expert maxima (the upper median, `sorted[count / 2]`, as the native code takes it)."""
        out = []
        for row in self._rows(self.max_norm):
            median = sorted(row)[len(row) // 2]
            out.append([e for e in range(len(row)) if row[e] > ratio * median] if median > 0 else [])
        return out

    def keep(self, n, kind, top_k, keep_super_experts=True, super_ratio=10.0):
        """The `n` experts each layer keeps, ascending: super experts first (unless disabled),
        then the best by score; ties go to the lower index."""
        if n < top_k or n > self.experts:
            raise ValueError(f"prune.keep: {n} must be between the experts per token ({top_k}) and the experts per layer "
                             f"({self.experts})")
        s = self.scores(kind)
        supers = self.super_experts(super_ratio) if keep_super_experts else [[] for _ in range(self.layers)]
        out = []
        for layer in range(self.layers):
            if len(supers[layer]) > n:
                raise ValueError(f"layer {layer} has {len(supers[layer])} super experts, more than prune.keep {n}; "
                                 "raise keep or set keep_super_experts: false")
            ranked = sorted((e for e in range(self.experts) if e not in supers[layer]), key=lambda e: (-s[layer][e], e))
            out.append(sorted(supers[layer] + ranked[:n - len(supers[layer])]))
        return out

    def mass_share(self, kept):
        """Share of each layer's calibration routing mass (sum of gate weights) held by `kept`."""
        out = []
        for layer, row in enumerate(self._rows(self.gate_mass)):
            total = 0.0
            for v in row:  # summed in order, as Swift's reduce
                total += v
            part = 0.0
            for e in kept[layer]:
                part += row[e]
            out.append(part / total if total > 0 else 0.0)
        return out

    # -- files: the same safetensors layout as ExpertProfile.save (F32 [layers, experts] each,
    #    metadata format + tokens), so either side can read the other's profile

    def save(self, path):
        from safetensors.torch import save_file

        save_file({name: getattr(self, name).float().cpu().contiguous() for name in _TENSORS}, path,
                  metadata={"format": FORMAT, "tokens": str(self.tokens)})

    @classmethod
    def load(cls, path):
        from safetensors import safe_open

        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT or not (meta.get("tokens") or "").isdigit():
                raise ValueError(f"{path}: not an expert profile")
            tensors = {name: f.get_tensor(name) for name in _TENSORS}
        shape = tuple(tensors["counts"].shape)
        if len(shape) != 2 or any(tuple(t.shape) != shape for t in tensors.values()):
            raise ValueError(f"{path}: tensors are not all [layers, experts]")
        p = cls(shape[0], shape[1])
        p.tokens = int(meta["tokens"])
        for name, t in tensors.items():
            setattr(p, name, t.double())
        return p
