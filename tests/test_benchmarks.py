import pytest
import torch

from benchmarks.common import cpu_peak_gb, gflop, table


def test_cpu_peak_memory_sees_a_known_allocation():
    peak = cpu_peak_gb(lambda: torch.ones(50_000_000))  # 0.186 GiB of float32, freed on return
    if peak is None:
        pytest.skip("no /proc/self/clear_refs or glibc here")
    assert 0.17 < peak < 0.3


def test_gflop_counts_a_product_and_its_backward_by_hand():
    a, b = torch.randn(30, 40, requires_grad=True), torch.randn(40, 50)
    assert gflop(lambda: a @ b) == pytest.approx(2 * 30 * 40 * 50 / 1e9)
    # backward needs dL/da = g b^T only (b needs no gradient): one more product of the same size
    assert gflop(lambda: (a @ b).sum().backward()) == pytest.approx(2 * 2 * 30 * 40 * 50 / 1e9)


def test_table_formats_rows():
    assert table([{"size": 64, "fwd s": 0.12345}]).splitlines() == ["| size | fwd s |", "|---|---|", "| 64 | 0.1235 |"]
    failed_first = table([{"config": "a", "error": "boom"}, {"config": "b", "s": 1.5}]).splitlines()
    assert failed_first == ["| config | error | s |", "|---|---|---|", "| a | boom |  |", "| b |  | 1.5 |"]


# -- side-by-side timing against an official checkout (benchmarks/official.py) ------------------
import json
import os
import sys
import time
from pathlib import Path

from benchmarks import __main__ as bench_cli
from benchmarks import emorl_efficiency, emorl_step
from benchmarks.official import OfficialUnavailable, alternating_seconds, load_emorl, official_emorl_step, side_by_side

# A stand-in for the official checkout's interface only (sacred ingredient, captured constructor,
# GECO methods, JSON config): it lets the loading and stepping code be tested without their code.
FAKE_MODEL = '''
import torch
from sacred import Ingredient

net = Ingredient("Net")


@net.config
def cfg():
    K = 1
    input_size = [3, 64, 64]
    geco_warm_start = 1000
    refinement_iters = 3


class EfficientMORL(torch.nn.Module):
    @net.capture
    def __init__(self, K, input_size, geco_warm_start, refinement_iters, batch_size, use_geco=False):
        super().__init__()
        self.K, self.input_size, self.batch_size, self.use_geco = K, input_size, batch_size, use_geco
        self.geco_warm_start, self.refinement_iters = geco_warm_start, refinement_iters
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.geco_C_ema = torch.nn.Parameter(torch.tensor(0.), requires_grad=False)
        self.geco_beta = torch.nn.Parameter(torch.tensor(0.55), requires_grad=False)
        self.calls = []

    def forward(self, x, geco, global_step, kl_beta):
        self.calls.append((global_step, kl_beta, geco is not None, float(x.min()), x.is_contiguous()))
        nll = ((x - self.w) ** 2).sum() / x.shape[0]
        return {"total_loss": nll, "nll": nll.detach()}
'''
FAKE_GECO = '''
class GECO:
    def __init__(self, nll_target, alpha=0.99, step_size_acceleration=1):
        self.C, self.alpha = nll_target, alpha

    def update_ema(self, C_ema, nll):
        C_ema.data = C_ema.data * self.alpha + (self.C - nll) * (1 - self.alpha)
        return C_ema

    def step_beta(self, C_ema, beta, step_size):
        beta.data = beta.data - step_size * C_ema
        return beta
'''


