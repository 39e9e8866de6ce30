"""Where the audio of AudioMCQ's seven source datasets is officially published, and how each lands in the store.

Automatable sources are fetched from their publisher and checked against the publisher's checksums: Clotho v2.1
(Zenodo record 4783391, md5 from the record, cross-checked against the values pinned below), LibriTTS-R for
SpeechCraft (OpenSLR SLR141, md5 from its ``md5sum.txt``, cross-checked likewise), TACOS (Zenodo record 15379789,
md5 from the record) and MagnaTagATune for LP-MusicCaps (the lab's server publishes no checksum: the files are kept
with the sha256 we measured and marked unverified). AudioCaps, MusicCaps and CompA-R audio comes from YouTube
(AudioSet clips) and cannot be fetched automatically: they are listed with what to provide and where.

Each source's audio goes below the audio root under the source's folder, in the layout the caption-source adapters
(:mod:`audiomcq.sdg.sources`) assume: ``Clotho/<split>/<file>.wav``, ``SpeechCraft/<spk>/<chapter>/<utt>.wav``,
``LP-MusicCaps/<MagnaTagATune path>``, ``TACOS/…``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field

from audiomcq.errors import AudioMCQError
from audiomcq.fetch.archives import Remote, base_url, checksum_list, zenodo_files


@dataclass(frozen=True)
class Item:
    """One download: a file placed as is, an archive to unpack, or the parts of a split archive."""

    remotes: tuple[Remote, ...]
    kind: str  # "file" | "archive" | "parts"
    into: str  # folder below the audio root
    strip: int = 0  # leading path components dropped when unpacking
    keep: tuple[str, ...] = ()  # unpack only members matching these patterns (all when empty)

    @property
    def name(self) -> str:
        return self.remotes[0].name.removesuffix(".001")


@dataclass(frozen=True)
class Source:
    """One caption dataset behind AudioMCQ and how its audio is obtained."""

    name: str  # as in the records' source_dataset
    folder: str  # its folder below the audio root
    published: str  # where the audio is officially published
    licence: str
    provide: str = ""  # manual sources: what the user must put where
    items: Callable[[dict[str, str]], list[Item]] | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def automatic(self) -> bool:
        return self.items is not None


# Clotho v2.1 md5s as listed on Zenodo record 4783391 (also pinned by Labbeti/aac-datasets and mirdata).
CLOTHO_MD5 = {
    "clotho_audio_development.7z": "c8b05bc7acdb13895bb3c6a29608667e",
    "clotho_audio_validation.7z": "7dba730be08bada48bd15dc4e668df59",
    "clotho_audio_evaluation.7z": "4569624ccadf96223f19cb59fe4f849f",
    "clotho_captions_development.csv": "d4090b39ce9f2491908eebf4d5b09bae",
    "clotho_captions_validation.csv": "5879e023032b22a2c930aaa0528bead4",
    "clotho_captions_evaluation.csv": "1b16b9e57cf7bdb7f13a13802aeb57e2",
}
# LibriTTS-R md5s from OpenSLR's resources/141/md5sum.txt (as also pinned by ml-explore/mlx-data).
LIBRITTS_R_MD5 = {
    "dev_clean.tar.gz": "2c1f5312914890634cc2d15783032ff3",
    "dev_other.tar.gz": "62d3a80ad8a282b6f31b3904f0507e4f",
    "test_clean.tar.gz": "4d373d453eb96c0691e598061bbafab7",
    "test_other.tar.gz": "dbc0959d8bdb6d52200595cabc9995ae",
    "train_clean_100.tar.gz": "6df668d8f5f33e70876bfa33862ad02b",
    "train_clean_360.tar.gz": "382eb3e64394b3da6a559f864339b22c",
    "train_other_500.tar.gz": "a37a8e9f4fe79d20601639bf23d1add8",
}
CLOTHO_RECORD, TACOS_RECORD = "4783391", "15379789"
MTT_PARTS = ("mp3.zip.001", "mp3.zip.002", "mp3.zip.003")
ARCHIVE_SUFFIXES = (".zip", ".7z", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def _pinned(remote: Remote, pinned: dict[str, str], where: str) -> Remote:
    """The remote with the pinned md5; a publisher listing that disagrees with the pin is an error, not a choice."""
    pin = pinned.get(remote.name)
    if pin is None:
        return remote
    if remote.digest and remote.digest != f"md5:{pin}":
        raise AudioMCQError(
            f"{where}: {remote.name} is now listed as {remote.digest}, pinned md5:{pin}; "
            "the published file changed: check the release before using it"
        )
    return Remote(remote.url, remote.name, f"md5:{pin}", remote.size)


def _clotho(endpoints: dict[str, str]) -> list[Item]:
    listed = [r for r in zenodo_files(CLOTHO_RECORD, endpoints) if r.name in CLOTHO_MD5]
    files = [_pinned(r, CLOTHO_MD5, f"Zenodo record {CLOTHO_RECORD}") for r in listed]
    missing = sorted(set(CLOTHO_MD5) - {r.name for r in files})
    if missing:
        raise AudioMCQError(f"Zenodo record {CLOTHO_RECORD} no longer lists {missing}")
    return [Item((r,), "archive" if r.name.endswith(".7z") else "file", "Clotho") for r in sorted(files, key=_key)]


def _libritts_r(endpoints: dict[str, str]) -> list[Item]:
    base = f"{base_url('openslr', endpoints)}/resources/141"
    listed = checksum_list(f"{base}/md5sum.txt")
    items = []
    for name in LIBRITTS_R_MD5:
        remote = _pinned(Remote(f"{base}/{name}", name, listed.get(name)), LIBRITTS_R_MD5, f"{base}/md5sum.txt")
        items.append(Item((remote,), "archive", "SpeechCraft", strip=2, keep=("*.wav",)))
    return items


def _tacos(endpoints: dict[str, str]) -> list[Item]:
    files = zenodo_files(TACOS_RECORD, endpoints)
    if not files:
        raise AudioMCQError(f"Zenodo record {TACOS_RECORD} lists no files")
    kinds = {True: "archive", False: "file"}
    return [Item((r,), kinds[r.name.lower().endswith(ARCHIVE_SUFFIXES)], "TACOS") for r in sorted(files, key=_key)]


def _magnatagatune(endpoints: dict[str, str]) -> list[Item]:
    base = f"{base_url('mirg', endpoints)}/datasets/magnatagatune"
    parts = tuple(Remote(f"{base}/{name}", name) for name in MTT_PARTS)
    return [Item(parts, "parts", "LP-MusicCaps")]


def _key(remote: Remote) -> str:
    return remote.name


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "Clotho",
            "Clotho",
            f"Zenodo record {CLOTHO_RECORD} (Clotho v2.1), https://zenodo.org/records/{CLOTHO_RECORD}",
            "audio: Freesound licences per file (mostly CC-BY); captions: Tampere University",
            items=_clotho,
        ),
        Source(
            "AudioCaps",
            "AudioCaps",
            "YouTube clips named by AudioCaps 2.0 (github.com/cdjkim/audiocaps, "
            "dataset2.0/{train,val,test}.csv: youtube_id, start_time)",
            "YouTube terms; captions: per the repository",
            provide="10 s clips as AudioCaps/<youtube_id>_<start_time>.wav (the records' audio_path)",
        ),
        Source(
            "MusicCaps",
            "MusicCaps",
            "YouTube clips named by musiccaps-public.csv (HF google/MusicCaps, "
            "Kaggle googleai/musiccaps: ytid, start_s, end_s)",
            "YouTube terms; captions: per the card",
            provide="the 10 s clips at the records' audio_path under MusicCaps/",
        ),
        Source(
            "LP-MusicCaps",
            "LP-MusicCaps",
            "MagnaTagATune mp3.zip.001-003 from mirg.city.ac.uk (captions: HF seungheondoh/LP-MusicCaps-MTT)",
            "MagnaTagATune: per the lab's page; captions: per the HF card",
            items=_magnatagatune,
            notes=("no checksum is published: kept with the measured sha256, unverified",),
        ),
        Source(
            "SpeechCraft",
            "SpeechCraft",
            "LibriTTS-R (OpenSLR SLR141, all seven subsets); descriptions: github.com/thuhcsi/SpeechCraft",
            "LibriTTS-R CC-BY-4.0",
            items=_libritts_r,
        ),
        Source(
            "TACOS",
            "TACOS",
            f"Zenodo record {TACOS_RECORD}, https://zenodo.org/records/{TACOS_RECORD}",
            "Freesound licences per file",
            items=_tacos,
            notes=("the record's file layout is unconfirmed: archives are unpacked as they come",),
        ),
        Source(
            "CompA-R",
            "CompA-R",
            "instruction data on the GAMA authors' Google Drive (github.com/Sreyan88/"
            "GAMA); audio: AudioSet clips on YouTube",
            "AudioSet: YouTube terms; CompA-R: per its README",
            provide="the AudioSet clips at the records' audio_path under CompA-R/",
        ),
    )
}


def get_sources(names: str | list[str] | None) -> list[Source]:
    """Sources by name (case-insensitive; ``all``/None for every one, ``auto`` for the automatable ones)."""
    if names is None or names in ("all", ["all"]):
        return list(SOURCES.values())
    wanted = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    if wanted == ["auto"]:
        return [s for s in SOURCES.values() if s.automatic]
    lookup = {n.lower(): s for n, s in SOURCES.items()}
    unknown = [n for n in wanted if n.lower() not in lookup]
    if unknown:
        raise AudioMCQError(f"unknown source(s) {unknown}; the sources are {', '.join(SOURCES)}")
    return [lookup[n.lower()] for n in wanted]


def member_kept(item: Item, rel: str) -> bool:
    """Whether an unpacked member is kept (an item with ``keep`` patterns keeps only what matches)."""
    return not item.keep or any(fnmatch.fnmatchcase(rel, p) for p in item.keep)
