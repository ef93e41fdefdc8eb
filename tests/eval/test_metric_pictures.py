"""The FID table and the coherence curve are drawn from the report's own numbers, and only when it has them."""

from PIL import Image

from mmgen.eval.metric_pictures import fid_rows, save_coherence_curve, save_fid_table, save_metric_pictures

REPORT = {
    "split": "test", "epoch": 6,
    "fid": {
        "features": {"m0": "penultimate layer of the m0 judge", "m1": "penultimate layer of the m1 judge"},
        "samples": 1000,
        "unconditional": {"prior": {"m0": 80.5, "m1": 91.25}, "gmm": {"m0": 40.125, "m1": 45.0}},
        "conditional": {"1": 30.0, "2": 20.0},
        "conditional per target": {"m0": {"1": 31.0, "2": 19.0}, "m1": {"1": 29.0}},
    },
    "conditional coherence": {"1": 0.4, "2": 0.6},
    "conditional coherence per target": {"m0": {"1": 0.35, "2": 0.55}, "m1": {"1": 0.45, "2": 0.65}},
    "coherence joint": 0.1,
    "coherence joint (gmm)": 0.3,
    "latent samplers": {"gmm": {"components": 10}},
}


def test_fid_table_rows_hold_each_modality_and_sampler_and_subset_size():
    headers, names, cells = fid_rows(REPORT["fid"])
    assert headers == ["unconditional (prior)", "unconditional (gmm)", "given 1", "given 2"]
    assert names == ["m0", "m1"]
    assert cells == [["80.50", "40.12", "31.00", "19.00"], ["91.25", "45.00", "29.00", "-"]]


def test_pictures_are_written_as_pngs(tmp_path):
    written = save_metric_pictures(REPORT, tmp_path)
    assert [p.name for p in written] == ["fid.png", "coherence.png"]
    for path in written:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 200 and image.height > 100


def test_nothing_is_drawn_without_the_numbers(tmp_path):
    bare = {"split": "test", "epoch": 1, "coherence joint": 0.5}
    assert save_fid_table(bare, tmp_path / "fid.png") is None
    assert save_coherence_curve(bare, tmp_path / "coherence.png") is None
    assert save_metric_pictures(bare, tmp_path) == []
    assert not list(tmp_path.iterdir())
