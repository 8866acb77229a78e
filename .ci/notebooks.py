"""Store the notebooks executed, with their outputs, and check that they keep them.

    python .ci/notebooks.py run [NOTEBOOK ...]   # execute in place (all of nbs/ by default); `make notebooks`
    python .ci/notebooks.py run --all NOTEBOOK   # flagged cells too (a real slow run, whose outputs are then kept)
    python .ci/notebooks.py check                # every notebook was executed and keeps the outputs it had
    python .ci/notebooks.py verify [NOTEBOOK ...] # re-execute and diff with the stored outputs (developers; slow)

`run` executes every code cell not flagged `#| slow`, `#| gpu` or `#| notest` with nbdev's own engine (execnb), in
the notebook's folder, with progress bars off; flagged cells keep the outputs of their last real run. Outputs are
made reviewable: temporary folders and this machine's paths are replaced by placeholders. The ids of the cells that
produced output are recorded in the notebook's metadata (`sparse_circuits.outputs`, kept by nbdev_clean), so that
`check` can tell a notebook whose outputs were stripped: it fails if any recorded cell has lost its outputs, or if a
notebook was never executed. Run `nbdev_clean` after `run` (the Makefile does).

`verify` executes the same cells without writing anything and prints, for each cell whose text output differs from
the stored one, a diff; timings (a number before "s", "ms", "min", "h", "it/s", "s/it" or after a "seconds" key) are
masked, so what it reports is a number or a table that moved. It catches stored outputs left stale by a change
elsewhere. Run it with the thread count the outputs were stored with (2, the CI machine's cores): mini trainings
give other last digits on one thread. Not part of `make test`: it doubles the notebooks' time, and a number that
moves with the CPU model would fail CI machines that differ from the one that stored it.
"""
import difflib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
FLAGS = {"slow", "gpu", "notest"}
KEY = "sparse_circuits"


