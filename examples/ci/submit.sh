#!/usr/bin/env bash
# The CI job's command sequence, in one place for every CI system: compile the pipelines pinned to the image digests
# the build produced, then upload one of them as a version named by its content, run it, wait for it, and exit with
# the run's outcome (examples/ci/submit.py). Extra arguments go to submit.py, e.g. --param recipe=demo.
#
#   BUILD_JSON   `skaffold build --file-output` of this commit's images       (default build.json)
#   PIPELINE     which pipeline to run                                         (default audiomcq-demo)
#   EXPERIMENT   the KFP experiment                                            (default audiomcq-ci)
#   RUN_NAME     the run's name                                                (default: the version's name)
#   RUN_TIMEOUT  seconds to wait before the run is terminated and the job fails (default 18000)
#   OUT_DIR      where the compiled pipelines go; keep it as a job artifact    (default dist)
#   KFP_ENDPOINT, KFP_NAMESPACE, KFP_TOKEN (or KFP_TOKEN_FILE), KFP_SERVICE_ACCOUNT: see submit.py
set -euo pipefail

out="${OUT_DIR:-dist}"
pipeline="${PIPELINE:-audiomcq-demo}"
audiomcq pipeline compile --images "${BUILD_JSON:-build.json}" --out "$out" --manifests
args=("$out/$pipeline.yaml" --experiment "${EXPERIMENT:-audiomcq-ci}" --timeout "${RUN_TIMEOUT:-18000}")
if [[ -n "${RUN_NAME:-}" ]]; then
  args+=(--run-name "$RUN_NAME")
fi
exec python "$(dirname "$0")/submit.py" "${args[@]}" "$@"