def fake_checkout(root: Path, config: str = emorl_step.OFFICIAL_CONFIG, size: int = 35) -> Path:
    (root / "lib").mkdir(parents=True)
    (root / "lib" / "model.py").write_text(FAKE_MODEL)
    (root / "lib" / "geco.py").write_text(FAKE_GECO)
    (root / config).parent.mkdir(parents=True)
    training = {"use_geco": True, "lr": 4e-4, "kl_beta_init": 1, "clip_grad_norm": True, "geco_ema_alpha": 0.99,
                "geco_beta_stepsize": 1e-6, "geco_reconstruction_target": -1.0,
                "refinement_curriculum": [[-1, 3], [100000, 1]]}
    (root / config).write_text(json.dumps({"Net": {"K": 3, "input_size": [3, size, size]}, "seed": 1,
                                           "training": training}))
    return root


@pytest.fixture
def no_lib_modules():
    """The loader imports the checkout's top-level `lib`; drop it afterwards."""
    yield
    for name in [m for m in sys.modules if m == "lib" or m.startswith("lib.")]:
        del sys.modules[name]


def test_alternating_seconds_interleaves_and_returns_each_codes_times():
    now, calls = [0.0], []
    durations = {"ours": iter([9, 9, 1.0, 2.0, 3.0]), "official": iter([9, 9, 10.0, 30.0, 20.0])}

    def fake(name):
        def call():
            calls.append(name)
            now[0] += next(durations[name])
        return call

    times = alternating_seconds({"ours": fake("ours"), "official": fake("official")}, repeats=3, warmup=2,
                                clock=lambda: now[0])
    assert calls == ["ours", "official"] * 2 + ["ours", "official", "official", "ours", "ours", "official"]
    assert times == {"ours": [1.0, 2.0, 3.0], "official": [10.0, 30.0, 20.0]}
    rows, line = side_by_side(times, "ours", "official")
    assert [(r["code"], r["median s"], r["min s"], r["max s"]) for r in rows] == [("ours", 2.0, 1.0, 3.0),
                                                                                 ("official", 20.0, 10.0, 30.0)]
    assert line.startswith("ours / official: 0.10 (medians, measured side by side in this run")


def test_alternating_seconds_measures_real_calls():
    times = alternating_seconds({"a": lambda: time.sleep(0.005), "b": lambda: time.sleep(0.06)}, repeats=3, warmup=0)
    assert len(times["a"]) == len(times["b"]) == 3
    assert min(times["a"]) >= 0.005 and min(times["b"]) >= 0.06
    assert sorted(times["a"])[1] < sorted(times["b"])[1]


def test_cli_parses_names_and_official_and_passes_it_only_where_taken(monkeypatch, capsys):
    args = bench_cli.parse(["emorl_step", "--official", "/some/checkout"])
    assert args.names == ["emorl_step"] and args.official == "/some/checkout"
    assert bench_cli.parse([]).official is None
    seen = []
    monkeypatch.setattr(emorl_step, "main", lambda official=None: seen.append(("emorl_step", official)))
    from benchmarks import readers
    monkeypatch.setattr(readers, "main", lambda: seen.append(("readers",)))
    assert bench_cli.main(["readers", "emorl_step", "--official", "/x"]) == 0
    assert seen == [("readers",), ("emorl_step", "/x")]
    assert "readers does not take --official" in capsys.readouterr().out
    assert bench_cli.main(["nope"]) == 2
    from benchmarks import paper_steps
    monkeypatch.setattr(paper_steps, "main", lambda only=None: seen.append(("paper_steps", only)))
    assert bench_cli.main(["paper_steps", "readers", "--only", "emorl/*"]) == 0
    assert seen[-2:] == [("paper_steps", "emorl/*"), ("readers",)]
    assert "readers does not take --only" in capsys.readouterr().out


def test_missing_checkout_prints_one_line_and_still_times_ours(tmp_path, capsys):
    emorl_step.main(official=str(tmp_path / "absent"), batch_size=2, repeats=1, warmup=0)
    out = capsys.readouterr().out
    skipped = [line for line in out.splitlines() if line.startswith("official comparison skipped")]
    assert len(skipped) == 1 and "has no lib/model.py" in skipped[0]
    assert "| ours (shared Trainer step) |" in out
    assert "recorded anchor (implementation-notes §9, not measured in this run) | 3.24 |" in out
    assert "no ratio to the recorded anchor" in out and "ours / " not in out and "measured side by side" not in out


