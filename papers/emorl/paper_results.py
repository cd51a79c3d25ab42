"""Numbers reported in the EfficientMORL paper, with where they come from (for the paper column only)."""
from papers.results import Claim

ARI_FG = {  # Table 1, mean +- std over five seeds (ARI in %, background excluded)
    "clevr6": (96.2, 1.6), "multi_dsprites": (91.2, 0.4), "tetrominoes": (98.2, 1.8),
}
ARI_RATIO_I0_OVER_I1 = 0.991  # §4.2 "Varying test time IAI steps": 99.1 % of the refined ARI
DCI_CLEVR6 = {  # Table 3, mean +- std over five runs
    "EfficientMORL": {"disentanglement": (0.63, 0.04), "completeness": (0.63, 0.06), "informativeness": (0.46, 0.01)},
    "Slot Attention": {"disentanglement": (0.46, 0.01), "completeness": (0.38, 0.02), "informativeness": (0.34, 0.01)},
}
DCI_LABELS = {"disentanglement": "D", "completeness": "C", "informativeness": "I (accuracy, discrete factors)"}
PARAMETERS_CLEVR6 = 666_000  # App. E.3 "approximately 666K"

CLAIMS = [  # the results of record (reports/README.md): paper's number, where ours is in metrics.json
    *(Claim(d, "ARI-FG (%)", m, s, 5, "Table 1", "metrics.ari_fg", 100) for d, (m, s) in ARI_FG.items()),
    Claim("clevr6", "ARI(I=0) / ARI(I=1) (%)", 100 * ARI_RATIO_I0_OVER_I1, None, None, "§4.2",
          "ari_ratio_i0_over_i1", 100),
    *(Claim("clevr6", f"DCI {DCI_LABELS[k]}, {model}", m, s, 5, "Table 3",
            f"{'baseline.' if model == 'Slot Attention' else ''}dci.{k}")
      for model, scores in DCI_CLEVR6.items() for k, (m, s) in scores.items()),
]
