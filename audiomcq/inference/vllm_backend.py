"""The vLLM backend (GPU images only): audio as ``multi_modal_data``, automatic prefix caching on.

The prompt text is rendered by the checkpoint's own processor chat template (the same call the transformers
backend makes), so vLLM sees the tokens the model was trained on; the audio block comes first in the user turn, so
with a fixed-length silence every filtering prompt shares its prefix and vLLM's prefix cache serves it once.
Stop strings are kept in the text (``include_stop_str_in_output``) and a ``length`` finish marks a completion
truncated, as the transformers backend does.
"""

from __future__ import annotations

from collections.abc import Sequence

from audiomcq.errors import AudioMCQError
from audiomcq.inference.base import Completion, EngineSpec, Request, Sampling
from audiomcq.synth.audio import SR


class VLLMEngine:
    """One ``vllm.LLM`` per engine; ``generate`` submits all requests at once and lets vLLM batch them."""

    def __init__(self, spec: EngineSpec) -> None:
        try:
            from vllm import LLM
        except ImportError as err:  # CPU images do not ship vLLM
            raise AudioMCQError("the vllm backend needs the GPU image (pip install vllm); use transformers") from err
        import tempfile

        from transformers import AutoProcessor

        from audiomcq.models.export import export_for_vllm

        # vLLM has no entry for a thinker-only checkpoint: load the full-model layout exported from it.
        path = str(export_for_vllm(spec.path, tempfile.mkdtemp(prefix="audiomcq-vllm-")))
        self.format = spec.format
        self.processor = AutoProcessor.from_pretrained(path)
        extra = {"max_model_len": spec.max_length} if spec.max_length else {}
        self.llm = LLM(
            model=path,
            dtype=spec.dtype,
            enable_prefix_caching=True,
            limit_mm_per_prompt={"audio": 1},
            max_num_seqs=spec.batch_size,
            **extra,
        )
        model_config = getattr(getattr(self.llm, "llm_engine", None), "model_config", None)
        self.max_length: int | None = spec.max_length or getattr(model_config, "max_model_len", None)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text in this model's tokenizer (no special tokens added)."""
        return [len(ids) for ids in self.processor.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def prompt_tokens(self, request: Request) -> int:
        """Tokens the model reads for ``request``, its audio expanded as the processor expands it."""
        from audiomcq.models.batch import prompt_tokens

        seconds = len(request.audio) / SR
        return prompt_tokens(self.processor, request.question, request.choices, seconds, self.format)

    def generate(self, requests: Sequence[Request], sampling: Sampling | None = None) -> list[list[str]]:
        from vllm import SamplingParams

        from audiomcq.models.batch import prompt_text

        sampling = sampling or Sampling()
        params = SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_k=sampling.top_k or -1,
            max_tokens=sampling.max_new_tokens,
            seed=sampling.seed,
            stop=list(sampling.stop) or None,
            include_stop_str_in_output=True,
        )
        prompts = [
            {
                "prompt": prompt_text(self.processor, r.question, r.choices, self.format),
                "multi_modal_data": {"audio": (r.audio, SR)},
            }
            for r in requests
        ]
        results = self.llm.generate(prompts, params, use_tqdm=False)
        return [[Completion(o.text, truncated=o.finish_reason == "length") for o in res.outputs] for res in results]