def test_missing_sacred_is_named(tmp_path, monkeypatch, capsys):
    root = fake_checkout(tmp_path / "official", emorl_efficiency.OFFICIAL_CONFIG)
    monkeypatch.setitem(sys.modules, "sacred", None)  # import sacred -> ImportError
    with pytest.raises(OfficialUnavailable, match=r"sacred is not installed.*pip install -e '\.\[official-bench\]'"):
        load_emorl(root, emorl_efficiency.OFFICIAL_CONFIG, 4)
    emorl_efficiency.compare(str(root), "cpu", ours_s=8.5)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("official comparison skipped: sacred is not installed")
    assert "17.0 s" in out[1] and "not measured in this run" in out[1] and "ours forward+backward here 8.5 s" in out[1]
    assert "no ratio to the recorded anchor" in out[1] and "ours / " not in out[1]


def test_fake_checkout_is_built_through_sacred_and_stepped_as_its_train_py(tmp_path, no_lib_modules):
    pytest.importorskip("sacred")
    root = fake_checkout(tmp_path / "official")
    official = load_emorl(root, emorl_step.OFFICIAL_CONFIG, batch_size=2)
    model = official.model
    assert (model.K, model.batch_size, model.use_geco) == (3, 2, True)  # JSON over the ingredient's defaults
    assert Path(sys.modules["lib.model"].__file__).resolve().parent == (root / "lib").resolve()
    assert official.step == 1001 and official.geco.C == -1.0 * 3 * 35 * 35
    images = torch.rand(2, 35, 35, 3).permute(0, 3, 1, 2)  # channels-last view, like our Trainer's batches
    step = official_emorl_step(official, images)
    step()
    step()
    assert model.refinement_iters == 3
    assert [c[:3] for c in model.calls] == [(1001, 1, True)] * 2
    assert all(c[3] < 0 and c[4] for c in model.calls)  # fed in [-1, 1], contiguous NCHW
    assert float(model.w.detach()) != 0.0 and float(model.geco_C_ema) != 0.0  # Adam stepped, GECO EMA updated


def test_emorl_step_side_by_side_with_a_checkout(tmp_path, capsys, no_lib_modules):
    pytest.importorskip("sacred")
    root = fake_checkout(tmp_path / "official")
    emorl_step.main(official=str(root), batch_size=2, repeats=2, warmup=0)
    out = capsys.readouterr().out
    assert "alternating ours/official, 0 warm-up + 2 timed calls each" in out
    assert "| official (its train.py step) |" in out and "| ours (shared Trainer step) |" in out
    assert "ours / official: " in out and "measured side by side in this run" in out
    assert "recorded anchor" not in out
    assert "| GFLOP | GFLOP/s |" in out  # each code's work beside its time
    assert "| kernels | host reads |" in out and "ours / official in kernels per step" in out


@pytest.mark.slow
def test_emorl_step_against_the_real_official_checkout(capsys, no_lib_modules):
    """EMORL_OFFICIAL=/path/to/EfficientMORL make test-slow: their unmodified model, one step each."""
    path = os.environ.get("EMORL_OFFICIAL")
    if not path:
        pytest.skip("set EMORL_OFFICIAL to a checkout of pemami4911/EfficientMORL")
    pytest.importorskip("sacred")
    emorl_step.main(official=path, batch_size=2, repeats=1, warmup=0)
    out = capsys.readouterr().out
    assert "measured side by side in this run" in out and "| 467,236 |" in out


