"""The template backend: AudioMCQ-style samples without an LLM, for the embedded default and for tests.

A caption-matching question ("Which description matches the audio?") takes the item's caption as the answer and
three other items' captions as distractors; TACOS-style items ask when a captioned event starts, with timestamp
options; instruction-QA items (CompA-R) keep their question and draw distractor answers from other items. The
structured and simple CoT follow the paper's three-stage template literally. Deterministic for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from audiomcq.sdg.steps import GRADES, Draft, Reject, kind_of, validate


def template_draft(item: Any, pool: Sequence[Any], seed: int = 0) -> Draft:
    """A draft for ``item``; ``pool`` (the items of its chunk) supplies distractors. Raises Reject."""
    rng = random.Random(f"{seed}:{item.id}")
    kind = item.meta.get("question_type") or kind_of(item.source)  # our corpus knows each clip's domain
    if item.segments:
        event = item.segments[0]
        question = f"When does this event start: {event['text']}?"
        answer = f"{float(event['start']):.1f}s"
        shifts = rng.sample([-6.0, -3.5, -2.0, 2.5, 4.0, 7.5], 3)
        others = [f"{max(0.0, float(event['start']) + s):.1f}s" for s in shifts]
        kind, caption = "temporal", f"{event['text']} from {event['start']}s to {event['end']}s"
    else:
        text = item.answer if item.question else item.caption
        question = item.question or "Which description matches the audio?"
        candidates = sorted({(p.answer if p.question else p.caption) or "" for p in pool} - {text, ""})
        if not text or len(candidates) < 3:
            raise Reject("template", "needs a caption and three other distinct captions in its chunk")
        answer, others, caption = text, rng.sample(candidates, 3), text
    choices = [answer, *others]
    rng.shuffle(choices)
    mcq = {"question": question, "choices": choices, "answer": answer, "question_type": kind}
    try:
        validate("mcq", mcq)
    except ValueError as err:
        raise Reject("template", str(err)) from None
    structured = (
        f"<stage1>According to the question text, the question asks about the audio, so the question type is "
        f"{kind}.</stage1><stage2>I need to firstly analyze the audio content: {caption}</stage2><stage3>According "
        f'to the audio content, the other choices are not mentioned, so the correct answer is "{answer}".</stage3>'
    )
    simple = f"<simple analysis>The audio matches {caption}, so the answer is {answer}.</simple analysis>"
    fields = {"source": item.source, "question": item.question, "caption": caption}
    return Draft(fields, mcq, structured, simple, dict.fromkeys(GRADES, 5))
