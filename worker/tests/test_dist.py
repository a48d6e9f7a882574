"""dist.GradientReducer on two real processes (gloo): the summed gradients, the buckets' order,
and that buckets really go out while the backward still runs."""
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tuna_torch.dist import Distributed, GradientReducer

LAYERS = 6
WIDTH = 16


def model(seed=0):
    """A spare parameter that rank 0's last backward never touches (one its last micro-batch
    does not use), first, so that its bucket is the last; then a stack of small linear layers, one
    parameter each (a bucket holds at most one layer and the spare)."""
    g = torch.Generator().manual_seed(seed)
    spare = torch.nn.Parameter(torch.randn(WIDTH, generator=g))
    return [spare] + [torch.nn.Parameter(torch.randn(WIDTH, WIDTH, generator=g) / WIDTH ** 0.5) for _ in range(LAYERS)]


def loss_of(params, x, use_spare):
    h = x
    for w in params[1:]:
        h = torch.tanh(h @ w)
    out = h.square().sum()
    return out + (h @ params[0]).sum() if use_spare else out


def batches(rank):
    """Rank 0: two micro-batches (the spare used only in the first); rank 1: one; rank 2: none."""
    g = torch.Generator().manual_seed(100 + rank)
    return [(torch.randn(3, WIDTH, generator=g), m == 0) for m in range([2, 1, 0][rank])]


def expected_gradients(world):
    """What every rank must end with: the sum of every rank's accumulated gradients."""
    params = model()
    for rank in range(world):
        for x, spare in batches(rank):
            loss_of(params, x, spare).backward()
    return [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]


def worker(rank, world, init_file, results):
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    d = Distributed()
    d.enabled, d.device = True, torch.device("cpu")
    params = model()
    reducer = GradientReducer(params, d, bucket_mb=1.5 * WIDTH * WIDTH * 4 / 2**20)
    for _ in range(2):  # two steps: the hooks re-arm, nothing leaks from the first
        for p in params:
            p.grad = None
        work = batches(rank)
        for n, (x, spare) in enumerate(work):
            if n == len(work) - 1:
                reducer.arm()
            loss_of(params, x, spare).backward()
        reducer.finish()
    results[rank] = ([p.grad.clone() for p in params], reducer.launched_in_backward, len(reducer.buckets))
    dist.destroy_process_group()


@pytest.mark.parametrize("world", [2, 3])
def test_gradients_are_summed_over_ranks_while_the_backward_runs(world):
    with tempfile.TemporaryDirectory() as tmp:
        results = mp.Manager().dict()
        mp.spawn(worker, args=(world, os.path.join(tmp, "init"), results), nprocs=world, join=True)
    want = expected_gradients(world)
    # The first step's gradients were zeroed before the second: what is left is one step's sum.
    for rank in range(world):
        grads, in_backward, buckets = results[rank]
        assert buckets >= 4, "the test needs several buckets"
        for i, (got, w) in enumerate(zip(grads, want)):
            torch.testing.assert_close(got, w, rtol=1e-6, atol=1e-7, msg=f"rank {rank}, parameter {i}")
        if rank < 2:
            # Every layer's bucket before the spare's went out inside the backward; the spare's
            # bucket (the last: buckets are in reverse order) waits for finish() on rank 0.
            assert in_backward >= buckets - 1, (rank, in_backward, buckets)
        else:
            assert in_backward == 0  # no rows: everything goes out in finish()
    assert all(torch.equal(a, b) for a, b in zip(results[0][0], results[world - 1][0])), "replicas differ"


def test_one_process_fills_missing_gradients_with_zeros():
    d = Distributed()
    assert not d.enabled
    params = model()
    reducer = GradientReducer(params, d)
    reducer.arm()
    loss_of(params, torch.ones(2, WIDTH), use_spare=False).backward()
    reducer.finish()
    assert torch.equal(params[0].grad, torch.zeros(WIDTH))
    assert reducer.launched_in_backward == 0


def test_buckets_follow_the_backward_of_a_gpt_oss_adapter():
    """The adapters keep their parameters sorted by name (layer 10 before layer 2); the reducer
    gets them in the model's order, so its first bucket holds the last layer's adapter, whose
    gradients a backward finishes first, and its last bucket layer 0's."""
    import dataclasses

    from transformers import GptOssConfig, GptOssForCausalLM
    from tuna_torch import adapters, spec
    from tuna_torch.dist import in_model_order

    layers = 12
    config = GptOssConfig(num_hidden_layers=layers, hidden_size=32, intermediate_size=32, num_attention_heads=2,
                          num_key_value_heads=1, head_dim=16, num_local_experts=2, num_experts_per_tok=1, vocab_size=64,
                          layer_types=["full_attention"] * layers)
    base = GptOssForCausalLM(config)
    lora = dataclasses.replace(spec.golden("lora-torch").lora, rank=4, alpha=8.0,
                               target_modules=list(adapters.ATTENTION_MODULES))
    model, params = adapters.attach_lora(base, adapters.lora_config(lora))
    names = {id(p): n for n, p in params.items()}

    def layer(p):
        return int(names[id(p)].split("layers.")[1].split(".")[0])  # "base_model.model.model.layers.10.self_attn…"

    one_layer = sum(p.numel() * p.element_size() for p in params.values() if layer(p) == 0)
    reducer = GradientReducer(in_model_order(model, params), Distributed(), bucket_mb=one_layer / 2**20)
    first = {layer(reducer.params[i]) for i in reducer.buckets[0]}
    last = {layer(reducer.params[i]) for i in reducer.buckets[-1]}
    assert first == {layers - 1}, first
    assert last == {0}, last
    order = [layer(reducer.params[i]) for b in reducer.buckets for i in b]
    assert order == sorted(order, reverse=True), order


def test_a_hook_firing_twice_in_one_backward_is_refused():
    params = model()
    reducer = GradientReducer(params, Distributed(), bucket_mb=1.0)  # one bucket: nothing goes out early
    reducer.arm()
    reducer._ready(3)
    with pytest.raises(RuntimeError, match="fired twice"):
        reducer._ready(3)
