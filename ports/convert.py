"""`python -m ports.convert`: Hugging Face Qwen2 folder <-> Orbax parameter checkpoint.

    python -m ports.convert hf-to-orbax SRC DST [--dtype bf16|fp32] [--overwrite]
    python -m ports.convert orbax-to-hf SRC DST [--tokenizer DIR] [--dtype bf16|fp32]
                                                [--max-shard-size 5GB] [--overwrite]

Both directions run on one device, tensor by tensor. The Orbax checkpoint carries the HF config
(meta["hf_config"]), so orbax-to-hf rebuilds config.json from it. On success a summary line goes
to stdout; on failure one line goes to stderr, the exit code is 1 and nothing is left at DST.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import sys
import time

from tqdm import tqdm

from jgrpo.model import ConfigError, Qwen2Config, parse_dtype
from ports import CheckpointError
from ports.hf_export import export_hf, parse_size
from ports.hf_load import load_hf_params
from ports.orbax_ckpt import restore_params, save_params
from ports.params import abstract_params, flat_params


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, like every other failure of this tool
        self.exit(2, f"error: {message}\n")


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m ports.convert", description="Convert between a Hugging Face Qwen2 folder and an Orbax parameter checkpoint.")
    commands = parser.add_subparsers(dest="command", required=True)
    to_orbax = commands.add_parser("hf-to-orbax", help="HF folder -> Orbax parameter checkpoint")
    to_hf = commands.add_parser("orbax-to-hf", help="Orbax parameter checkpoint -> HF folder")
    for p in (to_orbax, to_hf):
        p.add_argument("src", help="source folder")
        p.add_argument("dst", help="destination folder (must not exist, unless --overwrite)")
        p.add_argument("--dtype", choices=["bf16", "fp32"], help="cast parameters (default: keep the stored dtype)")
        p.add_argument("--overwrite", action="store_true", help="replace DST if it exists (only once complete)")
    to_hf.add_argument("--tokenizer", metavar="DIR", help="copy tokenizer files (and generation_config.json) from DIR")
    to_hf.add_argument("--max-shard-size", type=_size, default="5GB",
                       help="largest safetensors file, e.g. 5GB, 500MB, 2GiB (default: 5GB)")
    return parser


def _dtype(args):
    return parse_dtype(args.dtype) if args.dtype else None


def _n_tensors(cfg: Qwen2Config) -> int:
    return len(flat_params(abstract_params(cfg))[0])


def _hf_to_orbax(args, bar, progress) -> None:
    bar.total = _n_tensors(Qwen2Config.from_json_file(args.src))
    cfg, params = load_hf_params(args.src, dtype=_dtype(args), progress=progress)
    save_params(args.dst, params, cfg, overwrite=args.overwrite)


def _orbax_to_hf(args, bar, progress) -> None:
    cfg, params = restore_params(args.src)
    bar.total = _n_tensors(cfg)
    export_hf(params, cfg, args.dst, dtype=_dtype(args), max_shard_size=args.max_shard_size,
              tokenizer=args.tokenizer, overwrite=args.overwrite, progress=progress)


def _return_freed_tensors_to_the_os() -> None:
    """glibc serves blocks below its mmap threshold from heaps and keeps them when freed; the
    threshold grows with each freed mapping up to 32 MB, and a 1.5B model's MLP kernels are 27 MB.
    Converting that model, Orbax's restore left ~1.1 GB of freed buffers counted in the peak RSS.
    A fixed 4 MB threshold gives every tensor-sized block its own mapping, returned when freed.
    Only when run as a program: the library functions leave the allocator to their host process."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    m_mmap_threshold = -3  # from malloc.h
    libc.mallopt(m_mmap_threshold, 4 * 2**20)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Orbax warns on every non-OCDBT save that it found no OCDBT files to merge (see orbax_ckpt).
    logging.getLogger("absl").setLevel(logging.ERROR)
    start = time.perf_counter()
    done = {"tensors": 0, "bytes": 0}
    # disable=None: a bar only on a terminal, so logs and the tests see the summary line alone.
    with tqdm(unit=" tensors", disable=None, file=sys.stderr, leave=False) as bar:
        def progress(name: str, nbytes: int) -> None:
            done["tensors"] += 1
            done["bytes"] += nbytes
            bar.set_postfix_str(name, refresh=False)
            bar.update()

        try:
            run = _hf_to_orbax if args.command == "hf-to-orbax" else _orbax_to_hf
            run(args, bar, progress)
        except (CheckpointError, ConfigError, OSError) as e:
            bar.close()
            print(f"error: {e}", file=sys.stderr)
            return 1
    print(f"{args.command}: {done['tensors']} tensors, {done['bytes'] / 1e6:,.1f} MB, "
          f"{time.perf_counter() - start:.1f} s -> {args.dst}")
    return 0


if __name__ == "__main__":
    _return_freed_tensors_to_the_os()
    sys.exit(main())
