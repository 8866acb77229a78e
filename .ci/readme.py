"""Generate README.md from nbs/index.ipynb (nbdev's own README rendering needs Quarto, which is not installed).

    python .ci/readme.py          # write README.md
    python .ci/readme.py --check  # exit 1 if README.md is not what index.ipynb generates
"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = "<!-- Generated from nbs/index.ipynb by .ci/readme.py: edit the notebook, not this file. -->\n\n"


def render(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    parts = []
    for cell in nb["cells"]:
        src = "".join(cell["source"]).strip("\n")
        if not src:
            continue
        if cell["cell_type"] == "markdown":
            lines = src.split("\n")
            # nbdev's summary line "> ..." right under the title stays a quote, as nbdev renders it
            # images live in nbs/images: the notebook links them relative to nbs/, the README from the root
            parts.append("\n".join(lines).replace("](images/", "](nbs/images/"))
        elif cell["cell_type"] == "code":
            if any(l.strip().startswith("#| hide") for l in src.split("\n")):
                continue
            code = "\n".join(l for l in src.split("\n") if not l.startswith("#|"))
            parts.append(f"```python\n{code}\n```")
    return HEADER + "\n\n".join(parts) + "\n"


def main(argv):
    text = render(ROOT / "nbs" / "index.ipynb")
    readme = ROOT / "README.md"
    if "--check" in argv:
        if not readme.exists() or readme.read_text(encoding="utf-8") != text:
            print("README.md does not match nbs/index.ipynb: run `python .ci/readme.py` and commit.", file=sys.stderr)
            return 1
        print("README.md matches nbs/index.ipynb")
        return 0
    readme.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
