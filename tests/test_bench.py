from seqpo.bench import BenchSettings, markdown_table, run_bench


def test_bench_table_on_tiny_model(tiny_loaded, tmp_path):
    src = tmp_path / "src.en"
    src.write_text("The weather is nice today.\n\nOur team released it.\n")
    rows = run_bench(BenchSettings(src=str(src), limit=2, policy="wait-k", group=2, repeats=2), loaded=tiny_loaded,
                     log=lambda m: None)
    early = ["look-ahead 8", "write-ahead", "look-ahead 8 + write-ahead"]
    assert [r["decoding"] for r in rows] == ["offline", "reencode (wait-k)", "append (wait-k)",
                                             *[f"append (wait-k, {e})" for e in early], "slots (wait-k)",
                                             *[f"slots (wait-k, {e})" for e in early]]
    assert rows[0]["x_offline"] == 1.0
    assert all(r["model_tokens"] > 0 and r["wall_s"] >= 0 for r in rows)
    assert all(rows[i]["rollouts_per_min_forked"] > 0 for i in (1, 2, 6))
    assert all(r["same_output"] for r in rows if "ahead" in r["decoding"])
    table = markdown_table(rows).splitlines()
    assert len(table) == 2 + 10 and table[0].startswith("| decoding |")
    assert all(r["forward_passes"] >= 1 for r in rows)
