"""``audiomcq-train``: one paradigm from an ACF-labelled pool (SFT, GRPO), then checkpoint selection.

Compile it with ``kfp dsl compile --py pipelines/train.py --output train.yaml`` or ``audiomcq pipeline compile``.
"""

from kfp import dsl

from audiomcq.components import train as ops
from audiomcq.components.images import image
from audiomcq.pipelines.placement import place


@dsl.pipeline(name="audiomcq-train")
def audiomcq_train(
    model: str,
    labelled: str,
    audio_root: str,
    selection: str,
    paradigm: str = "weak_to_strong",
    recipe: str = "weak_to_strong",
    overrides: list = [],  # noqa: B006 - KFP pipeline defaults are compiled, never mutated
    publish: str = "",
    max_new_tokens: int = 256,
) -> None:
    """One post-training paradigm (allocation, SFT, GRPO) on an ACF-labelled pool, then checkpoint selection.

    The recipe's launch.nodes picks the branch: 1 trains in the step's own pod on the GPU pool; more submit a
    Kubeflow TrainJob from a CPU-only step and follow it to its end. Every complete checkpoint is then scored on
    the selection set and the best one is chosen.

    Args:
        model: The starting model: an s3:// prefix of a model directory (or a Hugging Face id the pods can
            download). Example: "s3://audiomcq/models/Qwen2.5-Omni-7B".
        labelled: The ACF-labelled pool (the audiomcq-filter output labelled.jsonl), an s3:// URI. Example:
            "s3://audiomcq/acf/pool/labelled.jsonl".
        audio_root: Where the pool's and the selection set's audio is: an s3:// prefix or a directory. Example:
            "s3://audiomcq/audio".
        selection: Held-out records for checkpoint selection, an s3:// URI. Example:
            "s3://audiomcq/data/selection.jsonl".
        paradigm: How the pool is split between SFT and GRPO: weak_to_strong, mixed_to_strong, mixed_to_mixed,
            all_sft or all_grpo.
        recipe: Recipe name (weak_to_strong, mixed_to_strong, ...) or the path of a recipe YAML inside the image;
            it holds every hyperparameter and launch.nodes.
        overrides: Recipe overrides, each "section.key=value". Example: ["sft.trainer_args.max_steps=750",
            "launch.nodes=4"]. Empty: the recipe as written.
        publish: S3 prefix under which the run's checkpoints are kept, in <publish>/<run id>; retries resume from
            there. Empty: the run's artifacts only. Example: "s3://audiomcq/train".
        max_new_tokens: The longest answer a checkpoint may give on the selection set.
    """
    scope = place(ops.run_prefix(publish=publish, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER), "plan")
    scope.set_display_name("run prefix")
    inputs = {
        "model": model,
        "labelled": labelled,
        "audio_root": audio_root,
        "recipe": recipe,
        "overrides": overrides,
        "paradigm": paradigm,
        "selection": selection,
        "publish": scope.output,  # <publish>/<run id>: retries resume, reruns start afresh
    }
    nodes = place(ops.launch_nodes(recipe=recipe, overrides=overrides).set_display_name("read launch.nodes"), "plan")
    # Two conditions rather than If/Else: an Else adds a wrapper group to the run graph that takes no display name.
    with dsl.If(nodes.output > 1, name="multi-node (launch.nodes > 1)"):
        job = ops.train_on_cluster(**inputs, train_image=image("train"))
        place(job.set_display_name("train on a TrainJob"), "submit")
        chosen = ops.select_checkpoint(run=job.outputs["run"], audio_root=audio_root, max_new_tokens=max_new_tokens)
        place(chosen.set_display_name("select checkpoint"), "eval", reads_uris=True)
    with dsl.If(nodes.output <= 1, name="single node (launch.nodes = 1)"):
        run = place(ops.train_paradigm(**inputs).set_display_name("train in this pod"), "train")
        chosen = ops.select_checkpoint(run=run.outputs["run"], audio_root=audio_root, max_new_tokens=max_new_tokens)
        place(chosen.set_display_name("select checkpoint"), "eval", reads_uris=True)
