"""Tiny random audio LMs of both supported families, built from config with an offline tokenizer and processor.

No hub is needed: a byte-level BPE is trained on the texts the model will see (a small vocabulary keeps the demo
fast), the feature extractor is Whisper's with 128 mel bins (as the real Qwen2.5-Omni and Qwen2-Audio use), and the
processor is the family's own (Qwen2-Audio) or an audio-only subclass (Qwen2.5-Omni: the stock one needs image/video
processors, which need torchvision). Each carries its family's real chat template: Qwen2.5-Omni-7B's published
``chat_template.json`` (in ``templates/``), and for Qwen2-Audio the processor's built-in one, which is what the hub
checkpoint falls back to. So the demo and the tests render prompts exactly as a real checkpoint does. The result is
saved and reloaded as an ordinary HF directory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    Qwen2_5OmniProcessor,
    Qwen2_5OmniThinkerConfig,
    Qwen2_5OmniThinkerForConditionalGeneration,
    Qwen2AudioConfig,
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
    Qwen2Tokenizer,
    WhisperFeatureExtractor,
)

from audiomcq.prompts import SYSTEM_PROMPT

AUDIO, AUDIO_BOS, AUDIO_EOS = "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"
IMAGE, VIDEO, VISION_BOS, VISION_EOS = "<|IMAGE|>", "<|VIDEO|>", "<|vision_bos|>", "<|vision_eos|>"
PAD, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIALS = [PAD, IM_START, IM_END, AUDIO, AUDIO_BOS, AUDIO_EOS, IMAGE, VIDEO, VISION_BOS, VISION_EOS]

FAMILIES = ("qwen2_5_omni", "qwen2_audio")
# The thinker always carries a vision tower; the smallest one that builds, never used for audio questions.
_TINY_VISION = {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "fullatt_block_indexes": [0]}


class OmniAudioProcessor(Qwen2_5OmniProcessor):
    """Qwen2.5-Omni's processor without its image and video halves (which require torchvision on CPU)."""

    def __init__(self, feature_extractor: Any = None, tokenizer: Any = None, chat_template: str | None = None) -> None:
        # get_attributes() reads this signature, so only these two sub-processors are saved and loaded.
        super(Qwen2_5OmniProcessor, self).__init__(feature_extractor, tokenizer, chat_template=chat_template)
        for name in ("image", "audio", "video"):
            setattr(self, f"{name}_token", getattr(self.tokenizer, f"{name}_token"))
            setattr(self, f"{name}_token_id", getattr(self.tokenizer, f"{name}_token_id"))
        for name in ("vision_bos", "vision_eos", "audio_bos", "audio_eos"):
            setattr(self, f"{name}_token", getattr(self.tokenizer, f"{name}_token"))

    def _process_audio(self, audio: Any, **kwargs: Any) -> Any:
        # The stock method pads every clip to the extractor's window; the Omni encoder only reads valid frames
        # anyway, so padding to the longest clip in the batch gives the same model inputs at a fraction of the
        # feature cost (~16x here). Padding to whole mel frames keeps each clip's frame count (so its audio tokens)
        # what the stock processor gives it, whatever else is in the batch.
        kwargs["padding"] = "longest"
        kwargs["pad_to_multiple_of"] = self.feature_extractor.hop_length
        features = self.feature_extractor(audio, **kwargs)
        features["feature_attention_mask"] = features.pop("attention_mask")
        lengths = features["feature_attention_mask"].sum(-1)
        features["num_audio_tokens"] = ((lengths - 1) // 2 + 1 - 2) // 2 + 1
        replacements = [self.replace_audio_token(features, audio_idx=i) for i in range(len(audio))]
        return features, replacements


@dataclass(frozen=True)
class TinySpec:
    """Sizes of a tiny model; the defaults are the calibrated sweet spot on a 2-core CPU."""

    hidden: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    audio_d: int = 64
    audio_layers: int = 2
    audio_heads: int = 2
    vocab: int = 600
    intermediate: int | None = None  # MLP width (default 2 x hidden)
    audio_ffn: int | None = None  # audio encoder MLP width (default 2 x audio_d)
    model_vocab: int | None = None  # embedding rows when larger than the tokenizer (a real model's 151,936)


# A random-initialised model of Qwen2.5-Omni-3B's thinker shape, for GPU throughput and MFU measurements.
OMNI_3B = TinySpec(
    hidden=2048,
    layers=36,
    heads=16,
    kv_heads=2,
    intermediate=11008,
    audio_d=1280,
    audio_layers=32,
    audio_heads=20,
    audio_ffn=5120,
    model_vocab=151_936,
)


def build_tokenizer(texts: Iterable[str], vocab: int = 600, family: str | None = None) -> Qwen2Tokenizer:
    """A byte-level BPE trained on ``texts`` (plus the system prompt), wrapped as a Qwen2Tokenizer carrying the
    chat template that ``family``'s published tokenizer has (Qwen2.5-Omni: its audio template; Qwen2-Audio and
    None, a plain text LM: Qwen's text-only ChatML)."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator([SYSTEM_PROMPT, "<answer> </answer>", *texts], trainer=trainer)
    spec = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in spec["merges"]]
    return Qwen2Tokenizer(
        vocab=spec["vocab"],
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token=IM_END,
        pad_token=PAD,
        audio_token=AUDIO,
        audio_bos_token=AUDIO_BOS,
        audio_eos_token=AUDIO_EOS,
        image_token=IMAGE,
        video_token=VIDEO,
        vision_bos_token=VISION_BOS,
        vision_eos_token=VISION_EOS,
        extra_special_tokens=[IM_START, IM_END],
        chat_template=chat_template("qwen2_5_omni" if family == "qwen2_5_omni" else "qwen_chatml"),
    )


def chat_template(name: str) -> str:
    """A published Qwen chat template, verbatim: ``qwen2_5_omni`` (Qwen2.5-Omni-7B's, in its processor and
    tokenizer) or ``qwen_chatml`` (the text-only one in Qwen2-Audio-7B-Instruct's tokenizer)."""
    from importlib import resources

    return resources.files("audiomcq.models").joinpath(f"templates/{name}.jinja").read_text(encoding="utf-8")


def build_processor(family: str, tokenizer: Qwen2Tokenizer) -> Any:
    """The family's processor over a 128-mel Whisper feature extractor, with the family's real chat template."""
    features = WhisperFeatureExtractor(feature_size=128, sampling_rate=16_000, return_attention_mask=True)
    if family == "qwen2_5_omni":
        return OmniAudioProcessor(features, tokenizer, chat_template=chat_template("qwen2_5_omni"))
    if family == "qwen2_audio":
        return Qwen2AudioProcessor(features, tokenizer)  # None: the processor's built-in template, as on the hub
    raise ValueError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")


def build_config(family: str, tokenizer: Qwen2Tokenizer, spec: TinySpec) -> Any:
    """A config of ``spec``'s size whose special-token ids match ``tokenizer``."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIALS}
    head_dim = spec.hidden // spec.heads
    text = {
        "vocab_size": max(len(tokenizer), spec.model_vocab or 0),
        "hidden_size": spec.hidden,
        "intermediate_size": spec.intermediate or 2 * spec.hidden,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads,
        "max_position_embeddings": 2048,
        "pad_token_id": ids[PAD],
        "eos_token_id": ids[IM_END],
        "tie_word_embeddings": False,
    }
    audio = {
        "num_mel_bins": 128,
        "d_model": spec.audio_d,
        "encoder_layers": spec.audio_layers,
        "encoder_attention_heads": spec.audio_heads,
        "encoder_ffn_dim": spec.audio_ffn or 2 * spec.audio_d,
    }
    if family == "qwen2_5_omni":
        half = head_dim // 2
        section = [half - 2 * (half // 4), half // 4, half // 4]
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": section}
        config = Qwen2_5OmniThinkerConfig(
            audio_config={**audio, "output_dim": spec.hidden, "n_window": 100},
            vision_config=_TINY_VISION | {"out_hidden_size": spec.hidden},
            text_config=text,
            audio_token_index=ids[AUDIO],
            image_token_index=ids[IMAGE],
            video_token_index=ids[VIDEO],
            audio_start_token_id=ids[AUDIO_BOS],
            audio_end_token_id=ids[AUDIO_EOS],
        )
        # get_rope_index reads these although the config class does not declare them.
        config.vision_start_token_id = ids[VISION_BOS]
        config.vision_end_token_id = ids[VISION_EOS]
    elif family == "qwen2_audio":
        config = Qwen2AudioConfig(
            audio_config=audio, text_config={"model_type": "qwen2", **text}, audio_token_index=ids[AUDIO]
        )
    else:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    config.pad_token_id = ids[PAD]
    config.eos_token_id = ids[IM_END]
    return config


def tokenizer_texts(record_files: Iterable[str | Path]) -> list[str]:
    """The texts a tiny tokenizer should learn: every prompt and answer of the given record files."""
    from audiomcq.data.io import read_records
    from audiomcq.prompts import solution, user_prompt

    texts = []
    for path in record_files:
        for r in read_records(path):
            texts += [user_prompt(r.question, r.choices), solution(r.answer)]
    return texts


def build_tiny(family: str, texts: Iterable[str], spec: TinySpec | None = None, seed: int = 0) -> tuple[Any, Any]:
    """A random model and its processor; ``texts`` train the tokenizer (use the prompts the model will see)."""
    import torch

    spec = spec or TinySpec()
    tokenizer = build_tokenizer(texts, spec.vocab, family)
    processor = build_processor(family, tokenizer)
    config = build_config(family, tokenizer, spec)
    torch.manual_seed(seed)
    cls = (
        Qwen2_5OmniThinkerForConditionalGeneration if family == "qwen2_5_omni" else Qwen2AudioForConditionalGeneration
    )
    model = cls(config)
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.eos_token_id = config.eos_token_id
    return model, processor


def save_tiny(model: Any, processor: Any, out: str | Path) -> Path:
    """Save as an ordinary HF directory (model + processor + tokenizer)."""
    out = Path(out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