def test_paper_steps_lists_training_configs_and_measures_one(tmp_path, monkeypatch):
    from benchmarks import paper_steps
    names = [str(p.relative_to(paper_steps.ROOT / "papers")) for p in paper_steps.configs()]
    assert "emorl/configs/tetrominoes.yaml" in names and "iodine/configs/clevr6.yaml" in names
    assert "emorl/configs/clevr10.yaml" not in names  # evaluates the CLEVR6 run, trains nothing
    assert "svq/configs/sprites4.yaml" in names and "svq/configs/prior.yaml" not in names  # codes, not images
    row = paper_steps.measure(paper_steps.ROOT / "papers/emorl/configs/tetrominoes.yaml", "smoke", repeats=1)
    assert (row["batch"], row["resolution"], row["precision"]) == (8, "35x35", "no")
    assert row["images/s"] == pytest.approx(8 / row["s/step"])
    assert row["training min (projected)"] == pytest.approx(row["s/step"] * 150 / 60)  # smoke: 150 steps
    assert 1000 < row["kernels/step"] < 3000  # EMORL: about 1,760 (I = 3 refinements, forward and backward)
    timed = []
    monkeypatch.setattr(paper_steps, "json_in_subprocess", lambda module, config, profile: timed.append(config) or {})
    paper_steps.main(only="*/tetrominoes.yaml")  # a subset, for a short GPU command
    assert sorted(Path(c).relative_to(paper_steps.ROOT / "papers").as_posix() for c in timed) == \
        ["emorl/configs/tetrominoes.yaml", "iodine/configs/tetrominoes.yaml"]
    with pytest.raises(SystemExit, match="no config under papers/ matches 'nope'"):
        paper_steps.main(only="nope")
    monkeypatch.undo()
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: nowhere:Nothing\nprofiles: {smoke: {}}\n")
    from benchmarks.common import json_in_subprocess
    assert "cannot be imported" in json_in_subprocess("benchmarks.paper_steps", str(bad), "smoke")["error"]


def test_genesis_step_prints_no_ratio_to_the_recorded_anchor(capsys):
    from benchmarks import genesis_step
    genesis_step.main(batch_size=2, repeats=1, warmup=0)
    out = capsys.readouterr().out
    assert "| 2,729,422 |" in out or "2,729,422" in out  # the official 2.73 M parameters
    assert "recorded anchor" in out and "no ratio to the recorded anchor" in out and "ours / " not in out


def test_sri_step_prints_both_architectures_against_the_recorded_anchor(capsys):
    from benchmarks import sri_step
    sri_step.main(batch_size=2, repeats=1, warmup=0)
    out = capsys.readouterr().out
    assert "ours, the paper's architecture" in out and "ours, the official architecture" in out
    assert "3,634,450" in out  # the official architecture (own SRI decoder, MLP values) has the anchor's 3.63 M
    assert "recorded anchor" in out and "no ratio to the recorded anchor" in out and "ours / " not in out


def test_sri_step_says_why_a_checkout_without_the_official_model_cannot_be_timed(tmp_path, capsys):
    from benchmarks import sri_step
    sri_step.main(str(tmp_path), batch_size=2, repeats=1, warmup=0)
    out = capsys.readouterr().out
    assert "official comparison skipped" in out and "has no sri/model.py" in out and "recorded anchor" in out


def test_svq_official_refuses_a_folder_that_is_not_a_checkout(tmp_path):
    from benchmarks.official import load_svq
    with pytest.raises(OfficialUnavailable, match="no nlotm.py"):
        load_svq(tmp_path)


def test_genesis_step_says_why_a_checkout_without_sris_genesis_cannot_be_timed(tmp_path, capsys):
    from benchmarks import genesis_step
    genesis_step.main(str(tmp_path), batch_size=2, repeats=1, warmup=0)
    out = capsys.readouterr().out
    assert "official comparison skipped" in out and "has no sri/model.py" in out and "recorded anchor" in out


