"""GPU layout settings: computed only, never applied (these tests run on CPU)."""

import pytest

from jgrpo.devices import DeviceLayout, apply_layout, split_devices, visible_gpus


def test_open_rs_layout_puts_vllm_on_gpu3_and_jax_on_the_rest():
    layout = DeviceLayout()  # 4 x A40: 0-2 train, 3 generates with vLLM
    env = layout.environment()
    assert env["CUDA_VISIBLE_DEVICES"] == "3,0,1,2"  # torch's cuda:0, which vLLM uses, is GPU 3
    assert layout.jax_visible_devices() == "1,2,3"  # JAX's ordinals after the reordering: GPUs 0-2
    assert env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    assert "XLA_PYTHON_CLIENT_PREALLOCATE" not in env  # JAX shares no GPU: preallocating is fine
    assert split_devices(layout, devices=["d0", "d1", "d2"]) == (["d0", "d1", "d2"], [])


def test_colocated_vllm_caps_jax_below_what_vllm_leaves():
    layout = DeviceLayout(trainer_gpus=(0,), rollout_gpus=(0,), vllm_gpu_memory_utilization=0.5)
    env = layout.environment()
    assert env["CUDA_VISIBLE_DEVICES"] == "0"
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert float(env["XLA_PYTHON_CLIENT_MEM_FRACTION"]) == pytest.approx(0.45)
    assert layout.jax_visible_devices() == "all"


def test_jax_sampler_gets_its_own_devices():
    layout = DeviceLayout(rollout_engine="jax")
    assert layout.environment()["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in layout.environment()
    assert split_devices(layout, devices=["d0", "d1", "d2", "d3"]) == (["d0", "d1", "d2"], ["d3"])


def test_partly_shared_gpus_are_refused():
    with pytest.raises(ValueError, match="disjoint"):
        DeviceLayout(trainer_gpus=(0, 1), rollout_gpus=(1,))


def test_gpu_ids_that_do_not_exist_are_named(tmp_path):
    """The 4 x A40 layout on a one-GPU machine: refused before CUDA hides every GPU."""
    driver = tmp_path / "gpus"
    driver.mkdir()
    (driver / "0000:01:00.0").mkdir()
    assert visible_gpus({}, driver) == ["0"]
    assert visible_gpus({}, tmp_path / "no-driver") == []
    with pytest.raises(ValueError, match=r"name GPU 1, 2, 3, but this process sees 1 GPU .*open_rs3_1gpu"):
        DeviceLayout().check_gpus_exist(visible_gpus({}, driver))
    with pytest.raises(ValueError, match="name GPU 0, 1, 2, 3, but this process sees no GPU .*open_rs3_1gpu.*"
                                         "on a CPU set devices.gpu_layout false$"):
        DeviceLayout().check_gpus_exist([])
    one_gpu = DeviceLayout(trainer_gpus=(0,), rollout_gpus=(0,))
    one_gpu.check_gpus_exist(["0"])
    with pytest.raises(ValueError, match=r"sees no GPU \(CUDA_VISIBLE_DEVICES or the NVIDIA driver\); on a CPU set "
                                         "devices.gpu_layout false$"):  # not pointed at the recipe it runs
        one_gpu.check_gpus_exist([])


def test_gpu_ids_index_the_users_cuda_visible_devices():
    visible = visible_gpus({"CUDA_VISIBLE_DEVICES": "4,5,6,7"})
    assert visible == ["4", "5", "6", "7"]
    DeviceLayout().check_gpus_exist(visible)
    assert DeviceLayout().environment(visible)["CUDA_VISIBLE_DEVICES"] == "7,4,5,6"


def test_applying_a_layout_twice_keeps_the_gpus_it_found():
    """apply_layout reorders CUDA_VISIBLE_DEVICES (vLLM's GPU first); a second call must not read
    that order as the user's list."""
    import jax

    environ = {"CUDA_VISIBLE_DEVICES": "4,5,6,7"}
    before = jax.config.values["jax_cuda_visible_devices"]
    try:
        apply_layout(DeviceLayout(), environ)
        assert environ["CUDA_VISIBLE_DEVICES"] == "7,4,5,6"
        apply_layout(DeviceLayout(), environ)
        assert environ["CUDA_VISIBLE_DEVICES"] == "7,4,5,6"
    finally:
        jax.config.update("jax_cuda_visible_devices", before)
