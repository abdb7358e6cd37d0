"""Training checkpoints: the whole TrainState (parameters, AdamW moments, update count) plus a JSON
item with everything else a resumed run needs (data cursor, step, config), kept as the last K
steps by an Orbax CheckpointManager. Restores onto whatever mesh the resumed run uses."""

from __future__ import annotations

from pathlib import Path

import orbax.checkpoint as ocp

from ports.orbax_ckpt import handler_registry, restore_args, save_args

STATE = "state"


class Checkpoints:
    def __init__(self, directory: Path, keep: int):
        self.directory = directory
        self.manager = ocp.CheckpointManager(
            directory.absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
            handler_registry=handler_registry([STATE]),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, meta: dict) -> None:
        """Blocks until written: a SIGKILL right after must still find this step complete."""
        self.manager.save(step, args=save_args({STATE: state}, meta))
        self.manager.wait_until_finished()

    def restore(self, step: int, abstract_state):
        """(state, meta); `abstract_state`'s shardings say where each array goes."""
        out = self.manager.restore(step, args=restore_args({STATE: abstract_state}))
        return out[STATE], out["meta"]

    def close(self) -> None:
        self.manager.close()
