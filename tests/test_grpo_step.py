"""The jitted GRPO update: against the PyTorch reference step, across meshes, and learning."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import torch
from flax import nnx
from jax.sharding import PartitionSpec

from jgrpo.grpo import (AGGREGATIONS, LossConfig, OptimizerConfig, RolloutBatch, abstract_train_state,
                        group_advantages, init_train_state, make_logprob_fn, make_train_step)
from jgrpo.model import Qwen2Config, Qwen2ForCausalLM, make_mesh
from ports.hf_load import load_hf_model
from ports.qwen2_names import hf_name
from tests import test_grpo_reference as ref
from tests.tiny_models import left_padded_batch, make_hf_model

B, G, C = 8, 4, 6
# Adam moves a weight by about lr x g / |g| whatever the size of g, so a gradient that is rounding
# noise (~1e-9) in both runs can move its weight by a visible fraction of lr: compare weights to
# 2% of lr 1e-3 and the metrics tightly.
ADAM_ATOL = 2e-5
MODEL = dict(num_hidden_layers=1, vocab_size=64)  # 64: tp=2 really shards the vocab


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_step")
    return folder, make_hf_model(folder, **MODEL)


def torch_batch(seed=0):
    prompt_ids, prompt_mask = left_padded_batch([3, 5, 2, 4, 5, 1, 3, 2], MODEL["vocab_size"], seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    lengths = torch.tensor([6, 2, 4, 1, 6, 5, 3, 6])
    completion_mask = (torch.arange(C)[None] < lengths[:, None]).long()
    completion_ids = torch.randint(3, MODEL["vocab_size"], (B, C), generator=g) * completion_mask
    rewards = torch.rand(B, generator=g)
    return dict(prompt_ids=prompt_ids, prompt_mask=prompt_mask, completion_ids=completion_ids,
                completion_mask=completion_mask, rewards=rewards, truncated=lengths == C,
                advantages=torch.tensor(np.asarray(group_advantages(rewards.numpy(), G))))


def jax_batch(t, **extra) -> RolloutBatch:
    return RolloutBatch(**{k: jnp.asarray(v.numpy()) for k, v in t.items()}, **extra)


def flat_params(state):
    leaves = jax.tree_util.tree_leaves_with_path(state.params)
    return {hf_name(tuple(getattr(k, "key", getattr(k, "idx", None)) for k in path
                          if not isinstance(k, jax.tree_util.GetAttrKey)))[0]: np.asarray(v)
            for path, v in leaves}


@pytest.mark.parametrize("loss_type", sorted(AGGREGATIONS))
def test_update_equals_torch_reference_on_one_batch(checkpoint, loss_type):
    """Two micro-batches here against one batch in torch, three updates: the schedule's warm-up
    step (lr 0), clipping, weight decay, the KL to the initial model."""
    folder, hf = checkpoint
    hf = copy.deepcopy(hf).train()
    loss_cfg = LossConfig(loss_type=loss_type, beta=0.04, num_generations=G, micro_batch_size=G, logprob_chunk_size=4)
    opt_cfg = OptimizerConfig(learning_rate=1e-3, weight_decay=0.1, max_grad_norm=0.3, total_steps=4,
                              warmup_steps=1, min_lr_rate=0.1)
    torch_step = ref.TorchGRPO(hf, lr=1e-3, loss_type=loss_type, beta=0.04, group_size=G, max_grad_norm=0.3,
                               weight_decay=0.1, warmup_steps=1, total_steps=4, min_lr_rate=0.1)
    mesh = make_mesh(devices=jax.devices()[:1])
    graphdef, state = init_train_state(load_hf_model(folder, mesh=mesh), opt_cfg, mesh)
    t = torch_batch()
    with torch.no_grad():
        t["ref_logps"], _ = ref.completion_logprobs(hf, t["prompt_ids"], t["prompt_mask"], t["completion_ids"],
                                                    t["completion_mask"])
    batch = jax_batch(t)

    step = make_train_step(graphdef, state, loss_cfg, opt_cfg, mesh)
    for _ in range(3):
        state, metrics = step(state, batch)
        want = torch_step.step(t)
        for name in ("loss", "grad_norm", "learning_rate"):
            np.testing.assert_allclose(float(metrics[name]), want[name], rtol=1e-4, atol=1e-7, err_msg=name)
    got = flat_params(state)
    for name, p in hf.named_parameters():
        w = p.detach().numpy()
        np.testing.assert_allclose(got[name], w.T if w.ndim == 2 and name != "model.embed_tokens.weight" else w,
                                   atol=ADAM_ATOL, err_msg=name)


def test_logprob_fn_on_a_mesh_matches_transformers(checkpoint):
    folder, hf = checkpoint
    mesh = make_mesh(fsdp=2, tp=2)
    graphdef, params = nnx.split(load_hf_model(folder, mesh=mesh), nnx.Param)
    t = torch_batch(seed=7)
    inputs = [t[k] for k in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask")]
    logprobs = make_logprob_fn(graphdef, params, mesh, micro_batch_size=G, temperature=0.7, chunk_size=4)
    got = logprobs(params, *(jnp.asarray(x.numpy()) for x in inputs))
    with torch.no_grad():
        want, _ = ref.completion_logprobs(hf, *inputs, temperature=0.7)
    real = t["completion_mask"].numpy().astype(bool)
    np.testing.assert_allclose(np.asarray(got)[real], want.numpy()[real], atol=1e-4)


def test_sharded_step_equals_single_device_and_compiles_once(checkpoint):
    """Every optional input on: old log-probs (num_iterations 2), sampler log-probs with the
    importance-sampling cap, the KL, masked truncations, temperature, asymmetric clipping. The
    sharded run also accumulates two micro-batches and rematerialises the layers."""
    folder, _ = checkpoint
    t = torch_batch(seed=5)
    rng = np.random.default_rng(0)
    noisy = lambda scale: jnp.asarray(np.log(rng.uniform(0.01, 0.2, (B, C))) + rng.normal(0, scale, (B, C)),
                                      jnp.float32)
    batch = jax_batch(t, old_logps=noisy(0), ref_logps=noisy(0.3), sampler_logps=noisy(0.3))
    opt_cfg = OptimizerConfig(learning_rate=1e-3, schedule="linear", total_steps=10, warmup_ratio=0.0)

    def run(mesh, micro_batch_size, remat):
        loss_cfg = LossConfig(beta=0.04, num_iterations=2, importance_sampling_cap=2.0, mask_truncated_completions=True,
                              temperature=0.7, epsilon_high=0.28, num_generations=G, micro_batch_size=micro_batch_size,
                              logprob_chunk_size=4)
        graphdef, state = init_train_state(load_hf_model(folder, mesh=mesh, remat=remat), opt_cfg, mesh)
        step = make_train_step(graphdef, state, loss_cfg, opt_cfg, mesh)
        history = []
        for _ in range(3):
            state, metrics = step(state, batch)
            history.append({k: float(v) for k, v in metrics.items()})
        return state, history, step

    single, single_history, _ = run(make_mesh(devices=jax.devices()[:1]), micro_batch_size=B, remat=False)
    sharded, sharded_history, step = run(make_mesh(fsdp=2, tp=2), micro_batch_size=G, remat=True)

    assert step._cache_size() == 1  # three updates, one compilation
    lm_head = sharded.params["lm_head"][...]
    assert lm_head.sharding.spec == PartitionSpec("fsdp", "tp") and len(lm_head.sharding.device_set) == 4
    assert set(single_history[0]) >= {"loss", "grad_norm", "learning_rate", "kl", "entropy", "clip_ratio/low_mean",
                                      "clip_ratio/high_mean", "clip_ratio/region_mean", "reward", "reward_std",
                                      "frac_reward_zero_std", "completions/mean_length", "completions/clipped_ratio",
                                      "sampling/sampling_logp_difference/mean"}
    assert single_history[-1]["clip_ratio/region_mean"] > 0
    for one, many in zip(single_history, sharded_history):
        for name in one:
            np.testing.assert_allclose(many[name], one[name], rtol=1e-5, atol=1e-6, err_msg=name)
    for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(sharded.params)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=ADAM_ATOL)


def test_train_state_round_trips_through_orbax_onto_another_mesh(checkpoint, tmp_path):
    folder, _ = checkpoint
    opt_cfg = OptimizerConfig()
    _, state = init_train_state(load_hf_model(folder, mesh=make_mesh(fsdp=4)), opt_cfg, make_mesh(fsdp=4))
    manager = ocp.CheckpointManager(tmp_path, options=ocp.CheckpointManagerOptions(create=True))
    manager.save(0, args=ocp.args.Composite(state=ocp.args.StandardSave(state)))
    manager.wait_until_finished()

    mesh = make_mesh(fsdp=2, tp=2)
    with jax.set_mesh(mesh):
        abstract = nnx.eval_shape(lambda: Qwen2ForCausalLM(Qwen2Config.from_json_file(folder), rngs=nnx.Rngs(0)))
    abstract_params = nnx.split(abstract, nnx.Param)[1]
    target = abstract_train_state(abstract_params, opt_cfg, mesh)
    restored = manager.restore(0, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))).state
    assert restored.params["lm_head"][...].sharding.spec == PartitionSpec("fsdp", "tp")
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_non_finite_loss_leaves_the_state_as_it_was(checkpoint):
    """A NaN advantage makes the loss and every gradient NaN: the update is skipped (the state
    stays bit for bit the last good one, the schedule does not advance) and says so; the next
    finite batch is applied."""
    folder, _ = checkpoint
    mesh = make_mesh(devices=jax.devices()[:1])
    opt_cfg = OptimizerConfig(learning_rate=1e-3, total_steps=4, warmup_steps=0)
    graphdef, state = init_train_state(load_hf_model(folder, mesh=mesh), opt_cfg, mesh)
    step = make_train_step(graphdef, state, LossConfig(beta=0.0, num_generations=G, micro_batch_size=G),
                           opt_cfg, mesh)
    t = torch_batch(seed=3)
    good = jax_batch(t)
    bad = good.replace(advantages=good.advantages.at[1].set(jnp.nan))
    before = jax.tree.map(np.asarray, state)
    state, metrics = step(state, bad)
    assert float(metrics["update_skipped"]) == 1.0 and not np.isfinite(float(metrics["loss"]))
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(jax.tree.map(np.asarray, state))):
        np.testing.assert_array_equal(a, b)
    state, metrics = step(state, good)
    assert float(metrics["update_skipped"]) == 0.0 and int(state.step) == 1
    after = jax.tree.leaves(jax.tree.map(np.asarray, state.params))
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before.params), after))
