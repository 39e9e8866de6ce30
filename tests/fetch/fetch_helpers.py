"""What several fetch test modules build with: a throwaway hub token, a WAV stand-in, tar.gz and zip archives in
memory, and an object's bytes read back from the S3 server."""

from __future__ import annotations

import io
import tarfile
import zipfile

SECRET = "hf_test_token_value_42"


WAV = b"RIFF" + bytes(2000)


def s3_bytes(s3, key: str) -> bytes:
    return s3.get_object("data", key).read()


def tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()
