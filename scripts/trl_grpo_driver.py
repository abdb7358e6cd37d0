"""TRL's GRPOTrainer (Hugging Face generate) on the benchmark workload; run by bench_grpo_step.py in
the separate TRL environment (.venv-trl), never in the project's. Prints one JSON line.

    .venv-trl/bin/python scripts/trl_grpo_driver.py --length 128 [--warmup 2 --steps 5]

Settings match jgrpo's side: 8 prompts x 4 completions, one optimizer step per generation
(per-device batch 32, no accumulation), temperature 0.7, forced full length (min_new_tokens),
beta 0.04, bnpo, lr 1e-6, fp32, no gradient checkpointing (jgrpo runs without remat here too;
TRL's default would recompute the forward and only make TRL slower).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import transformers
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from bench_common import BETA, GROUP, LEARNING_RATE, LOSS, MODEL_DIR, PROMPTS_PER_STEP, TEMPERATURE, \
    length_reward, make_model, prompt_batches


class TimedGRPOTrainer(GRPOTrainer):
    """Tokenises prompts to the workload's ids (TRL 1.16 has no max_prompt_length) and times the
    step's parts: generation, then scoring (rewards + reference forward), the rest is the update."""

    def __init__(self, *args, prompt_ids: dict[str, list[int]], **kwargs):
        super().__init__(*args, **kwargs)
        self.prompt_ids = prompt_ids
        self.seconds = {"generate": [], "score": []}

    def _tokenize_prompts(self, prompts):
        return [self.prompt_ids[p] for p in prompts], None, {}

    def _generate(self, prompts):
        start = time.perf_counter()
        out = super()._generate(prompts)
        self.seconds["generate"].append(time.perf_counter() - start)
        return out

    def _generate_and_score_completions(self, inputs):
        start = time.perf_counter()
        out = super()._generate_and_score_completions(inputs)
        self.seconds["score"].append(time.perf_counter() - start - self.seconds["generate"][-1])
        return out


class StepTimer(transformers.TrainerCallback):
    """Wall time of each optimizer step; with one step per generation that is the whole GRPO step."""

    def __init__(self):
        self.seconds, self._start = [], None

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self._start)
        print(f"  trl step {len(self.seconds) - 1}: {self.seconds[-1]:.2f} s", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--output-dir", default="/tmp/jgrpo-bench-trl")
    args = parser.parse_args()

    make_model(MODEL_DIR)
    tokenizer = transformers.AutoTokenizer.from_pretrained(MODEL_DIR)
    total = args.warmup + args.steps
    batches = prompt_batches(tokenizer, total)
    # Prompts travel through TRL as text; each text maps back to its truncated ids.
    ids = [p for batch in batches for p in batch]
    texts = [f"{i}:" + tokenizer.decode(p) for i, p in enumerate(ids)]  # unique keys, even for equal prompts
    config = GRPOConfig(
        output_dir=args.output_dir, per_device_train_batch_size=PROMPTS_PER_STEP * GROUP,
        gradient_accumulation_steps=1, num_generations=GROUP, max_completion_length=args.length,
        temperature=TEMPERATURE, top_p=1.0, top_k=0, generation_kwargs={"min_new_tokens": args.length},
        beta=BETA, loss_type=LOSS, learning_rate=LEARNING_RATE, num_iterations=1, max_steps=total,
        shuffle_dataset=False, bf16=False, gradient_checkpointing=False, use_cpu=True, report_to="none",
        logging_steps=1, save_strategy="no", seed=0, disable_tqdm=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(MODEL_DIR, dtype=torch.float32)
    timer = StepTimer()
    trainer = TimedGRPOTrainer(model=model, reward_funcs=length_reward, args=config, processing_class=tokenizer,
                               train_dataset=Dataset.from_dict({"prompt": texts}), callbacks=[timer],
                               prompt_ids=dict(zip(texts, ids)))
    trainer.train()
    print(json.dumps({"length": args.length, "torch_threads": torch.get_num_threads(), "trl_steps": timer.seconds,
                      **{f"trl_{k}": v for k, v in trainer.seconds.items()},
                      "tokens_per_step": PROMPTS_PER_STEP * GROUP * args.length}))


if __name__ == "__main__":
    main()
