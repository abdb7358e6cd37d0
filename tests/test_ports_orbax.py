"""Orbax checkpoints: restore onto a different mesh, optimizer state plus JSON metadata, the
CheckpointManager pieces, and errors that name the array at fault."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from jgrpo.model import Qwen2Config, make_mesh
from ports import CheckpointError
from ports.orbax_ckpt import (abstract, handler_registry, read_meta, restore, restore_args, restore_params, save,
                              save_args, save_params)
from ports.params import abstract_params
from tests.tiny_models import TINY_CONFIGS

CFG = Qwen2Config(**{k: v for k, v in TINY_CONFIGS["untied_2kv"].items()})


def one_device_mesh():
    return make_mesh(fsdp=1, devices=jax.devices()[:1])


@pytest.fixture(scope="module")
def params():
    """Random values placed as the sharding table says on a (fsdp=4, tp=1) mesh."""
    rng = np.random.default_rng(7)
    return jax.tree.map(lambda a: jax.device_put(rng.standard_normal(a.shape).astype(a.dtype), a.sharding),
                        abstract_params(CFG, mesh=make_mesh(fsdp=4, tp=1)))


def assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_params_restore_onto_other_meshes(params, tmp_path):
    assert params["layers"][0]["mlp"]["up_proj"]["kernel"].sharding.spec == jax.sharding.PartitionSpec("fsdp", "tp")
    save_params(tmp_path / "ckpt", params, CFG, meta={"step": 3})
    assert read_meta(tmp_path / "ckpt")["step"] == 3
    for fsdp, tp, n in [(2, 2, 4), (1, 1, 1)]:
        mesh = make_mesh(fsdp=fsdp, tp=tp, devices=jax.devices()[:n])
        cfg, restored = restore_params(tmp_path / "ckpt", mesh=mesh)
        assert cfg == CFG
        assert_trees_equal(restored, params)
        kernel = restored["layers"][0]["mlp"]["up_proj"]["kernel"]
        assert kernel.sharding.mesh.shape == {"data": 1, "fsdp": fsdp, "tp": tp}
        assert kernel.addressable_shards[0].data.shape == (CFG.hidden_size // fsdp, CFG.intermediate_size // tp)


def test_any_pytree_with_optimizer_state_and_meta(params, tmp_path):
    opt_state = optax.adamw(1e-3).init(params)
    opt_state = jax.tree.map(lambda x: x + 1 if x.ndim else x, opt_state)  # not all zeros
    save(tmp_path / "ckpt", {"params": params, "opt_state": opt_state}, {"step": 12, "config": {"lr": 1e-3}})
    mesh = make_mesh(fsdp=2, tp=2)
    targets = {"params": abstract_params(CFG, mesh=mesh),
               "opt_state": abstract(opt_state, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))}
    trees, meta = restore(tmp_path / "ckpt", targets)
    assert meta == {"step": 12, "config": {"lr": 1e-3}}
    assert_trees_equal(trees["params"], params)
    assert_trees_equal(trees["opt_state"], opt_state)
    assert jax.tree.structure(trees["opt_state"]) == jax.tree.structure(opt_state)
    count = jax.tree.leaves(trees["opt_state"])[0]
    assert count.sharding.mesh.shape["tp"] == 2


def test_checkpoint_manager_pieces(params, tmp_path):
    options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
    with ocp.CheckpointManager(tmp_path, options=options, handler_registry=handler_registry(["params"])) as mngr:
        for step in (1, 2):
            mngr.save(step, args=save_args({"params": params}, {"step": step}))
        mngr.wait_until_finished()
        assert mngr.all_steps() == [2]
        out = mngr.restore(2, args=restore_args({"params": abstract_params(CFG, mesh=one_device_mesh())}))
    assert out["meta"] == {"step": 2}
    assert_trees_equal(out["params"], params)


def test_cast_on_restore(params, tmp_path):
    save(tmp_path / "ckpt", {"params": params})
    trees, _ = restore(tmp_path / "ckpt", {"params": abstract_params(CFG, mesh=one_device_mesh(), dtype=jnp.bfloat16)})
    assert_trees_equal(trees["params"], jax.tree.map(lambda x: x.astype(jnp.bfloat16), params))


def test_errors_name_the_array_or_folder(params, tmp_path):
    with pytest.raises(CheckpointError, match="no Orbax checkpoint"):
        restore_params(tmp_path / "nothing")
    save(tmp_path / "ckpt", {"params": params}, {"note": "no hf_config"})
    with pytest.raises(CheckpointError, match="hf_config"):
        restore_params(tmp_path / "ckpt")
    wrong = Qwen2Config(**{**CFG.__dict__, "intermediate_size": 64})
    with pytest.raises(CheckpointError, match=r"layers\.0\.mlp\.down_proj\.kernel.*shape"):
        restore(tmp_path / "ckpt", {"params": abstract_params(wrong)})
    fewer = Qwen2Config(**{**CFG.__dict__, "num_hidden_layers": 1})
    with pytest.raises(CheckpointError, match=r"layers\.1\..*target lacks"):
        restore(tmp_path / "ckpt", {"params": abstract_params(fewer)})
    with pytest.raises(CheckpointError, match="no item 'opt_state'"):
        restore(tmp_path / "ckpt", {"opt_state": {"mu": jax.ShapeDtypeStruct((1,), jnp.float32)}})
    with pytest.raises(CheckpointError, match=r"model\.layers\.0\.mlp\.down_proj\.weight"):
        save_params(tmp_path / "mismatch", params, wrong)  # config disagrees with the weights
    assert not (tmp_path / "mismatch").exists()
    with pytest.raises(FileExistsError, match="destination exists"):
        save(tmp_path / "ckpt", {"params": params})
    save(tmp_path / "ckpt", {"params": params}, {"v": 2}, overwrite=True)
    assert read_meta(tmp_path / "ckpt") == {"v": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary folders left behind