def notebooks():
    return sorted(p for p in NBS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def flags(src: str) -> set:
    return {w for line in src.splitlines() if line.startswith("#|") for w in line[2:].split()}


def skipped(src: str) -> bool:
    return bool(flags(src) & FLAGS) or "nbdev_export(" in src


_TMP = re.compile(r"/tmp/[A-Za-z0-9_./-]*?(?=[/'\"\s)\],]|$)")


def scrub(text: str) -> str:
    "Machine-specific paths out of an output: temporary folders, the repository, the home folder."
    text = text.replace(str(ROOT), "<repo>").replace(str(Path.home()), "~")
    return _TMP.sub("<tmp>", text)


def _scrub_outputs(outputs):
    for o in outputs:
        if "text" in o: o["text"] = [scrub(t) for t in (o["text"] if isinstance(o["text"], list) else [o["text"]])]
        for k, v in (o.get("data") or {}).items():
            if k.startswith("text/"): o["data"][k] = [scrub(t) for t in (v if isinstance(v, list) else [v])]
    return outputs


def execute(path: Path, run_flagged: bool = False):
    "The notebook at `path` with its runnable cells executed (in its folder), as execnb's notebook object."
    from execnb.nbio import read_nb
    from execnb.shell import CaptureShell
    os.environ.update(TQDM_DISABLE="1", PYTHONHASHSEED="0", MPLBACKEND="module://matplotlib_inline.backend_inline")
    nb = read_nb(path)
    def pre(cell):
        if cell.cell_type != "code" or "nbdev_export(" in cell.source: return True
        if skipped(cell.source) and not run_flagged: return True
        cell.outputs = []
        return False
    shell = CaptureShell(path)
    shell.run("import matplotlib; matplotlib.rcParams.update({'figure.dpi': 64, 'savefig.dpi': 64})")  # small stored images
    cwd = os.getcwd()
    os.chdir(path.parent)
    try: shell.run_all(nb, exc_stop=True, preproc=pre)
    finally: os.chdir(cwd)
    return nb


def run(paths, run_flagged: bool = False):
    from execnb.nbio import write_nb
    for path in paths:
        t0 = time.time()
        nb = execute(path, run_flagged)
        write_nb(nb, path)
        raw = json.loads(path.read_text(encoding="utf-8"))
        ids = []
        for c in raw["cells"]:
            if c["cell_type"] == "code" and c.get("outputs"):
                c["outputs"] = _scrub_outputs(c["outputs"])
                ids.append(c["id"])
        raw["metadata"][KEY] = {"outputs": ids}
        path.write_text(json.dumps(raw, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"{path.relative_to(ROOT)}: {len(ids)} cells with outputs ({time.time() - t0:.0f} s)", flush=True)


def problems(path: Path) -> list:
    "What is wrong with a stored notebook's outputs (an empty list if nothing)."
    nb = json.loads(path.read_text(encoding="utf-8"))
    meta = nb.get("metadata", {}).get(KEY)
    runnable = [c for c in nb["cells"] if c["cell_type"] == "code" and not skipped("".join(c["source"]))]
    if meta is None:
        return [f"{path.relative_to(ROOT)}: never executed by `make notebooks` (no {KEY} metadata)"] if runnable else []
    cells = {c.get("id"): c for c in nb["cells"]}
    out = []
    for cid in meta.get("outputs", []):
        c = cells.get(cid)
        if c is not None and not c.get("outputs"):
            out.append(f"{path.relative_to(ROOT)}: cell {cid} had outputs and has none now (stripped?)")
    if runnable and not any(c.get("outputs") for c in runnable):
        out.append(f"{path.relative_to(ROOT)}: none of its {len(runnable)} runnable code cells has outputs")
    return out


_TIMING = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?=\s*(?:s|ms|min|h|it/s|s/it)\b)|(?<=seconds': )[\d.]+|(?<=seconds\": )[\d.]+")


def output_text(cell) -> str:
    "A code cell's text outputs (streams, text/plain results, errors), scrubbed of paths, with timings masked."
    parts = []
    for o in cell.get("outputs", []):
        t = o.get("text") or (o.get("data") or {}).get("text/plain") or "\n".join(o.get("traceback", []))
        parts.append("".join(t) if isinstance(t, list) else str(t))
    return _TIMING.sub("<t>", scrub("".join(parts)))


def verify(path: Path) -> int:
    "Print a diff for every executed cell whose text output moved; the number of such cells."
    stored = json.loads(path.read_text(encoding="utf-8"))["cells"]
    fresh = json.loads(json.dumps(execute(path)))["cells"]
    moved = 0
    for i, (a, b) in enumerate(zip(stored, fresh)):
        if a["cell_type"] != "code" or skipped("".join(a["source"])): continue      # skipped: flagged or the export cell
        old, new = output_text(a), output_text(b)
        if old == new: continue
        moved += 1
        diff = list(difflib.unified_diff(old.splitlines(), new.splitlines(), "stored", "now", lineterm="", n=1))
        print(f"--- {path.relative_to(ROOT)} cell {i} ({a.get('id')}): output moved", *diff[2:40], sep="\n")
    print(f"{path.relative_to(ROOT)}: {moved} cell(s) whose output moved", flush=True)
    return moved


def _each(paths, args):
    """Return codes of this script run with `args` on each notebook, one process each (as nbdev_test: a notebook's
    definitions must not leak into the next); a generator, so a caller can stop at the first failure."""
    for p in paths: yield subprocess.run([sys.executable, __file__, *args, str(p)]).returncode


def main(argv):
    if not argv or argv[0] not in ("run", "check", "verify"):
        print(__doc__); return 2
    if argv[0] == "verify":
        paths = [Path(a).resolve() for a in argv[1:]] or notebooks()
        if len(paths) == 1: return 1 if verify(paths[0]) else 0
        return 1 if any(_each(paths, ["verify"])) else 0
    if argv[0] == "run":
        every = "--all" in argv
        paths = [Path(a).resolve() for a in argv[1:] if a != "--all"] or notebooks()
        if len(paths) == 1: run(paths, run_flagged=every); return 0
        return next((rc for rc in _each(paths, ["run", *(["--all"] if every else [])]) if rc), 0)   # stops at a failure
    bad = [p for nb in notebooks() for p in problems(nb)]
    for b in bad: print(b, file=sys.stderr)
    print(f"{len(notebooks())} notebooks, {len(bad)} problems with stored outputs")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
