"""Training telemetry reaches the run directory, each checkpoint, and a real Prometheus Pushgateway."""

import json
import urllib.request


def test_sft_steps_are_logged_snapshotted_and_pushed(pushgateway, tiny_omni, synth_corpus, tmp_path, monkeypatch):
    from audiomcq.train.sft import train_sft

    address, url = pushgateway
    monkeypatch.setenv("AUDIOMCQ_PUSHGATEWAY", address)
    out = tmp_path / "run" / "sft"
    train_sft(
        tiny_omni,
        synth_corpus / "train.jsonl",
        synth_corpus,
        out,
        steps=3,
        lr=1e-3,
        batch_size=4,
        save_steps=2,
        logging_steps=1,
    )
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert all(r["learning_rate"] >= 0 and r["step_seconds"] > 0 for r in steps)
    assert all(r["tokens_per_second"] > 0 for r in steps[1:]) and "tokens_per_second" not in steps[0]
    snapshot = json.loads((out / "checkpoint-2" / "metrics.json").read_text())
    assert [r["step"] for r in snapshot if "loss" in r] == [1, 2]
    exposed = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    where = __import__("hashlib").sha256(str(out.resolve()).encode()).hexdigest()[:6]  # one label per output
    assert f'audiomcq_train_loss{{instance="",job="audiomcq-train",run="run-sft-{where}"}}' in exposed
    assert "audiomcq_train_tokens_per_second{" in exposed


def _query(url: str, expr: str, timeout: float = 20.0) -> list:
    """The result of a Prometheus instant query, waiting for the series to be scraped."""
    import time as clock
    import urllib.parse

    deadline = clock.monotonic() + timeout
    while True:
        body = urllib.request.urlopen(f"{url}/api/v1/query?query={urllib.parse.quote(expr)}", timeout=5).read()
        result = json.loads(body)["data"]["result"]
        if result or clock.monotonic() > deadline:
            return result
        clock.sleep(0.5)


def test_filter_and_generation_progress_reach_prometheus(prometheus, tiny_omni, synth_corpus, tmp_path, monkeypatch):
    """Batch stages push records done and throughput to the Pushgateway; Prometheus scrapes and answers queries."""
    from audiomcq.acf import FilterConfig, run_filter
    from audiomcq.sdg.run import generate_dataset

    url, address = prometheus
    monkeypatch.setenv("AUDIOMCQ_PUSHGATEWAY", address)
    run_filter(
        synth_corpus / "eval.jsonl",
        [str(tiny_omni)],
        synth_corpus,
        tmp_path / "acf",
        FilterConfig(probes=("silence:1",), min_correct=1, chunk_size=8),
    )
    generate_dataset({"synthetic": synth_corpus / "train.jsonl"}, tmp_path / "sdg")
    done = _query(url, 'audiomcq_filter_records_done{job="audiomcq-filter"}')
    assert done and float(done[0]["value"][1]) == 16 and done[0]["metric"]["shard"] == "0of1"
    assert float(_query(url, "audiomcq_filter_records_per_second")[0]["value"][1]) > 0
    samples = _query(url, 'audiomcq_generate_samples{job="audiomcq-generate"}')
    assert samples and float(samples[0]["value"][1]) == len(
        (tmp_path / "sdg" / "samples.jsonl").read_text().splitlines()
    )
