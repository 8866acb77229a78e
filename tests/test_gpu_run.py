"""benchmarks/gpu_run.py --tiny on the CPU: every stage of the GPU run works before any GPU time is spent."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_run_tiny_on_cpu(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_run.py"), "--tiny", "--device", "cpu", "--out", str(out)],
                       capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["ok"] and s["device"] == "cpu" and s["tiny"]
    assert {"tests", "bench", "smollm2"} <= set(s["stages"]) and not any("error" in v for v in s["stages"].values())
    files = sorted(p.name for p in out.iterdir())
    assert files == ["bench.csv", "density.csv", "figure.png", "pytest.txt", "results.csv", "sparsify_log.csv", "summary.json"]
    assert len(files) <= 8 and all(p.stat().st_size < 16 << 20 for p in out.iterdir())
    rows = s["stages"]["bench"]["rows"]
    assert [r["shape"] for r in rows] == ["tiny-gpt2", "tiny-llama"] and all(r["eap_ratio"] > 0 for r in rows)
    sm = s["stages"]["smollm2"]
    assert 0 <= sm["density"] <= 1 and set(sm["multipliers"]) == {"IOI", "Docstring", "IOI Long"}
