"""Bring the outside world into the store: base models, the AudioMCQ release with its source audio, benchmarks.

Each kind is one call with plain arguments, so a CLI command and a pipeline component run the same code:

- :func:`fetch_model` (``audiomcq fetch model REPO[@REV] --to …``): hub weights, configs, tokenizer and templates
  at a resolved commit, every file held to the hub's checksum, a manifest, ``_COMPLETE`` last;
- :func:`fetch_dataset` (``audiomcq fetch dataset audiomcq --to …``): the release checked against the record
  contract (bad records quarantined and counted), the audio of every source that can be fetched automatically, and
  a report of which records have their audio;
- :func:`fetch_benchmark` (``audiomcq fetch benchmark NAME --to …``): metadata and audio from the official
  releases, laid out as ``audiomcq eval`` reads them.

Every fetch resumes: files already at the destination with the published digest are not downloaded again.
"""

from audiomcq.fetch.benchmarks import FETCHERS as BENCHMARKS
from audiomcq.fetch.benchmarks import fetch_benchmark
from audiomcq.fetch.dataset import DATASETS, fetch_dataset
from audiomcq.fetch.model import fetch_model, split_ref
from audiomcq.fetch.sources import SOURCES

__all__ = ["BENCHMARKS", "DATASETS", "SOURCES", "fetch_benchmark", "fetch_dataset", "fetch_model", "split_ref"]
