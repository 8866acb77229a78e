"""A local Hugging Face hub cache laid out exactly as huggingface_hub lays it out, for offline tests of hub ids."""
import hashlib
import os
from pathlib import Path


def fake_hub_repo(cache: Path, repo_id: str, files: dict, revision: str | None = None) -> Path:
    """Write `files` ({name: bytes or str or a Path to copy}) as the snapshot of model repo `repo_id` in hub cache
    `cache` (blobs, snapshots/<revision>/ links, refs/main); returns the snapshot folder."""
    repo = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    revision = revision or hashlib.sha1(repo_id.encode()).hexdigest()
    snap = repo / "snapshots" / revision
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    for name, content in files.items():
        data = Path(content).read_bytes() if isinstance(content, Path) else (content.encode() if isinstance(content, str) else content)
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snap / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists() or link.is_symlink(): link.unlink()
        os.symlink(os.path.relpath(blob, link.parent), link)
    return snap


def offline_hub(monkeypatch, cache: Path):
    "Point huggingface_hub at `cache` in offline mode (environment and its already-imported constants)."
    import huggingface_hub.constants as hc
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    try:
        import transformers.utils.hub as th
        if hasattr(th, "TRANSFORMERS_CACHE"): monkeypatch.setattr(th, "TRANSFORMERS_CACHE", str(cache))
    except ImportError: pass
