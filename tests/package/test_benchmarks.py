"""The benchmark scripts run end to end at a tiny size and print their JSON summary (they are not run
anywhere else in CI; figures at this size mean nothing, so only the structure is checked)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(script, *args, timeout=600):
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    assert lines and lines[-1].get("what") == "summary", p.stdout[-2000:]
    return {d.get("what"): d for d in lines}


def test_generate_benchmark_pairs_generation_with_extraction(tmp_path):
    out = _run("generate.py", "--events", "3000", "--repeat", "2", "--workers", "2", "--gen-chunk", "1000",
               "--workdir", str(tmp_path))
    s = out["summary"]
    assert s["generate_events_per_s_per_core"] > 0 and s["extract_events_per_s_per_core"] > 0
    assert len(s["ratio_per_pair"]) == 2 and s["ratio_median_of_pairs"] > 0
    assert s["parallel_workers"] == 2 and s["parallel_events_per_s"] > 0
    st = out["generate_stages"]
    assert set(st["steady_min"]) == {"truth_s", "detector_s", "assemble_s", "root_write_s", "compression_only_s"}
    # compression is timed inside the writer's calls: a part of the writer's time, never more
    assert 0 < st["compression_only_s"] < st["root_write_s"] and st["uncompressed_bytes_per_event"] > 100
    assert out["extraction"]["events"] == 3000


def test_extract_benchmark_reports_ratio_to_bare_read(tmp_path):
    out = _run("extract.py", "--events", "3000", "--no-memory", "--repeat", "1", "--workdir", str(tmp_path))
    s = out["summary"]
    assert any(k.startswith("ratio") for k in s), s
    assert all(v > 0 for k, v in s.items() if k.startswith("ratio") and isinstance(v, (int, float))), s


def test_train_and_score_benchmarks(tmp_path):
    out = _run("train.py", "--events", "20000", "--epochs", "1", "--models", "ae", "--batch-size", "64",
               "--workdir", str(tmp_path / "train"))
    assert out["summary"]["model"] == "ae" and out["summary"]["events_per_s"] > 0
    model = tmp_path / "train" / "model_ae"
    out = _run("score.py", "--model", str(model), "--events", "20000", "--cores", "1", "--target-rows", "5000",
               "--select-fraction", "0.01", "--workdir", str(tmp_path / "score"))
    s = out["summary"]
    assert s["events"] == 20000 and s["ratio_spark_to_bare"] > 0 and s["python_worker_peak_rss_mb"] > 0


def test_pythia_benchmark_pairs_engine_with_bare_pythia(tmp_path):
    out = _run("pythia.py", "--events", "20", "--processes", "dyjets", "--workdir", str(tmp_path))
    row = out["pythia"]  # the last measurement: with the lepton filter
    assert row["process"] == "dyjets" and row["lepton_pt_min"] == 20.0
    assert row["engine"]["events_tried"] >= row["engine"]["events_written"] == 20
    assert row["bare"]["events"] == row["engine"]["events_tried"] and row["ratio_engine_to_bare"] > 0
    assert set(out["summary"]["ratio_engine_to_bare"]) == {"dyjets@0", "dyjets@20"}
