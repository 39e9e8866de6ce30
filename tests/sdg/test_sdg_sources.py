"""Source adapters: items, ids, audio paths and located rejects from each source's published metadata format."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from audiomcq.errors import AudioMCQError
from audiomcq.sdg.sources import SOURCES, Rejected, SourceItem, get_source, read_source

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"


def read(name: str, root: Path | str | None = None, splits=None) -> tuple[list[SourceItem], list[Rejected]]:
    records = list(read_source(name, root or FIXTURES / name, splits))
    assert all(isinstance(r, SourceItem | Rejected) for r in records)
    assert all(r.source == name for r in records)
    return [r for r in records if isinstance(r, SourceItem)], [r for r in records if isinstance(r, Rejected)]


def test_clotho_yields_one_item_per_caption_and_locates_the_empty_one():
    items, rejected = read("Clotho")
    by_id = {item.id: item for item in items}
    assert len(by_id) == len(items) == 19  # 3 clips x 5 captions, one caption empty
    door = by_id["clotho/Creaking door 01#2"]
    assert door.audio_path == "Clotho/development/Creaking door 01.wav"
    assert door.caption == "An old wooden door creaks, then closes with a thud."  # the quoted line break is folded
    assert door.meta["split"] == "development" and door.meta["caption_index"] == 2
    assert by_id["clotho/birds_morning#5"].audio_path == "Clotho/validation/birds_morning.wav"
    assert by_id["clotho/train_passing#1"].meta["split"] == "evaluation"
    assert "clotho/rain_on_roof#3" not in by_id
    # the first record spans lines 2-3, so the rain record starts on line 4
    assert rejected == [Rejected("Clotho", "clotho_captions_development.csv:4", "rain_on_roof.wav: empty caption_3")]
    assert [i.id for i in items[:6]] == [f"clotho/Creaking door 01#{k}" for k in range(1, 6)] + [
        "clotho/rain_on_roof#1"
    ]


def test_audiocaps_names_audio_by_youtube_id_and_start_and_rejects_bad_rows():
    items, rejected = read("AudioCaps")
    assert [(i.id, i.audio_path, i.meta["split"]) for i in items] == [
        ("audiocaps/100001", "AudioCaps/9HUZjSJnUAA_30.wav", "train"),
        ("audiocaps/100002", "AudioCaps/Ab3dE_fGh-1_0.wav", "train"),  # start_time "0.0" names the _0 clip
        ("audiocaps/200001", "AudioCaps/Qw3eR5tY7uI_60.wav", "val"),
        ("audiocaps/300001", "AudioCaps/Lp0oK9iJ8uH_15.wav", "test"),
    ]
    assert items[0].caption == "An engine revs up and down repeatedly"
    assert [(r.location, r.reason) for r in rejected] == [
        ("train.csv:4", "start_time 'ten' is not a number of seconds"),
        ("val.csv:3", "empty caption"),
    ]
    val_items, _ = read("AudioCaps", splits=["val"])
    assert [i.id for i in val_items] == ["audiocaps/200001"]


def test_musiccaps_parses_aspect_lists_labels_and_flags():
    items, rejected = read("MusicCaps")
    assert [i.id for i in items] == ["musiccaps/-0Gj8-vB1q4", "musiccaps/zZ9yX8wV7uT"]
    first = items[0]
    assert first.audio_path == "MusicCaps/-0Gj8-vB1q4.wav"
    assert first.caption.startswith("A soft female voice sings")
    assert first.meta["aspect_list"] == ["low quality", "sustained strings melody", "soft female vocal"]
    assert first.meta["audioset_positive_labels"] == ["/m/0140xf", "/m/02cjck", "/m/04rlf"]
    assert (first.meta["is_audioset_eval"], first.meta["split"], first.meta["author_id"]) == (True, "eval", 4)
    assert (items[1].meta["is_balanced_subset"], items[1].meta["split"]) == (True, "train")
    assert [(r.location, r.reason) for r in rejected] == [
        ("musiccaps-public.csv:4", "end_s 40.0 is not after start_s 50.0")
    ]


def test_lp_musiccaps_reads_the_parquet_shards_and_prefers_caption_writing():
    items, rejected = read("LP-MusicCaps")
    assert [(i.id, i.meta["split"]) for i in items] == [
        ("lp-musiccaps/2", "train"),
        ("lp-musiccaps/6", "train"),
        ("lp-musiccaps/31", "valid"),
        ("lp-musiccaps/57", "test"),
    ]
    cantata, synth = items[0], items[1]
    assert cantata.audio_path == "LP-MusicCaps/f/some_soloists-cantatas-01-solo_cantata-0-29.mp3"
    assert cantata.caption.startswith("A slow classical piece") and cantata.meta["caption_field"] == "caption_writing"
    assert synth.caption == "An electronic track built on pulsing synths."  # writing empty: falls back to summary
    assert synth.meta["caption_field"] == "caption_summary"
    assert cantata.meta["tag_top188"] == ["classical", "violin", "slow"]
    assert len(rejected) == 1
    assert rejected[0].location == "data/train-00000-of-00001-28dbf9154d6d526d.parquet:3"
    assert "no caption" in rejected[0].reason
    test_only, _ = read("LP-MusicCaps", splits=("test",))
    assert [i.id for i in test_only] == ["lp-musiccaps/57"]


def test_speechcraft_keeps_librittsr_utterances_with_their_labels():
    items, rejected = read("SpeechCraft")
    assert [(i.id, i.audio_path) for i in items] == [
        ("speechcraft/19_198_000000_000000", "SpeechCraft/19/198/19_198_000000_000000.wav"),
        ("speechcraft/103_1240_000001_000002", "SpeechCraft/103/1240/103_1240_000001_000002.wav"),
        ("speechcraft/1088_129236_000003_000000", "SpeechCraft/1088/129236/1088_129236_000003_000000.wav"),
    ]
    first = items[0]
    assert first.caption == "A middle-aged man reads at an unhurried pace in a low, even voice."
    assert {k: first.meta[k] for k in ("age", "gender", "pitch", "volume", "speed", "emotion")} == {
        "age": "Middle-aged",
        "gender": "male",
        "pitch": "low",
        "volume": "normal",
        "speed": "slow",
        "emotion": "neutral",
    }
    assert first.meta["transcript"] == "Northanger Abbey was written in the year seventeen ninety eight."
    assert items[1].caption.startswith("A young woman speaks quickly")  # "llama-instruction" when no "description"
    file = "SpeechCraft_EN_LibriTTS-R_description.json"
    assert [r.location for r in rejected] == [f"{file}:3", f"{file}:4"]
    assert "not a LibriTTS-R utterance id" in rejected[0].reason  # GigaSpeech-M is left out (MMSU leakage)
    assert "no description" in rejected[1].reason


def test_tacos_groups_regions_per_recording_sorted_in_time():
    items, rejected = read("TACOS")
    assert [i.id for i in items] == ["tacos/101_rain_and_thunder", "tacos/202_kitchen"]  # 303 had no usable region
    rain = items[0]
    assert rain.audio_path == "TACOS/101_rain_and_thunder.wav"
    assert rain.segments == (
        {"start": 0.0, "end": 8.5, "text": "Rain falls steadily on leaves"},
        {"start": 10.25, "end": 12.0, "text": "A car passes, splashing through water"},
        {"start": 21.2, "end": 24.4, "text": "Thunder rumbles in the distance"},
    )
    assert rain.caption.endswith("[21.2s-24.4s] Thunder rumbles in the distance")
    assert items[1].segments == ({"start": 1.2, "end": 3.4, "text": "A knife chops vegetables on a board"},)
    assert [(r.location, r.reason) for r in rejected] == [
        ("tacos_annotations.csv:5", "offset 4.0 is not after onset 5.0"),
        ("tacos_annotations.csv:7", "empty caption"),
    ]


def test_compa_r_yields_question_answer_pairs():
    items, rejected = read("CompA-R")
    assert [i.id for i in items] == ["compa-r/Y0aB1cD2eF3g#1", "compa-r/Y0aB1cD2eF3g#2", "compa-r/Yqq1ww2ee3r#1"]
    first = items[0]
    assert first.audio_path == "CompA-R/Y0aB1cD2eF3g.wav" and first.caption is None
    assert first.question.startswith("Given the crowd noise and the whistle")
    assert first.answer.startswith("A sports match")
    assert first.meta["task"] == "open-ended reasoning" and first.meta["dataset"] == "AudioSet"
    assert items[1].question == "Why does the crowd get louder right after the whistle?"
    assert rejected == [Rejected("CompA-R", "CompA-R.json:3", "empty output")]


def test_reading_is_deterministic():
    for name in SOURCES:
        assert list(read_source(name, FIXTURES / name)) == list(read_source(name, FIXTURES / name))


def test_missing_metadata_unknown_sources_and_splits_are_clear_errors(tmp_path):
    shutil.copy(FIXTURES / "Clotho" / "clotho_captions_development.csv", tmp_path)
    with pytest.raises(AudioMCQError, match=r"Clotho: expected .* at .*clotho_captions_validation\.csv"):
        read_source("Clotho", tmp_path)  # raised by the call itself, before anything streams
    assert len(read("Clotho", tmp_path, splits=["development"])[0]) == 9
    with pytest.raises(AudioMCQError, match=r"musiccaps-public\.csv"):
        read_source("MusicCaps", tmp_path)
    with pytest.raises(AudioMCQError, match=r"unknown source 'WavCaps'; the sources are Clotho, AudioCaps"):
        read_source("WavCaps", tmp_path)
    with pytest.raises(AudioMCQError, match=r"AudioCaps has no split\(s\) \['dev'\]"):
        read_source("AudioCaps", FIXTURES / "AudioCaps", splits=["dev"])
    with pytest.raises(AudioMCQError, match="not a directory"):
        read_source("TACOS", tmp_path / "nope")


def test_bad_headers_and_duplicate_ids(tmp_path):
    (tmp_path / "train.csv").write_text("audiocap_id,youtube_id,caption\n1,abc,A dog barks\n")
    with pytest.raises(AudioMCQError, match=r"train\.csv lacks column\(s\) \['start_time'\]"):
        list(read_source("AudioCaps", tmp_path, splits=["train"]))
    (tmp_path / "train.csv").write_text(
        "audiocap_id,youtube_id,start_time,caption\n7,abcdefghijk,10,A dog barks\n7,abcdefghijk,10,A dog growls\n"
        "8,abcdefghijk,10\n"
    )
    items, rejected = read("AudioCaps", tmp_path, splits=["train"])
    assert [i.caption for i in items] == ["A dog barks"]
    assert [(r.location, r.reason) for r in rejected] == [
        ("train.csv:3", "duplicate id 'audiocaps/7'"),
        ("train.csv:4", "3 fields where the header has 4"),
    ]


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("clotho", "Clotho"),
        ("AUDIOCAPS", "AudioCaps"),
        ("music-caps", "MusicCaps"),
        ("lp-musiccaps", "LP-MusicCaps"),
        ("LPMusicCaps", "LP-MusicCaps"),
        ("lp_musiccaps_mtt", "LP-MusicCaps"),
        ("speechcraft", "SpeechCraft"),
        ("tacos", "TACOS"),
        ("compa-r", "CompA-R"),
        ("CompAR", "CompA-R"),
    ],
)
def test_get_source_accepts_aliases(alias, canonical):
    assert get_source(alias) is SOURCES[canonical]
    assert get_source(alias).name == canonical


def test_s3_roots_fetch_only_metadata_and_give_the_same_items(s3, tmp_path, monkeypatch):
    staging = tmp_path / "staging"
    monkeypatch.setenv("AUDIOMCQ_STAGING", str(staging))
    for path in sorted(p for p in FIXTURES.rglob("*") if p.is_file()):
        s3.fput_object("data", f"sources/{path.relative_to(FIXTURES).as_posix()}", str(path))
    s3.put_object("data", "sources/Clotho/development/Creaking door 01.wav", io.BytesIO(b"RIFF"), 4)
    for name in SOURCES:
        assert list(read_source(name, f"s3://data/sources/{name}")) == list(read_source(name, FIXTURES / name)), name
    fetched = sorted(p.relative_to(staging).parts[1:] for p in staging.rglob("*") if p.is_file())
    expected = sorted(("metadata", *p.relative_to(FIXTURES).parts[1:]) for p in FIXTURES.rglob("*") if p.is_file())
    assert fetched == expected  # the metadata files and nothing else: no audio
    with pytest.raises(
        AudioMCQError, match=r"expected .* at s3://data/sources/nowhere/Clotho/clotho_captions_development"
    ):
        read_source("Clotho", "s3://data/sources/nowhere/Clotho")
