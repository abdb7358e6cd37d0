"""`python -m ports.convert`: Hugging Face folder (Qwen2, Qwen3 or Llama) <-> Orbax parameter checkpoint.

    python -m ports.convert hf-to-orbax SRC DST [--dtype bfloat16|float32] [--overwrite]
    python -m ports.convert orbax-to-hf SRC DST [--tokenizer DIR | --no-tokenizer] [--dtype bfloat16|float32]
                                                [--max-shard-size 5GB] [--overwrite] [--push-to-hub REPO]

Both directions run on one device, tensor by tensor. orbax-to-hf reads a parameter checkpoint
(what hf-to-orbax writes) or any training checkpoint (<run>/checkpoints/<step>: the parameters
alone, not the optimizer state). The checkpoint carries the HF config (meta["hf_config"]), so
config.json is rebuilt from it. The tokenizer comes from --tokenizer, else from where the
checkpoint says (jgrpo.checkpoint.find_tokenizer: a training run's checkpoints/tokenizer, the HF
folder hf-to-orbax read); when there is none the command refuses, unless --no-tokenizer asks for
the weights alone. The export gets a model card (README.md). --push-to-hub uploads the finished
folder with huggingface_hub (needs the network and a token: `hf auth login` or HF_TOKEN).

On success a summary line goes to stdout; on failure one line goes to stderr, the exit code is 1
and nothing is left at DST (a failed push leaves the complete local folder and says so).
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import sys
import time
from pathlib import Path

from tqdm import tqdm

from jgrpo.checkpoint import TOKENIZER, damage, find_tokenizer, has_tokenizer, manifest_path, model_card, run_dir_of
from jgrpo.hub import first_line
from jgrpo.model import ConfigError, Qwen2Config, dtype_name, parse_dtype
from ports import CheckpointError
from ports.hf_export import export_hf, parse_size
from ports.hf_load import load_hf_params
from ports.orbax_ckpt import read_meta, restore_params, save_params
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
    parser = _Parser(prog="python -m ports.convert", description="Convert between a Hugging Face folder (Qwen2, Qwen3 or Llama) and an Orbax "
                                                                    "parameter checkpoint.")
    commands = parser.add_subparsers(dest="command", required=True)
    to_orbax = commands.add_parser("hf-to-orbax", help="HF folder -> Orbax parameter checkpoint")
    to_hf = commands.add_parser("orbax-to-hf", help="Orbax parameter checkpoint -> HF folder")
    for p in (to_orbax, to_hf):
        p.add_argument("src", help="source folder")
        p.add_argument("dst", help="destination folder (must not exist, unless --overwrite)")
        p.add_argument("--dtype", type=_dtype_arg, metavar="{float32,bfloat16,float16}",
                       help="cast parameters (fp32/bf16/fp16 also accepted; default: keep the stored dtype)")
        p.add_argument("--overwrite", action="store_true", help="replace DST if it exists (only once complete)")
    tokenizer = to_hf.add_mutually_exclusive_group()
    tokenizer.add_argument("--tokenizer", metavar="DIR",
                           help="copy tokenizer files (and generation_config.json) from DIR (default: the "
                                "tokenizer the checkpoint's run saved; without one the command refuses)")
    tokenizer.add_argument("--no-tokenizer", action="store_true",
                           help="write the weights without a tokenizer (AutoTokenizer will not load DST)")
    to_hf.add_argument("--push-to-hub", metavar="REPO",
                       help="then upload DST to the Hugging Face Hub model repo REPO (created if missing)")
    to_hf.add_argument("--max-shard-size", type=_size, default="5GB",
                       help="largest safetensors file, e.g. 5GB, 500MB, 2GiB (default: 5GB)")
    return parser


def _dtype_arg(name: str) -> str:
    try:
        return dtype_name(name)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _dtype(args):
    return parse_dtype(args.dtype) if args.dtype else None


def _n_tensors(cfg: Qwen2Config) -> int:
    return len(flat_params(abstract_params(cfg))[0])


def _hf_to_orbax(args, bar, progress) -> str:
    bar.total = _n_tensors(Qwen2Config.from_json_file(args.src))
    cfg, params = load_hf_params(args.src, dtype=_dtype(args), progress=progress)
    # Where the tokenizer is, for orbax-to-hf to find later (it is not copied into the checkpoint).
    meta = {"tokenizer": str(Path(args.src).absolute())} if has_tokenizer(args.src) else {}
    save_params(args.dst, params, cfg, meta=meta, overwrite=args.overwrite)
    return ""


def _tokenizer_for(args, meta: dict) -> Path | None:
    if args.no_tokenizer:
        return None
    if args.tokenizer is not None:
        return Path(args.tokenizer)
    found = find_tokenizer(args.src, meta)
    if found is None:
        raise CheckpointError(f"no tokenizer found for {args.src} (a training run keeps one in "
                              f"<run>/checkpoints/{TOKENIZER}); pass --tokenizer DIR, or --no-tokenizer to "
                              "write the weights without one")
    return found


def _orbax_to_hf(args, bar, progress) -> str:
    src = Path(args.src)
    if manifest_path(src.absolute()).parent.is_dir():  # a training run's step: its manifest says if it is whole
        why = damage(src.absolute())
        if why is not None:
            raise CheckpointError(f"checkpoint {src} is damaged: {why}")
    meta = read_meta(args.src)
    tokenizer = _tokenizer_for(args, meta)  # before anything is written: refusing must leave nothing
    cfg, params = restore_params(args.src)
    card = model_card(step=meta.get("step"), model_type=cfg.model_type, config=meta.get("config"),
                      recipe=meta.get("recipe"), run_dir=run_dir_of(args.src, meta), tokenizer=tokenizer is not None,
                      source=str(Path(args.src).absolute()))
    bar.total = _n_tensors(cfg)
    export_hf(params, cfg, args.dst, dtype=_dtype(args), max_shard_size=args.max_shard_size,
              tokenizer=tokenizer, overwrite=args.overwrite, progress=progress, model_card=card)
    return f" (tokenizer from {tokenizer})" if tokenizer is not None else " (no tokenizer)"


def _push(folder: str, repo: str) -> str:
    """Uploads a finished HF folder; needs the network and a Hub token. Untested here (no network)."""
    from huggingface_hub import create_repo, upload_folder

    url = create_repo(repo, repo_type="model", exist_ok=True)
    upload_folder(repo_id=url.repo_id, folder_path=folder, repo_type="model",
                  commit_message="Upload a jgrpo checkpoint (python -m ports.convert orbax-to-hf)")
    return str(url)


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
            if Path(args.dst).exists() and not args.overwrite:
                raise FileExistsError
            run = _hf_to_orbax if args.command == "hf-to-orbax" else _orbax_to_hf
            note = run(args, bar, progress)
        except FileExistsError:  # the library's wording names its keyword; this names the flag
            bar.close()
            print(f"error: destination exists: {Path(args.dst).absolute()} (pass --overwrite to replace it)",
                  file=sys.stderr)
            return 1
        except (CheckpointError, ConfigError, OSError) as e:
            bar.close()
            print(f"error: {first_line(e)}", file=sys.stderr)
            return 1
    print(f"{args.command}: {done['tensors']} tensors, {done['bytes'] / 1e6:,.1f} MB, "
          f"{time.perf_counter() - start:.1f} s -> {args.dst}{note}")
    if getattr(args, "push_to_hub", None):
        try:
            url = _push(args.dst, args.push_to_hub)
        except Exception as e:  # network, auth, a bad repo id: huggingface_hub raises many types
            print(f"error: wrote {args.dst}, but pushing it to {args.push_to_hub} failed "
                  f"({type(e).__name__}: {first_line(e)})", file=sys.stderr)
            return 1
        print(f"pushed {args.dst} -> {url}")
    return 0


if __name__ == "__main__":
    _return_freed_tensors_to_the_os()
    sys.exit(main())