def test_compile_children_compiles_each_network_with_parameters_and_its_own_forward():
    import copy

    import torch
    from torch import nn

    from benchmarks.compile_steps import compile_children

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
            self.act = nn.ReLU()  # no parameters: left eager
            self.bag = nn.ModuleList([nn.Linear(3, 3)])  # no forward of its own: left eager

        def forward(self, x):
            return self.act(self.net(x))

    torch.manual_seed(0)
    eager = Model()
    compiled = copy.deepcopy(eager)
    assert compile_children(compiled) == ["net"]
    assert isinstance(compiled.net, torch._dynamo.eval_frame.OptimizedModule) and compiled.act is not None
    x = torch.randn(5, 3)
    torch.testing.assert_close(compiled(x), eager(x))



def test_decoder_layout_builds_each_configs_decoder_with_its_slots():
    """The layout benchmark times the decoders the paper configs build (B x K slots each), and says which layout
    the width rule picks: channels-last for the 32-channel Tetrominoes decoders, contiguous for the 64-channel."""
    from benchmarks.decoder_layout import CONFIGS, decoders
    rows = decoders()
    assert len(rows) == len(CONFIGS)
    slots = [4, 7, 4, 7, 9]  # K: EMORL and IODINE Tetrominoes, CLEVR6; GENESIS-v2 ShapeStacks
    for (label, (decoder, n)), (path, batch), k in zip(rows.items(), CONFIGS, slots, strict=True):
        assert label.startswith(path) and n == batch * k
        assert decoder.cpu_channels_last is ("(32 ch)" in label)


def test_dispatched_ops_counts_kernels_not_views_forward_and_backward():
    from benchmarks.common import dispatched_ops
    a, b = torch.randn(3, 4), torch.randn(3, 2, requires_grad=True)
    # mm, relu, sum; t is a view, and so is the detach with which autograd saves relu's output
    assert dispatched_ops(lambda: (a.t() @ b).relu().sum()) == {"ops": 5, "kernels": 3, "host_reads": 0}
    # .item() and bool() read the device: two host reads (a GPU's host waits for each), and kernels of their own
    assert dispatched_ops(lambda: (a.sum().item(), bool(a.sum() > 0)))["host_reads"] == 2
    counted = dispatched_ops(lambda: (a.t() @ b).relu().sum().backward())
    # forward mm, relu, sum; backward ones_like (the seed), sum's expand (a view), threshold_backward, mm with a.t()
    # (two views of t), and b's gradient stored (a detach: no kernel)
    assert counted["kernels"] == 6 and counted["ops"] > counted["kernels"]


def test_host_reads_leave_out_an_optimisers_host_side_step_counts():
    """Adam (not capturable) keeps its step counts on the host even on a GPU: incrementing and reading them are no
    kernels and no device waits there; its foreach updates of the parameters still count. The model's own .item()
    is one read."""
    from benchmarks.common import dispatched_ops
    from benchmarks.official import add_kernels
    w = torch.nn.Parameter(torch.randn(3))
    opt = torch.optim.Adam([w], foreach=True)

    def step():
        opt.zero_grad()
        loss = (w ** 2).sum()
        loss.backward()
        float(loss.detach())  # the model's read of the device
        opt.step()

    step()
    both, model_only = dispatched_ops(step), dispatched_ops(step, [opt])
    assert model_only["host_reads"] == 1 and both["host_reads"] == 3  # foreach Adam reads its step count twice
    assert both["kernels"] - model_only["kernels"] == 3  # those reads and the step count's increment: host work
    alone = dispatched_ops(opt.step, [opt])
    assert alone == {"ops": alone["ops"], "kernels": alone["kernels"], "host_reads": 0} and alone["kernels"] >= 5
    rows = [{"code": "a"}, {"code": "b"}]
    line = add_kernels(rows, {"a": {"kernels": 50, "host_reads": 0}, "b": model_only}, "a", "b")
    assert rows[1] == {"code": "b", "kernels": model_only["kernels"], "host reads": 1}
    assert f"ours / official in kernels per step: {50 / model_only['kernels']:.2f}" in line
    assert "ours 0, official 1" in line
