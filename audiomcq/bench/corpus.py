"""Length profiles for ``audiomcq bench train --profile``: what one SFT sample costs, in audio and text tokens.

``synthetic``: the demo's synthetic corpus (``audiomcq.synth``), 256 records of 1.5-2 s clips with short questions and
answer-only targets: about 130 tokens per sample. It is what ``bench train`` measured before profiles existed.

``audiomcq``: the shape of a real AudioMCQ SFT sample, with lengths drawn as follows (128 records, seeded):

- **Audio**: every clip is 30 s, the feature extractor's whole window and the length of the paper's silence probes,
  so 750 audio tokens (25 per second after the encoder's two stride-2 reductions) plus the two audio delimiters. Real
  clips vary by source (AudioSet-based sources, about half of the release, are 10 s; SpeechCraft utterances are
  shorter), so this is the long end of the data, which is what fills a 1024-token row.
- **Prompt**: the model-card system prompt and the R1-AQA user prompt (``audiomcq.prompts``), as training renders it;
  the question is 8-20 words and each of the 4 options 1-6 words (uniform), like the release's generated
  single-sentence questions with short options.
- **Answer**: half the records answer only (``<answer>option</answer>``, as every run in the paper trains); the
  other half carry a simple-CoT paragraph of 30-90 words (uniform; 50-150 tokens with the bench's small tokenizer)
  that ``bench train`` trains before the answer (``AudioSFTCollator(cot="simple_cot")``), like the release's
  ``<simple analysis>`` annotations. After 30 s of audio and the prompt, about 130 tokens are left under the
  released ``max_length`` of 1024, so a CoT of a few hundred tokens cannot fit with a 30 s clip at all.
- **Limit**: the bench trains with that ``max_length``, so a sample the released run would skip is skipped (and
  counted in the log) here too; ``bench train`` prints the token lengths it trained on (about 880-1020).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PROFILES = ("synthetic", "audiomcq")
CLIP_SECONDS = 30.0
CLIPS = 8  # distinct waveforms, shared by the records (their content does not change the cost)
QUESTION_WORDS = (8, 20)
OPTIONS = 4
OPTION_WORDS = (1, 6)
COT_SHARE = 0.5
COT_WORDS = (30, 90)
MAX_LENGTH = 1024  # the released SFT max_length (training_scripts/sft.sh)
_WORDS = (
    "sound",
    "audio",
    "clip",
    "speaker",
    "voice",
    "music",
    "melody",
    "rhythm",
    "tempo",
    "drum",
    "guitar",
    "piano",
    "engine",
    "car",
    "dog",
    "bird",
    "rain",
    "wind",
    "water",
    "crowd",
    "applause",
    "laughter",
    "footsteps",
    "door",
    "siren",
    "bell",
    "alarm",
    "horn",
    "train",
    "plane",
    "motor",
    "machine",
    "tool",
    "hammer",
    "whistle",
    "male",
    "female",
    "child",
    "adult",
    "calm",
    "excited",
    "angry",
    "happy",
    "sad",
    "loud",
    "quiet",
    "soft",
    "sharp",
    "low",
    "high",
    "fast",
    "slow",
    "steady",
    "rising",
    "falling",
    "background",
    "foreground",
    "first",
    "second",
    "last",
    "beginning",
    "end",
    "middle",
    "repeated",
    "single",
    "several",
    "many",
    "clearly",
    "heard",
    "present",
    "prominent",
    "distant",
    "close",
    "indoor",
    "outdoor",
    "street",
    "room",
    "hall",
    "forest",
    "beach",
    "kitchen",
    "office",
    "which",
    "what",
    "where",
    "when",
    "how",
    "does",
    "the",
    "a",
    "of",
    "in",
    "on",
    "at",
    "with",
    "during",
    "after",
    "before",
    "is",
    "are",
    "was",
)


def write_profile(profile: str, out: str | Path, seed: int = 7) -> dict[str, Any]:
    """Write ``profile``'s records and clips under ``out``; returns ``data`` (the JSONL), ``audio_root`` and ``cot``
    (the CoT field the bench trains, or None)."""
    out = Path(out)
    if profile == "synthetic":
        from audiomcq.synth import generate

        generate(out, 256, seed=seed, eval_n=0)
        return {"data": out / "train.jsonl", "audio_root": out, "cot": None}
    if profile != "audiomcq":
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    return _audiomcq(out, seed)


def _audiomcq(out: Path, seed: int, n: int = 128) -> dict[str, Any]:
    import numpy as np
    import soundfile as sf

    from audiomcq.data.io import write_records
    from audiomcq.data.record import MCQRecord
    from audiomcq.synth import audio as A

    rng = np.random.default_rng(seed)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    for i in range(CLIPS):
        wave = A.noise(CLIP_SECONDS, rng, colour="pink", amp=0.1) + A.tone(110.0 * (i + 2), CLIP_SECONDS, amp=0.2)
        sf.write(out / "clips" / f"clip{i}.wav", wave.astype(np.float32), A.SR, subtype="PCM_16")

    def words(bounds: tuple[int, int]) -> str:
        return " ".join(rng.choice(_WORDS, int(rng.integers(bounds[0], bounds[1] + 1))))

    records = []
    for i in range(n):
        options = [words(OPTION_WORDS) for _ in range(OPTIONS)]
        answer = options[int(rng.integers(OPTIONS))]
        cot = f"<simple analysis>{words(COT_WORDS)}</simple analysis>" if rng.random() < COT_SHARE else None
        records.append(
            MCQRecord(
                id=f"bench{i:04d}",
                question=words(QUESTION_WORDS).capitalize() + "?",
                choices=options,
                answer=answer,
                audio_path=f"clips/clip{i % CLIPS}.wav",
                simple_cot=cot,
            )
        )
    write_records(out / "train.jsonl", records)
    return {"data": out / "train.jsonl", "audio_root": out, "cot": "simple_cot"}


def tokenizer_texts(data: str | Path) -> list[str]:
    """What a bench model's tokenizer learns from a profile's records: prompts, answers and CoT texts."""
    from audiomcq.data.io import read_records
    from audiomcq.models.tiny import tokenizer_texts as prompt_texts

    return prompt_texts([data]) + [r.simple_cot for r in read_records(data) if r.simple_cot]


def sample_lengths(processor: Any, data: str | Path, audio_root: str | Path, cot: str | None) -> list[int]:
    """Tokens of each record's SFT sample (prompt, audio and target), as the trainer will see it."""
    from audiomcq.data.io import read_records
    from audiomcq.models.batch import record_target
    from audiomcq.models.lengths import token_counts

    eos = processor.tokenizer.eos_token
    pairs = token_counts(processor, read_records(data), audio_root, lambda r: record_target(r, eos, cot))
    return [tokens for _, tokens in pairs if tokens is not None]
